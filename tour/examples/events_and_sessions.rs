//! Event streams with resume, long polling, and a session that survives a reconnect.
//!
//! `cargo run -p mux-tour --example events_and_sessions`

use std::time::Duration;

use mux_client::{Client, Resume};
use mux_server::{Response, Server, Status};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = Server::builder()
        .bind("127.0.0.1:0".parse()?)
        .route("visit", |req| match req.session() {
            Some(session) => {
                let visits = session
                    .get("visits")
                    .map_or(0, |v| String::from_utf8_lossy(&v).parse().unwrap_or(0))
                    + 1;
                session.set("visits", visits.to_string().into());
                session.push("visit", visits.to_string().into());
                Ok(Response::ok(visits.to_string()))
            }
            None => Ok(Response::with_status(Status::BAD_REQUEST, "no session")),
        })
        .start()?;
    let events = server.handle();

    // Event streams: ordered ids, resume after the last one seen.
    let client = Client::connect(server.local_addr())?;
    let mut stream = client.events("news", Resume::Latest)?;
    events
        .append_event("news", "headline", "first")
        .expect("append");
    let first = stream
        .next_timeout(Duration::from_secs(2))
        .ok_or("no event")??;
    println!(
        "event {} ({}): {}",
        first.id,
        first.kind,
        String::from_utf8_lossy(&first.data)
    );
    drop(stream);
    events
        .append_event("news", "headline", "missed while away")
        .expect("append");
    let mut resumed = client.events("news", Resume::After(first.id))?;
    let missed = resumed
        .next_timeout(Duration::from_secs(2))
        .ok_or("no replay")??;
    println!(
        "replayed {}: {}",
        missed.id,
        String::from_utf8_lossy(&missed.data)
    );

    // Long polling from a cursor.
    let mut poller = client.long_poller("news", 0, Duration::from_secs(1));
    println!(
        "long poll: {} entries, cursor now {}",
        poller.poll()?.len(),
        poller.cursor()
    );

    // A session, resumed from another connection.
    let session = client.session()?;
    session.call("visit", "")?;
    let other = Client::connect(server.local_addr())?;
    let again = other.resume_session(session.token());
    println!(
        "visits after reconnect: {}",
        String::from_utf8_lossy(&again.call("visit", "")?.body)
    );
    let mut feed = again.events(0)?;
    while let Some(Ok(event)) = feed.next_timeout(Duration::from_millis(200)) {
        println!(
            "session event {}: {}",
            event.id,
            String::from_utf8_lossy(&event.data)
        );
    }
    Ok(())
}
