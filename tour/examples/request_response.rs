//! Request/response: a route, a call in each style, a deadline, a cancellation.
//!
//! `cargo run -p mux-tour --example request_response`

use std::time::Duration;

use mux_client::{CallError, CallRequest, Client};
use mux_server::{Response, Server};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = Server::builder()
        .bind("127.0.0.1:0".parse()?)
        .route("greet", |req| {
            Ok(Response::ok(format!(
                "hello, {}",
                String::from_utf8_lossy(req.body())
            )))
        })
        .route_blocking("slow", |_| {
            std::thread::sleep(Duration::from_millis(200));
            Ok(Response::ok("done"))
        })
        .start()?;
    let client = Client::connect(server.local_addr())?;

    let reply = client.call("greet", "blocking caller")?;
    println!(
        "{} {}",
        reply.status.0,
        String::from_utf8_lossy(&reply.body)
    );

    let call = client.call_async("greet", "handle"); // also a std Future
    println!("{}", String::from_utf8_lossy(&call.wait()?.body));

    let late = client.call_with(CallRequest::new("slow", "").timeout(Duration::from_millis(50)));
    assert_eq!(late, Err(CallError::DeadlineExceeded));
    println!("deadline: {late:?}");

    client.call_async("slow", "").cancel(); // resets the stream on the server
    client.shutdown();
    server.shutdown_gracefully(Duration::from_secs(5))?;
    Ok(())
}
