//! Server push: unsolicited and tied to a request; a client that refuses.
//!
//! `cargo run -p mux-tour --example push`

use std::sync::mpsc;
use std::time::Duration;

use mux_client::Client;
use mux_server::{Response, Server};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = Server::builder()
        .bind("127.0.0.1:0".parse()?)
        .route("page", |_| {
            Response::ok("<html>")
                .push([(&b"path"[..], &b"/style.css"[..])], "body {}")
                .map_err(|e| e.to_string().into())
        })
        .start()?;
    let (pushes, received) = mpsc::channel();
    let client = Client::builder(server.local_addr())
        .on_push(move |push| {
            let _ = pushes.send(push);
        })
        .connect()?;
    client.call("page", "")?; // brings a tied push
    server
        .handle()
        .push_all([(&b"kind"[..], &b"notice"[..])], "server restarting soon")?;
    for _ in 0..2 {
        let push = received.recv_timeout(Duration::from_secs(2))?;
        println!(
            "push (tied: {}) {:?}: {}",
            push.associated.is_some(),
            push.metadata,
            String::from_utf8_lossy(&push.body)
        );
    }
    let refusing = Client::builder(server.local_addr())
        .refuse_pushes()
        .connect()?;
    println!(
        "a refusing client still calls: {}",
        refusing.call("page", "")?.status.0
    );
    Ok(())
}
