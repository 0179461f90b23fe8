//! Publish/subscribe with wildcards, from a client and from server code.
//!
//! `cargo run -p mux-tour --example pubsub`

use std::time::Duration;

use mux_client::{Client, Delivery};
use mux_server::Server;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = Server::builder().bind("127.0.0.1:0".parse()?).start()?;
    let client = Client::connect(server.local_addr())?;
    let mut everything = client.subscribe("chat.>")?; // one or more tokens
    let mut rooms = client.subscribe("chat.*")?; // exactly one token

    client.publish("chat.lobby", "hi from a client")?;
    server
        .handle()
        .publish("chat.rooms.7", "hi from the server")?;
    let mut publisher = client.publisher(); // a stream of publications, no answer each
    publisher.publish("chat.lobby", "streamed")?;

    for _ in 0..3 {
        if let Some(Ok(Delivery::Message { topic, payload })) =
            everything.next_timeout(Duration::from_secs(2))
        {
            println!("chat.> got {topic}: {}", String::from_utf8_lossy(&payload));
        }
    }
    while let Some(Ok(Delivery::Message { topic, .. })) =
        rooms.next_timeout(Duration::from_millis(200))
    {
        println!("chat.* got {topic}");
    }
    println!("{}", publisher.finish()?);
    Ok(())
}
