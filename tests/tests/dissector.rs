//! The Wireshark dissector (`tools/wireshark/mux.lua`) read by `tshark`
//! over a capture built from the spec's test vectors (`spec/vectors/`): a
//! TCP connection whose client sends the preface and every valid frame, one
//! of them cut across two segments, and whose server sends its preface,
//! SETTINGS and a malformed frame.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .filter_map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
        .collect()
}

/// A capture (pcap, raw IPv4) of segments `(from_client, payload)` on one
/// TCP connection 127.0.0.1:40000 → 127.0.0.1:`port`, after a handshake.
fn capture(port: u16, segments: &[(bool, Vec<u8>)]) -> Vec<u8> {
    let mut pcap = Vec::new();
    // Global header: magic, version 2.4, zone, sigfigs, snaplen, LINKTYPE_RAW.
    pcap.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    pcap.extend_from_slice(&2u16.to_le_bytes());
    pcap.extend_from_slice(&4u16.to_le_bytes());
    pcap.extend_from_slice(&0i32.to_le_bytes());
    pcap.extend_from_slice(&0u32.to_le_bytes());
    pcap.extend_from_slice(&262_144u32.to_le_bytes());
    pcap.extend_from_slice(&101u32.to_le_bytes());
    let (mut client_seq, mut server_seq) = (1000u32, 5000u32);
    let mut packets: Vec<(bool, u8, Vec<u8>)> = vec![
        (true, 0x02, Vec::new()),  // SYN
        (false, 0x12, Vec::new()), // SYN-ACK
        (true, 0x10, Vec::new()),  // ACK
    ];
    packets.extend(segments.iter().map(|(c, p)| (*c, 0x18, p.clone())));
    for (time, (from_client, flags, payload)) in packets.into_iter().enumerate() {
        let (src_port, dst_port) = if from_client {
            (40000u16, port)
        } else {
            (port, 40000)
        };
        let (seq, ack) = if from_client {
            (client_seq, server_seq)
        } else {
            (server_seq, client_seq)
        };
        let advance = payload.len() as u32 + u32::from(flags & 0x02 != 0);
        if from_client {
            client_seq += advance;
        } else {
            server_seq += advance;
        }
        let mut packet = Vec::new();
        let total = 20 + 20 + payload.len();
        packet.extend_from_slice(&[0x45, 0]);
        packet.extend_from_slice(&(total as u16).to_be_bytes());
        packet.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0]);
        packet.extend_from_slice(&[127, 0, 0, 1, 127, 0, 0, 1]);
        packet.extend_from_slice(&src_port.to_be_bytes());
        packet.extend_from_slice(&dst_port.to_be_bytes());
        packet.extend_from_slice(&seq.to_be_bytes());
        packet.extend_from_slice(&ack.to_be_bytes());
        packet.extend_from_slice(&[0x50, flags]);
        packet.extend_from_slice(&65535u16.to_be_bytes());
        packet.extend_from_slice(&[0, 0, 0, 0]);
        packet.extend_from_slice(&payload);
        pcap.extend_from_slice(&(time as u32).to_le_bytes());
        pcap.extend_from_slice(&0u32.to_le_bytes());
        pcap.extend_from_slice(&(packet.len() as u32).to_le_bytes());
        pcap.extend_from_slice(&(packet.len() as u32).to_le_bytes());
        pcap.extend_from_slice(&packet);
    }
    pcap
}

/// The capture (to `port`) and the frame types the client's side holds, in order.
fn sample(port: u16) -> (Vec<u8>, Vec<u64>) {
    let vectors: Value = serde_json::from_str(
        &std::fs::read_to_string(repository().join("spec/vectors/frames.json")).expect("vectors"),
    )
    .expect("JSON");
    let mut client = hex("894d55580d0a0001");
    let mut types = Vec::new();
    for vector in vectors["valid"].as_array().expect("valid vectors") {
        let bytes = hex(vector["hex"].as_str().expect("hex"));
        types.push(u64::from(bytes[3]));
        client.extend_from_slice(&bytes);
    }
    // A subscription, to see a reserved route.
    let mut block = Vec::new();
    for (name, value) in [(":route", "$subscribe"), (":topic", "chat.*")] {
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.extend_from_slice(&(value.len() as u16).to_be_bytes());
        block.extend_from_slice(value.as_bytes());
    }
    let mut open = (block.len() as u32).to_be_bytes()[1..].to_vec();
    open.extend_from_slice(&[0x01, 0x01, 0, 0, 0, 9]);
    open.extend_from_slice(&block);
    client.extend_from_slice(&open);
    types.push(1);
    // One frame cut across two segments, the rest whole.
    let cut = client.len() / 2;
    let server = [
        hex("894d55580d0a0001"),
        hex("000000030000000000"),       // SETTINGS, empty
        hex("000003020000000001000000"), // RESET of length 3: malformed
    ]
    .concat();
    let segments = vec![
        (true, client[..cut].to_vec()),
        (true, client[cut..].to_vec()),
        (false, server),
    ];
    (capture(port, &segments), types)
}

fn tshark(capture: &Path, args: &[&str]) -> String {
    let script = repository().join("tools/wireshark/mux.lua");
    let output = Command::new("tshark")
        .arg("-X")
        .arg(format!("lua_script:{}", script.display()))
        .arg("-r")
        .arg(capture)
        .args(args)
        .output()
        .expect("tshark runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
#[ignore = "needs tshark"]
fn tshark_reads_every_frame_of_the_vectors_with_the_dissector() {
    let (pcap, types) = sample(7878);
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("mux-vectors.pcap");
    std::fs::write(&path, &pcap).expect("capture written");
    if std::env::var_os("MUX_WRITE_SAMPLE").is_some() {
        std::fs::write(repository().join("tools/wireshark/sample.pcap"), &pcap).expect("sample");
    }
    // Every frame type, in order, on the client's side (reassembled): on
    // the default port, and on another one, found by the preface.
    let (elsewhere, _) = sample(9999);
    let other = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("mux-vectors-9999.pcap");
    std::fs::write(&other, &elsewhere).expect("capture written");
    for capture in [&path, &other] {
        let filter = "mux && tcp.srcport == 40000";
        let fields = tshark(capture, &["-Y", filter, "-T", "fields", "-e", "mux.type"]);
        let seen: Vec<u64> = fields
            .split([',', '\n'])
            .filter(|t| !t.trim().is_empty())
            .filter_map(|t| u64::from_str_radix(t.trim().trim_start_matches("0x"), 16).ok())
            .collect();
        assert_eq!(
            seen,
            types,
            "tshark saw in {}:\n{fields}",
            capture.display()
        );
    }
    // Prefaces, reserved routes and names are shown.
    let text = tshark(&path, &["-V"]);
    for expected in [
        "Version: 1",
        "mux OPEN",
        ":route: $subscribe",
        "$subscribe",
        "SETTINGS",
        "WINDOW_UPDATE",
        "PUSH",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    // The malformed RESET is an expert error, not a crash.
    let malformed = tshark(&path, &["-Y", "mux.malformed"]);
    assert_eq!(malformed.lines().count(), 1, "{malformed}");
}
