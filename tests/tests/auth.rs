//! Authentication and authorization (`spec/patterns.md` §8) over real
//! sockets: bearer tokens, client certificates as identities, the handler's
//! view of who called, every authorization decision, session ownership, and
//! the limit on failed attempts.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use mux_client::{CallError, Client, Resume, TlsClient};
use mux_core::patterns;
use mux_core::rpc::{RequestHead, Status};
use mux_core::{Config, ErrorCode, Event};
use mux_server::auth::{CertificateNames, StaticTokens};
use mux_server::authz::Rules;
use mux_server::{Response, Server, ServerBuilder, TlsServer};
use mux_testkit::pki::TestPki;
use mux_testkit::{server_builder, RawPeer};

const LIMIT: Duration = Duration::from_secs(10);

/// A server whose `whoami` route answers the caller's identity.
fn with_whoami(builder: ServerBuilder) -> Server {
    builder
        .route("whoami", |req| {
            Ok(Response::ok(req.identity().name().to_owned()))
        })
        .start()
        .expect("server starts")
}

fn tokens() -> StaticTokens {
    StaticTokens::new([("alice-s3cret", "alice"), ("bob-s3cret", "bob")])
}

fn client_with(server: &Server, token: &str) -> std::io::Result<Client> {
    Client::builder(server.local_addr()).token(token).connect()
}

fn status_of(result: Result<mux_client::Reply, CallError>) -> u16 {
    match result {
        Ok(reply) => reply.status.0,
        Err(CallError::Rejected { status, .. }) => status.0,
        Err(other) => panic!("not an answer: {other}"),
    }
}

#[test]
fn a_token_names_the_caller_and_a_wrong_one_is_refused_at_connect() {
    let server = with_whoami(server_builder().authenticator(tokens()));
    let alice = client_with(&server, "alice-s3cret").expect("alice connects");
    assert_eq!(alice.call("whoami", "").expect("whoami").body, "alice");

    let began = Instant::now();
    let err = client_with(&server, "guess").expect_err("a wrong token connects");
    assert!(
        began.elapsed() < Duration::from_secs(1),
        "took {:?}",
        began.elapsed()
    );
    assert!(
        err.to_string().contains("authentication refused (401)"),
        "unclear error: {err}"
    );
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);

    // Without a token, every request is answered 401.
    let anonymous = Client::connect(server.local_addr()).expect("connects");
    assert_eq!(status_of(anonymous.call("whoami", "")), 401);
    assert!(server.handle().auth_failures() >= 2);
}

#[test]
fn repeated_failed_authentication_closes_the_connection() {
    let server = server_builder()
        .authenticator(tokens())
        .start()
        .expect("server starts");
    let stream = TcpStream::connect(server.local_addr()).expect("connect");
    let mut peer = RawPeer::client(stream, Config::default());
    peer.handshake(LIMIT);
    let mut head = RequestHead::new(patterns::AUTH);
    head.metadata =
        mux_core::frame::Metadata::from_pairs([(patterns::AUTHORIZATION, &b"Bearer wrong"[..])])
            .expect("metadata");
    let metadata = head.encode().expect("encode");
    for _ in 0..3 {
        peer.conn.open(metadata.clone(), true).expect("open");
    }
    let deadline = Instant::now() + LIMIT;
    let mut code = None;
    while code.is_none() && Instant::now() < deadline {
        let Ok(events) = peer.pump(64 * 1024) else {
            break;
        };
        for event in events {
            if let Event::GoAway { code: got, .. } = event {
                code = Some(got);
            }
        }
    }
    assert_eq!(code, Some(ErrorCode::ENHANCE_YOUR_CALM));
    assert_eq!(server.handle().auth_failures(), 3);
}

#[test]
fn a_client_certificate_is_the_identity_under_mutual_tls() {
    let pki = TestPki::new("auth CA");
    let server_cert = pki.issue("server", &["127.0.0.1"]);
    let tls = TlsServer::from_pem_files(&server_cert.cert, &server_cert.key, Some(&pki.ca_file()))
        .expect("server TLS");
    let server = with_whoami(server_builder().tls(tls).authenticator(CertificateNames));
    let carol = pki.issue("carol", &["carol.example"]);
    let client_tls = TlsClient::with_ca_file(&pki.ca_file())
        .and_then(|tls| tls.with_identity(&carol.cert, &carol.key))
        .expect("client TLS");
    let client = Client::builder(server.local_addr())
        .tls(client_tls)
        .connect()
        .expect("carol connects");
    assert_eq!(
        client.call("whoami", "").expect("whoami").body,
        "carol.example"
    );
}

fn assert_forbidden(err: &CallError) {
    assert!(
        matches!(
            err,
            CallError::Rejected {
                status: Status::FORBIDDEN,
                ..
            }
        ),
        "not a 403: {err}"
    );
}

const RULES: &str = r#"
[groups]
staff = ["alice"]

[[allow]]
who = ["group:staff"]
routes = ["whoami", "echo"]
subscribe = ["chat.>"]
publish = ["chat.*"]
events = ["news"]
sessions = true

[[allow]]
who = ["*"]
routes = ["echo"]
"#;

#[test]
fn every_kind_of_request_is_authorized_and_a_refusal_is_a_403() {
    let rules = Rules::parse(RULES).expect("rules");
    let server = with_whoami(server_builder().authenticator(tokens()).authorizer(rules));
    let alice = client_with(&server, "alice-s3cret").expect("alice");
    let bob = client_with(&server, "bob-s3cret").expect("bob");

    assert_eq!(status_of(alice.call("whoami", "")), 200);
    assert_eq!(status_of(bob.call("whoami", "")), 403);
    assert_eq!(status_of(bob.call("echo", "x")), 200);

    assert!(alice.subscribe("chat.>").is_ok());
    let refused = bob.subscribe("chat.>").expect_err("bob subscribes");
    assert_forbidden(&refused);
    assert!(
        alice.subscribe(">").is_err(),
        "a pattern wider than allowed"
    );

    assert!(alice.publish("chat.lobby", "hi").is_ok());
    let refused = bob.publish("chat.lobby", "hi").expect_err("bob publishes");
    assert_forbidden(&refused);
    let mut publisher = alice.publisher();
    publisher.publish("chat.lobby", "ok").expect("publish");
    publisher.publish("admin.secrets", "no").expect("publish");
    let refused = publisher.finish().expect_err("a refused publication");
    assert!(
        refused.to_string().contains("1 refused by policy"),
        "{refused}"
    );

    assert!(alice.events("news", Resume::Latest).is_ok());
    assert!(bob.events("news", Resume::Latest).is_err());

    let session = alice.session().expect("alice opens a session");
    assert!(matches!(
        bob.session(),
        Err(CallError::Rejected {
            status: Status::FORBIDDEN,
            ..
        })
    ));
    // Alice's session is hers alone.
    let stolen = bob.resume_session(session.token());
    assert_eq!(status_of(stolen.call("echo", "x")), 403);
    assert!(stolen.events(0).is_err());
    assert_eq!(status_of(session.call("echo", "x")), 200);
    assert!(server.handle().refused_by_policy() >= 8);
}
