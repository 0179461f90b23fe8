//! Just enough of the W3C WebDriver protocol to drive a headless Chromium
//! through `chromedriver` from a test: start a session, open a page, run
//! a script and read what it returns. Plain HTTP and JSON over loopback
//! (this kit's HTTP client), no async runtime.

use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::http::http_request;

/// A `chromedriver` process, killed when dropped.
#[derive(Debug)]
pub struct ChromeDriver {
    child: Child,
    addr: SocketAddr,
}

impl ChromeDriver {
    /// Starts `chromedriver` on a port it picks (it prints which).
    pub fn start() -> io::Result<Self> {
        let mut child = Command::new("chromedriver")
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().ok_or(io::ErrorKind::BrokenPipe)?;
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(20);
        let port = loop {
            let Some(line) = lines.next() else {
                let _ = child.kill();
                return Err(io::Error::other("chromedriver exited before it listened"));
            };
            let line = line?;
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                let port = rest.trim_end_matches('.').trim().parse::<u16>();
                break port.map_err(|_| io::Error::other(format!("no port in {line:?}")))?;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(io::ErrorKind::TimedOut.into());
            }
        };
        // The rest of its output is not read: let it go to a thread that drains it.
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        })
    }

    /// A headless Chromium session.
    pub fn session(&self) -> io::Result<Session> {
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                                 "--disable-dev-shm-usage", "--window-size=1000,1100"]
                    }
                }
            }
        });
        let answer = command(self.addr, "POST", "/session", &capabilities)?;
        let id = answer["sessionId"]
            .as_str()
            .ok_or_else(|| io::Error::other(format!("no session: {answer}")))?
            .to_owned();
        Ok(Session {
            driver: self.addr,
            id,
        })
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser session, closed when dropped.
#[derive(Debug)]
pub struct Session {
    driver: SocketAddr,
    id: String,
}

impl Session {
    /// Opens `url`.
    pub fn goto(&self, url: &str) -> io::Result<()> {
        let path = format!("/session/{}/url", self.id);
        command(self.driver, "POST", &path, &json!({ "url": url })).map(drop)
    }

    /// Runs `script` (a function body) in the page and returns its value.
    pub fn execute(&self, script: &str) -> io::Result<Value> {
        let path = format!("/session/{}/execute/sync", self.id);
        let body = json!({ "script": script, "args": [] });
        command(self.driver, "POST", &path, &body)
    }

    /// A PNG of the page, base64-encoded as WebDriver returns it.
    pub fn screenshot_base64(&self) -> io::Result<String> {
        let path = format!("/session/{}/screenshot", self.id);
        let value = command(self.driver, "GET", &path, &Value::Null)?;
        value
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| io::Error::other("no screenshot"))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let path = format!("/session/{}", self.id);
        let _ = command(self.driver, "DELETE", &path, &Value::Null);
    }
}

/// One WebDriver command: its `value`, or the error it reported.
fn command(driver: SocketAddr, method: &str, path: &str, body: &Value) -> io::Result<Value> {
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let headers = [("content-type", "application/json")];
    let response = http_request(driver, method, path, &headers, &body)?;
    let value: Value = serde_json::from_slice(&response.body)
        .map_err(|e| io::Error::other(format!("{method} {path}: {e}: {}", response.text())))?;
    if response.status != 200 {
        return Err(io::Error::other(format!(
            "{method} {path}: {} {}",
            response.status, value["value"]
        )));
    }
    Ok(value["value"].clone())
}
