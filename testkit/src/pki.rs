//! [`TestPki`]: certificate authorities and certificates made fresh for a
//! test with `rcgen`, written as PEM files into a directory of their own
//! (removed on drop), the way an operator's files would be.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair};

/// A CA that signs certificates into a directory.
pub struct TestPki {
    dir: PathBuf,
    ca: Certificate,
    ca_key: KeyPair,
}

/// A certificate's PEM files.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate chain (the leaf; the CA is the trust anchor).
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

fn fresh_dir() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "mux-pki-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("a directory for test certificates");
    dir
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki").field("dir", &self.dir).finish()
    }
}

impl TestPki {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let ca_key = KeyPair::generate().expect("CA key");
        let ca = params.self_signed(&ca_key).expect("CA certificate");
        let pki = Self {
            dir: fresh_dir(),
            ca,
            ca_key,
        };
        std::fs::write(pki.ca_file(), pki.ca.pem()).expect("write the CA certificate");
        pki
    }

    /// The CA certificate's PEM file (what peers trust).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A certificate for `names` (DNS names or IP addresses), with common
    /// name `subject`.
    pub fn issue(&self, subject: &str, names: &[&str]) -> Issued {
        self.issue_with(subject, names, |_| {})
    }

    /// A certificate that expired in 2021.
    pub fn issue_expired(&self, subject: &str, names: &[&str]) -> Issued {
        self.issue_with(subject, names, |params| {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        })
    }

    fn issue_with(
        &self,
        subject: &str,
        names: &[&str],
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> Issued {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("certificate parameters");
        params.distinguished_name.push(DnType::CommonName, subject);
        adjust(&mut params);
        let key = KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &self.ca, &self.ca_key)
            .expect("certificate");
        let issued = Issued {
            cert: self.dir.join(format!("{subject}.pem")),
            key: self.dir.join(format!("{subject}.key")),
        };
        std::fs::write(&issued.cert, cert.pem()).expect("write the certificate");
        std::fs::write(&issued.key, key.serialize_pem()).expect("write the key");
        issued
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
