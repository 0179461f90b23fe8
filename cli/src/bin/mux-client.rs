//! The `mux-client` program: call a route, upload a file, ping a server,
//! subscribe, publish, follow an event stream, use a session.

use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use mux_client::{CallError, CallRequest, Client, Delivery, EventStream, Reply, Resume};

/// Talks to a mux server.
#[derive(Debug, Parser)]
#[command(name = "mux-client", version, about)]
struct Args {
    /// Server address: host:port (a name is resolved at each connection
    /// attempt), or several, comma-separated, to fail over between.
    #[arg(long, default_value = "127.0.0.1:7878")]
    addr: mux_client::Addresses,
    /// Log level: error, warn, info, debug, trace.
    #[arg(long, default_value = "warn")]
    log_level: log::LevelFilter,
    #[command(flatten)]
    timeouts: mux_cli::Timeouts,
    #[command(flatten)]
    tls: mux_cli::ClientTls,
    /// Authenticate with the bearer token in this file (or in $MUX_TOKEN).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Calls a route and prints the reply.
    Call {
        /// Route name.
        route: String,
        /// Request body.
        #[arg(default_value = "")]
        body: String,
        /// Deadline in milliseconds.
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// Metadata entries, `name=value`.
        #[arg(long = "header", value_name = "NAME=VALUE")]
        headers: Vec<String>,
        /// Write the reply body to this file instead of standard output.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Streams a file (`-`: standard input) as the body of a call to a
    /// (streaming) route.
    Send {
        /// Route name.
        route: String,
        /// The file, or `-` for standard input.
        file: PathBuf,
        /// Write the reply body to this file instead of standard output.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Measures round-trip times with PING.
    Ping {
        /// How many.
        #[arg(long, default_value_t = 5)]
        count: u32,
    },
    /// Subscribes to a topic pattern (`*` one token, `>` the rest) and prints
    /// each message: `TOPIC PAYLOAD` lines (`--raw`: payloads only, as bytes).
    Sub {
        /// The pattern.
        pattern: String,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<u64>,
        /// Print payloads only, as they came, one after the other.
        #[arg(long)]
        raw: bool,
    },
    /// Publishes a message to a topic; `-` publishes each line of standard input.
    Pub {
        /// The topic.
        topic: String,
        /// The payload, or `-` for one publication per line of standard input.
        message: String,
    },
    /// Follows an event stream and prints `ID KIND DATA` lines.
    Events {
        /// The stream's name.
        name: String,
        /// Resume after this id (default: from now on).
        #[arg(long)]
        after: Option<u64>,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Opens a session and prints its token; with --token, calls a route
    /// within that session, or (--events) follows the session's feed.
    Session {
        /// The session to use (default: open a new one and print its token).
        #[arg(long)]
        token: Option<String>,
        /// Route to call within the session.
        route: Option<String>,
        /// Request body.
        #[arg(default_value = "")]
        body: String,
        /// Follow the session's events instead of calling.
        #[arg(long, conflicts_with = "route")]
        events: bool,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    mux_cli::run("mux-client", args.log_level, || {
        run(args).map_err(|e| e.to_string())
    })
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut connection = mux_core::Config::default();
    args.timeouts.apply(&mut connection);
    let mut builder = Client::builder(args.addr.clone()).connection_config(connection);
    if let Some(tls) = args.tls.load().map_err(|err| format!("TLS: {err}"))? {
        builder = builder.tls(tls);
    }
    let token = match &args.token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|err| format!("{}: {err}", path.display()))?
                .trim()
                .to_owned(),
        ),
        None => std::env::var("MUX_TOKEN").ok(),
    };
    if let Some(token) = token {
        builder = builder.token(token);
    }
    let client = builder
        .connect()
        .map_err(|err| format!("cannot connect: {err}"))?;
    match args.command {
        Command::Call {
            route,
            body,
            timeout_ms,
            headers,
            output,
        } => {
            let mut request = CallRequest::new(route, body);
            if let Some(ms) = timeout_ms {
                request = request.timeout(Duration::from_millis(ms));
            }
            for header in headers {
                let (name, value) = header
                    .split_once('=')
                    .ok_or(format!("header {header:?} is not NAME=VALUE"))?;
                request = request.header(name.to_owned(), value.to_owned());
            }
            let started = Instant::now();
            let reply = client.call_with(request)?;
            eprintln!("status {} in {:?}", reply.status.0, started.elapsed());
            for (name, value) in reply.metadata.iter() {
                eprintln!(
                    "{}: {}",
                    String::from_utf8_lossy(name),
                    String::from_utf8_lossy(value)
                );
            }
            return finish(client, &reply, output.as_deref());
        }
        Command::Send {
            route,
            file,
            output,
        } => {
            // A regular file's length is declared, so that bytes lost on
            // the way fail the upload (spec patterns §1.8); standard input's
            // is not known in advance.
            let (mut input, length): (Box<dyn Read>, Option<u64>) = if file.as_os_str() == "-" {
                (Box::new(std::io::stdin().lock()), None)
            } else {
                let opened = std::fs::File::open(&file)
                    .map_err(|err| format!("{}: {err}", file.display()))?;
                let length = opened
                    .metadata()
                    .ok()
                    .filter(std::fs::Metadata::is_file)
                    .map(|m| m.len());
                (Box::new(opened), length)
            };
            let started = Instant::now();
            let mut request = CallRequest::new(route, "");
            if let Some(length) = length {
                request = request.length(length);
            }
            let mut upload = client.open_upload(request);
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0usize;
            loop {
                let n = input.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                total += n;
                if upload
                    .write(bytes::Bytes::copy_from_slice(&buf[..n]))
                    .is_err()
                {
                    break; // the call ended early: its outcome says why
                }
            }
            let reply = upload.finish()?.wait();
            let seconds = started.elapsed().as_secs_f64();
            eprintln!(
                "sent {total} bytes in {seconds:.3} s ({:.1} MB/s)",
                total as f64 / seconds / 1e6
            );
            let reply = match reply {
                Err(CallError::Rejected { status, message }) => Reply {
                    status,
                    metadata: Default::default(),
                    body: message.into(),
                },
                other => other?,
            };
            eprintln!("status {}", reply.status.0);
            return finish(client, &reply, output.as_deref());
        }
        Command::Ping { count } => {
            for n in 1..=count {
                println!("ping {n}: rtt {:?}", client.ping()?);
            }
        }
        Command::Sub {
            pattern,
            count,
            raw,
        } => {
            let mut subscription = client.subscribe(&pattern)?;
            let mut stdout = std::io::stdout().lock();
            let mut seen = 0;
            while count.is_none_or(|count| seen < count) {
                match subscription.next_delivery()? {
                    Delivery::Message { topic, payload } => {
                        if !raw {
                            write!(stdout, "{topic} ")?;
                        }
                        stdout.write_all(&payload)?;
                        if !raw {
                            stdout.write_all(b"\n")?;
                        }
                        stdout.flush()?;
                        seen += 1;
                    }
                    Delivery::Lost(lost) => eprintln!("{lost} messages lost (a slow reader)"),
                }
            }
        }
        Command::Pub { topic, message } => {
            if message == "-" {
                let mut publisher = client.publisher();
                for line in std::io::stdin().lock().lines() {
                    publisher.publish(&topic, line?)?;
                }
                eprintln!("{}", publisher.finish()?);
            } else {
                client.publish(&topic, message)?;
            }
        }
        Command::Events { name, after, count } => {
            let resume = after.map_or(Resume::Latest, Resume::After);
            let mut events = client.events(&name, resume)?;
            print_events(&mut events, count)?;
        }
        Command::Session {
            token,
            route,
            body,
            events,
        } => {
            let session = match &token {
                Some(token) => client.resume_session(token),
                None => {
                    let session = client.session()?;
                    println!("{}", session.token());
                    session
                }
            };
            if events {
                let mut feed = session.events(0)?;
                print_events(&mut feed, None)?;
            } else if let Some(route) = route {
                let reply = session.call(&route, body)?;
                return finish(client, &reply, None);
            }
        }
    }
    client.shutdown();
    Ok(())
}

/// Prints `ID KIND DATA` lines until the stream ends or `count` events.
fn print_events(
    events: &mut EventStream,
    count: Option<u64>,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut stdout = std::io::stdout().lock();
    let mut seen = 0;
    while count.is_none_or(|count| seen < count) {
        let Some(event) = events.next_timeout(Duration::from_secs(3600)) else {
            continue;
        };
        let event = event?;
        write!(stdout, "{} {} ", event.id, event.kind)?;
        stdout.write_all(&event.data)?;
        stdout.write_all(b"\n")?;
        stdout.flush()?;
        seen += 1;
    }
    Ok(())
}

/// Writes a successful reply's body as it came (no decoding, no newline
/// added) to `output` or standard output; a failure's status and reason go
/// to standard error and the exit status. Shuts the client down either way.
fn finish(
    client: Client,
    reply: &Reply,
    output: Option<&std::path::Path>,
) -> Result<(), Box<dyn std::error::Error>> {
    if !reply.status.is_success() {
        client.shutdown();
        let reason = String::from_utf8_lossy(&reply.body);
        return Err(format!("status {}: {reason}", reply.status.0).into());
    }
    match output {
        Some(path) => {
            std::fs::write(path, &reply.body).map_err(|err| format!("{}: {err}", path.display()))?
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&reply.body)?;
            stdout.flush()?;
        }
    }
    client.shutdown();
    Ok(())
}
