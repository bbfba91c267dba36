//! What the tests that run the real `wsclose-check` binary share: the run with its time and
//! memory bounds, and the pieces of the in-process servers they run it against.

// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// Every run must end within this, whatever the server does.
pub const TIME_BOUND: Duration = Duration::from_secs(60);
/// Every run's peak RSS must stay under this: the check's own budget (64 MiB), half the
/// 128 MiB the issue allows. (The 50 MB message held in memory, as before, peaked at 106 MiB.)
pub const RSS_BOUND_KIB: u64 = 64 * 1024;
/// A run past this RSS is killed at once: the bound is broken, and the machine must not swap.
pub const RSS_KILL_KIB: u64 = 512 * 1024;
/// Short waits, so the hostile cases take seconds, not minutes.
pub const FAST: [&str; 4] = ["--close-wait", "1s", "--timeout", "2s"];

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    /// The process's peak RSS (VmHWM), as last read before it exited.
    pub peak_rss_kib: u64,
}

impl Run {
    /// Exit `status`, within the time and memory bounds, and one stderr line containing `line`.
    pub fn assert(&self, status: i32, line: &str) {
        assert_eq!(self.status, Some(status), "{self:#?}");
        assert!(self.elapsed < TIME_BOUND, "{self:#?}");
        assert!(self.peak_rss_kib < RSS_BOUND_KIB, "{self:#?}");
        assert!(self.peak_rss_kib > 0, "no RSS read: {self:#?}");
        assert_eq!(self.stderr.lines().count(), 1, "{self:#?}");
        assert!(
            self.stderr.contains(line),
            "{:?} lacks {line:?}",
            self.stderr
        );
    }
}

pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs the binary with `args`, sampling its peak RSS every 10 ms; kills it past the time bound
/// or [`RSS_KILL_KIB`].
pub async fn check(args: Vec<String>) -> Run {
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_wsclose-check"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run wsclose-check");
        let pipe = |mut from: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = from.read_to_string(&mut text);
                text
            })
        };
        let stdout = pipe(Box::new(child.stdout.take().unwrap()));
        let stderr = pipe(Box::new(child.stderr.take().unwrap()));
        let mut peak_rss_kib = 0;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            peak_rss_kib = vm_hwm_kib(child.id()).unwrap_or(peak_rss_kib);
            if started.elapsed() > TIME_BOUND + Duration::from_secs(5)
                || peak_rss_kib > RSS_KILL_KIB
            {
                let _ = child.kill();
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let run = Run {
            status: status.code(),
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
            elapsed: started.elapsed(),
            peak_rss_kib,
        };
        println!("{run:#?}");
        run
    })
    .await
    .unwrap()
}

/// The report of a run with `--json`.
pub fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|error| panic!("{error}: {run:#?}"))
}

/// The text field `key` (`"detail"`, `"verdict"`, `"fix"`) of check `id` in a JSON report.
pub fn check_field<'a>(json: &'a serde_json::Value, id: &str, key: &str) -> &'a str {
    json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["id"] == id)
        .and_then(|check| check[key].as_str())
        .unwrap_or_else(|| panic!("no {key} of {id} in {json}"))
}

/// The detail of check `id` in a JSON report.
pub fn detail<'a>(json: &'a serde_json::Value, id: &str) -> &'a str {
    check_field(json, id, "detail")
}

pub fn args(url: &str, extra: &[&str]) -> Vec<String> {
    std::iter::once(url)
        .chain(extra.iter().copied())
        .map(str::to_owned)
        .collect()
}

/// A listener on `127.0.0.1:0` whose every connection is handed to `serve`.
pub async fn serve<F, Fut>(serve: F) -> (SocketAddr, JoinHandle<()>)
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            connections.spawn(serve(stream));
        }
    });
    (addr, task)
}

/// Runs the binary with `extra` against a fresh [`serve`] server of `handler` at
/// `SCHEME://ADDR/`; the server is aborted when the run ends.
pub async fn check_served<F, Fut>(scheme: &str, extra: &[&str], handler: F) -> Run
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (addr, server) = serve(handler).await;
    let run = check(args(&format!("{scheme}://{addr}/"), extra)).await;
    server.abort();
    run
}

/// Holds the connection and never reads or writes: a server that hangs.
pub async fn silent(stream: TcpStream) {
    let _held = stream;
    std::future::pending::<()>().await;
}

/// Reads an upgrade request and answers 101 with the right accept; `None` if it is not one.
pub async fn accept_upgrade(stream: &mut TcpStream) -> Option<()> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await.ok()?);
        if head.len() > 16 * 1024 {
            return None;
        }
    }
    let head = String::from_utf8_lossy(&head);
    let key = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("sec-websocket-key")
            .then(|| value.trim().to_owned())
    })?;
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    stream.write_all(response.as_bytes()).await.ok()
}

/// Writes `chunk` until the peer goes away.
pub async fn write_forever(stream: &mut TcpStream, chunk: &[u8]) {
    while stream.write_all(chunk).await.is_ok() {}
}
