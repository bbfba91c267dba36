//! Just enough of the W3C WebDriver protocol to run a script in headless Chromium: start
//! `chromedriver`, open a session, navigate, execute an async script, quit.
//!
//! WebDriver is JSON over HTTP/1.1. Each command is one request with `Connection: close`, so
//! a few lines over a `TcpStream` stand in for an HTTP client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long chromedriver may take to answer `/status` with `ready: true`.
const DRIVER_STARTUP: Duration = Duration::from_secs(15);

/// Bound on each WebDriver command other than script execution.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `chromedriver`, killed on drop.
pub struct Driver {
    child: Child,
    addr: SocketAddr,
}

impl Driver {
    /// Starts `chromedriver` on a free loopback port and waits until it is ready.
    pub async fn start(binary: &Path, log: &Path) -> anyhow::Result<Driver> {
        let port = free_port()?;
        let log_file = std::fs::File::create(log)?;
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("spawn {}", binary.display()))?;
        let driver = Driver {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = tokio::time::Instant::now() + DRIVER_STARTUP;
        loop {
            if let Ok(status) = driver.request("GET", "/status", None).await {
                if status["value"]["ready"] == true {
                    return Ok(driver);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "chromedriver not ready within {DRIVER_STARTUP:?}; see {}",
                    log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Opens a headless Chromium session with a fresh profile in `profile_dir`.
    pub async fn new_session(
        &self,
        profile_dir: &Path,
        script_timeout: Duration,
    ) -> anyhow::Result<Session<'_>> {
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-extensions".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--disable-quic".to_owned(),
        ];
        args.push(format!("--user-data-dir={}", profile_dir.display()));
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": { "args": args },
                    "timeouts": {
                        "script": script_timeout.as_millis() as u64,
                        "pageLoad": 30_000,
                    },
                }
            }
        });
        let response = self.request("POST", "/session", Some(capabilities)).await?;
        let id = response["value"]["sessionId"]
            .as_str()
            .with_context(|| format!("no session id in {response}"))?
            .to_owned();
        let version = response["value"]["capabilities"]["browserVersion"]
            .as_str()
            .unwrap_or("unknown")
            .to_owned();
        Ok(Session {
            driver: self,
            id,
            version,
        })
    }

    /// One WebDriver command: `method path` with an optional JSON body; returns the JSON answer,
    /// or an error carrying WebDriver's own message when the status is not 2xx.
    async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        self.request_within(method, path, body, COMMAND_TIMEOUT)
            .await
    }

    async fn request_within(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let body = body.map(|body| body.to_string()).unwrap_or_default();
        let addr = self.addr;
        let exchange = async {
            let mut stream = TcpStream::connect(addr).await?;
            let head = format!(
                "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
                 Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(body.as_bytes()).await?;
            read_response(&mut stream).await
        };
        let (status, body) = tokio::time::timeout(timeout, exchange)
            .await
            .with_context(|| format!("WebDriver {method} {path} timed out after {timeout:?}"))?
            .with_context(|| format!("WebDriver {method} {path}"))?;
        let value: Value = serde_json::from_slice(&body)
            .with_context(|| format!("WebDriver {method} {path}: answer is not JSON"))?;
        if !(200..300).contains(&status) {
            let error = value["value"]["error"].as_str().unwrap_or("unknown error");
            let message = value["value"]["message"].as_str().unwrap_or_default();
            let first_line = message.lines().next().unwrap_or_default();
            bail!("WebDriver {method} {path}: HTTP {status} {error}: {first_line}");
        }
        Ok(value)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An open browser session. Call [`Session::quit`] to close the browser.
pub struct Session<'d> {
    driver: &'d Driver,
    id: String,
    version: String,
}

impl Session<'_> {
    /// The browser's version as it reports it.
    pub fn browser_version(&self) -> &str {
        &self.version
    }

    /// Navigates to `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        let path = format!("/session/{}/url", self.id);
        self.driver
            .request("POST", &path, Some(json!({ "url": url })))
            .await?;
        Ok(())
    }

    /// Runs `script` as an async script (its last argument is the callback) with `args`, and
    /// returns what it passed to the callback.
    pub async fn execute_async(
        &self,
        script: &str,
        args: Vec<Value>,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let path = format!("/session/{}/execute/async", self.id);
        let answer = self
            .driver
            .request_within(
                "POST",
                &path,
                Some(json!({ "script": script, "args": args })),
                timeout + Duration::from_secs(10),
            )
            .await?;
        Ok(answer["value"].clone())
    }

    /// Ends the session, which closes the browser.
    pub async fn quit(self) -> anyhow::Result<()> {
        let path = format!("/session/{}", self.id);
        self.driver.request("DELETE", &path, None).await?;
        Ok(())
    }
}

/// A fresh, empty directory for a browser profile, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `<tmp>/wsclose-bench-<name>-<pid>-<nanos>`.
    pub fn new(name: &str) -> anyhow::Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "wsclose-bench-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(TempDir(dir))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Reads one HTTP/1.1 response: `(status, body)`. ChromeDriver keeps the connection open
/// despite `Connection: close`, so the body ends by `Content-Length` or the last chunk, not EOF.
async fn read_response(stream: &mut TcpStream) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8 * 1024];
    let (status, headers, head_len) = loop {
        if let Some(head) = wsclose_e2e::http::parse_head(&raw)? {
            break head;
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            bail!("connection closed before the response head");
        }
        raw.extend_from_slice(&chunk[..read]);
    };
    let header = |wanted: &str| {
        headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
            .map(|(_, value)| value.as_str())
    };
    let content_length: Option<usize> = header("content-length").and_then(|v| v.parse().ok());
    let chunked = header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    loop {
        let body = &raw[head_len..];
        let complete = match (content_length, chunked) {
            (Some(length), _) => body.len() >= length,
            (None, true) => body.ends_with(b"0\r\n\r\n"),
            (None, false) => false, // until EOF
        };
        if complete {
            break;
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        raw.extend_from_slice(&chunk[..read]);
    }
    let body = &raw[head_len..];
    let body = match (content_length, chunked) {
        (Some(length), _) => body.get(..length).context("truncated body")?.to_vec(),
        (None, true) => wsclose_e2e::http::dechunk(body)?,
        (None, false) => body.to_vec(),
    };
    Ok((status, body))
}
