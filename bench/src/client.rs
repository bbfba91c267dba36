//! The scale phase's client processes: each holds a share of the connections, so that neither
//! one process's open-file limit nor one source address's ephemeral ports caps what the server
//! is given.
//!
//! A client process is the bench binary itself, run with the hidden flag `--scale-client`
//! ([`main`]). It talks to the orchestrator ([`ClientProcess`]) in JSON lines (serde): one
//! [`Command`] per line on its stdin, one [`Event`] per line on its stdout. It exits when its
//! stdin ends, so it never outlives the orchestrator, and the orchestrator kills it on drop.
//!
//! Every connection has its own task that reads continuously (Pongs for the server's Pings,
//! the echoes of its own Pings) and, when asked, sends a Ping every `ping_ms`. It records
//! when the server's Close arrived and with which code, and how the TCP connection ended.
//! Times are nanoseconds since the Unix epoch (`CLOCK_REALTIME`, the one clock every process
//! on the machine shares), so the orchestrator can compare them with the moment it signalled.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};

use crate::tally::ClientTally;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpSocket;
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Bound on one connect (TCP and the upgrade).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The client's read buffer: small, since the clients hold as many sockets as the server.
const CLIENT_READ_BUFFER: usize = 4 * 1024;
/// Openers per client process: connects in flight at once.
const OPENERS: usize = 32;

/// What the orchestrator asks a client process to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Open `count` connections to `url` (at `addr`), connection `k` bound to
    /// `sources[k % len]`; answered with [`Event::Opened`].
    Open {
        /// The WebSocket URL (for the upgrade request).
        url: String,
        /// The server's address.
        addr: SocketAddr,
        /// How many connections.
        count: usize,
        /// Loopback source addresses to bind to, in turn.
        sources: Vec<Ipv4Addr>,
        /// When set, every connection sends a Ping this often, staggered over the period.
        ping_ms: Option<u64>,
    },
    /// Every connection sends Close 1000 now; answered with [`Event::Ended`] once every
    /// connection has ended or `timeout_ms` has passed.
    Storm {
        /// The orchestrator's signal time, ns since the epoch: the zero of the reported times.
        since_unix_ns: u64,
        /// The close code a clean end has.
        expect_code: u16,
        /// Bound on the wait.
        timeout_ms: u64,
    },
    /// The server is closing (it was sent SIGTERM at `since_unix_ns`): answered with
    /// [`Event::Ended`] once every connection has ended or `timeout_ms` has passed.
    AwaitEnd {
        /// The signal time, ns since the epoch.
        since_unix_ns: u64,
        /// The close code a clean end has.
        expect_code: u16,
        /// Bound on the wait.
        timeout_ms: u64,
    },
}

/// What a client process answers. Externally tagged (`{"ended":{…}}`), unlike [`Command`]: an
/// internally tagged enum would lose the integer keys of [`Tally::close_codes`](crate::tally::Tally::close_codes) in JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// The connections of an [`Command::Open`] are open (or failed).
    Opened {
        /// Connections open.
        opened: usize,
        /// Connections that failed to open.
        failed: usize,
        /// The first reason one failed.
        first_error: Option<String>,
    },
    /// Every connection has ended (or the wait timed out).
    Ended(ClientTally),
    /// The command could not be carried out.
    Error {
        /// Why.
        message: String,
    },
}

/// How one connection's TCP ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// EOF after the close handshake.
    Eof,
    /// EOF with no Close from the server.
    EofWithoutClose,
    /// Connection reset.
    Reset,
    /// Another error.
    Error,
}

/// One connection's ending.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    /// The server's close code and when it arrived (ns since the epoch).
    close: Option<(Option<u16>, u64)>,
    /// How TCP ended and when.
    end: End,
    /// When TCP ended.
    end_unix_ns: u64,
}

/// Now, in ns since the Unix epoch.
pub fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        })
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Connects from `source` to `addr` and upgrades to `url`.
async fn connect(url: &str, addr: SocketAddr, source: Ipv4Addr) -> anyhow::Result<Ws> {
    let socket = TcpSocket::new_v4().context("socket")?;
    socket
        .bind(SocketAddr::new(IpAddr::V4(source), 0))
        .with_context(|| format!("bind {source}"))?;
    let tcp = socket
        .connect(addr)
        .await
        .with_context(|| format!("connect {source} → {addr}"))?;
    tcp.set_nodelay(true).context("TCP_NODELAY")?;
    let config = WebSocketConfig::default()
        .read_buffer_size(CLIENT_READ_BUFFER)
        .write_buffer_size(0);
    let (ws, _response) = tokio_tungstenite::client_async_with_config(url, tcp, Some(config))
        .await
        .with_context(|| format!("upgrade {url}"))?;
    Ok(ws)
}

/// Holds one connection until it ends: reads continuously, pings on `ping`, sends Close 1000
/// when `storm` turns true.
async fn hold(
    mut ws: Ws,
    mut ping: Option<tokio::time::Interval>,
    mut storm: watch::Receiver<bool>,
) -> Outcome {
    let mut close = None;
    let mut closing = false;
    let end = loop {
        let tick = async {
            match ping.as_mut() {
                Some(ping) => ping.tick().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            changed = storm.changed(), if !closing => {
                closing = true;
                if changed.is_ok() && *storm.borrow() {
                    let frame = CloseFrame { code: CloseCode::Normal, reason: "storm".into() };
                    // A failed send shows up as the read's error below.
                    let _ = ws.send(Message::Close(Some(frame))).await;
                }
            }
            _ = tick, if !closing => {
                let _ = ws.send(Message::Ping(Vec::new().into())).await;
            }
            message = ws.next() => match message {
                Some(Ok(Message::Close(frame))) => {
                    closing = true;
                    close = Some((frame.map(|frame| u16::from(frame.code)), unix_ns()));
                }
                Some(Ok(_)) => {}
                None => break if close.is_some() { End::Eof } else { End::EofWithoutClose },
                Some(Err(error)) => break classify(&error, close.is_some()),
            },
        }
    };
    Outcome {
        close,
        end,
        end_unix_ns: unix_ns(),
    }
}

/// How a read error ended the connection.
fn classify(error: &WsError, closed: bool) -> End {
    match error {
        WsError::ConnectionClosed | WsError::AlreadyClosed if closed => End::Eof,
        WsError::Protocol(
            tokio_tungstenite::tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        ) => End::EofWithoutClose,
        WsError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionReset => End::Reset,
        _ => End::Error,
    }
}

/// One client process's connections.
struct Holders {
    /// One task per open connection.
    tasks: Vec<JoinHandle<Outcome>>,
    /// Turned true for the storm.
    storm: watch::Sender<bool>,
}

/// Opens `count` connections with [`OPENERS`] tasks.
async fn open(
    holders: &mut Holders,
    url: &str,
    addr: SocketAddr,
    count: usize,
    sources: &[Ipv4Addr],
    ping: Option<Duration>,
) -> Event {
    if sources.is_empty() {
        return Event::Error {
            message: "no source address".into(),
        };
    }
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let first_error = Arc::new(Mutex::new(None::<String>));
    let tasks = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let openers: Vec<_> = (0..OPENERS.min(count.max(1)))
        .map(|_| {
            let (next, failed, first_error, tasks) = (
                next.clone(),
                failed.clone(),
                first_error.clone(),
                tasks.clone(),
            );
            let (url, sources, storm) = (url.to_owned(), sources.to_vec(), holders.storm.clone());
            tokio::spawn(async move {
                loop {
                    let number = next.fetch_add(1, Ordering::Relaxed);
                    if number >= count {
                        break;
                    }
                    let source = sources[number % sources.len()];
                    match tokio::time::timeout(CONNECT_TIMEOUT, connect(&url, addr, source)).await {
                        Ok(Ok(ws)) => {
                            // Connection k pings at k/100 of the period, so the pings spread.
                            let ping = ping.map(|period| {
                                let offset = period.mul_f64((number % 100) as f64 / 100.0);
                                tokio::time::interval_at(
                                    tokio::time::Instant::now() + offset,
                                    period,
                                )
                            });
                            let task = tokio::spawn(hold(ws, ping, storm.subscribe()));
                            tasks.lock().expect("lock").push(task);
                        }
                        outcome => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            let why = match outcome {
                                Ok(Err(error)) => format!("{error:#}"),
                                _ => format!("connect timed out after {CONNECT_TIMEOUT:?}"),
                            };
                            first_error.lock().expect("lock").get_or_insert(why);
                        }
                    }
                }
            })
        })
        .collect();
    futures::future::join_all(openers).await;
    let opened = std::mem::take(&mut *tasks.lock().expect("lock"));
    let count_opened = opened.len();
    holders.tasks.extend(opened);
    let first_error = first_error.lock().expect("lock").take();
    Event::Opened {
        opened: count_opened,
        failed: failed.load(Ordering::Relaxed),
        first_error,
    }
}

/// Waits (at most `timeout`) for every connection to end, and sums up how they did.
async fn await_end(
    holders: &mut Holders,
    since_unix_ns: u64,
    expect_code: u16,
    timeout: Duration,
) -> ClientTally {
    let deadline = tokio::time::Instant::now() + timeout;
    let ms = |at: u64| (at as f64 - since_unix_ns as f64) / 1e6;
    let mut ended = ClientTally::default();
    let tally = &mut ended.tally;
    for mut task in holders.tasks.drain(..) {
        let outcome = match tokio::time::timeout_at(deadline, &mut task).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => {
                tally.connections += 1;
                tally.other_error += 1;
                continue;
            }
            Err(_) => {
                task.abort();
                tally.connections += 1;
                tally.timed_out += 1;
                continue;
            }
        };
        if outcome.end_unix_ns < since_unix_ns {
            tally.ended_before += 1;
            continue;
        }
        tally.connections += 1;
        if let Some((code, at)) = outcome.close {
            *tally.close_codes.entry(code.unwrap_or(0)).or_default() += 1;
            ended.close_ms.push(ms(at));
        }
        match outcome.end {
            End::Eof
                if outcome
                    .close
                    .is_some_and(|(code, _)| code == Some(expect_code)) =>
            {
                tally.clean += 1;
            }
            End::Eof => {}
            End::EofWithoutClose => tally.eof_without_close += 1,
            End::Reset => tally.reset += 1,
            End::Error => tally.other_error += 1,
        }
        let end_ms = ms(outcome.end_unix_ns);
        ended.last_end_ms = Some(ended.last_end_ms.map_or(end_ms, |last| last.max(end_ms)));
    }
    ended
}

/// The client process: runs [`Command`]s from stdin until it ends. Run by
/// `wsclose-bench --scale-client`.
pub fn main() -> anyhow::Result<()> {
    // This process holds its share of the connections: raise the soft limit to the hard one.
    rlimit::increase_nofile_limit(u64::MAX).context("raise RLIMIT_NOFILE")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("a tokio runtime")?;
    runtime.block_on(async {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        let mut stdout = tokio::io::stdout();
        let (storm, _) = watch::channel(false);
        let mut holders = Holders {
            tasks: Vec::new(),
            storm,
        };
        while let Some(line) = lines.next_line().await.context("read stdin")? {
            let event = match serde_json::from_str::<Command>(&line) {
                Err(error) => Event::Error {
                    message: format!("bad command {line:?}: {error}"),
                },
                Ok(Command::Open {
                    url,
                    addr,
                    count,
                    sources,
                    ping_ms,
                }) => {
                    let ping = ping_ms.map(Duration::from_millis);
                    open(&mut holders, &url, addr, count, &sources, ping).await
                }
                Ok(Command::Storm {
                    since_unix_ns,
                    expect_code,
                    timeout_ms,
                }) => {
                    holders.storm.send_replace(true);
                    let timeout = Duration::from_millis(timeout_ms);
                    Event::Ended(await_end(&mut holders, since_unix_ns, expect_code, timeout).await)
                }
                Ok(Command::AwaitEnd {
                    since_unix_ns,
                    expect_code,
                    timeout_ms,
                }) => {
                    let timeout = Duration::from_millis(timeout_ms);
                    Event::Ended(await_end(&mut holders, since_unix_ns, expect_code, timeout).await)
                }
            };
            let mut text = serde_json::to_string(&event).context("encode an event")?;
            text.push('\n');
            stdout
                .write_all(text.as_bytes())
                .await
                .context("write stdout")?;
            stdout.flush().await.context("flush stdout")?;
        }
        // stdin ended: the orchestrator is gone or done.
        anyhow::Ok(())
    })?;
    // Do not wait for the connection tasks to be dropped one by one.
    std::process::exit(0);
}

/// A running client process, from the orchestrator's side. Dropping it kills the process
/// (`kill_on_drop`), and a client whose stdin closes exits by itself.
pub struct ClientProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl ClientProcess {
    /// Starts `exe --scale-client` (the bench binary itself).
    pub fn spawn(exe: &std::path::Path) -> anyhow::Result<ClientProcess> {
        let mut child = tokio::process::Command::new(exe)
            .arg("--scale-client")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawn {} --scale-client", exe.display()))?;
        let stdin = child.stdin.take().context("piped stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("piped stdout")?).lines();
        Ok(ClientProcess {
            child,
            stdin,
            stdout,
        })
    }

    /// Sends one command.
    pub async fn send(&mut self, command: &Command) -> anyhow::Result<()> {
        let mut text = serde_json::to_string(command).context("encode a command")?;
        text.push('\n');
        self.stdin
            .write_all(text.as_bytes())
            .await
            .context("write to a client process")?;
        self.stdin
            .flush()
            .await
            .context("flush to a client process")
    }

    /// The next event, waiting at most `timeout`.
    pub async fn recv(&mut self, timeout: Duration) -> anyhow::Result<Event> {
        let line = tokio::time::timeout(timeout, self.stdout.next_line())
            .await
            .with_context(|| format!("a client process said nothing for {timeout:?}"))?
            .context("read from a client process")?;
        let Some(line) = line else {
            let status = self.child.try_wait().ok().flatten();
            bail!("a client process ended (status {status:?})");
        };
        let event = serde_json::from_str(&line)
            .with_context(|| format!("a client process's line {line:?}"))?;
        if let Event::Error { message } = event {
            bail!("a client process: {message}");
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_json_lines() {
        let command = Command::Storm {
            since_unix_ns: 7,
            expect_code: 1000,
            timeout_ms: 10,
        };
        let text = serde_json::to_string(&command).unwrap();
        assert_eq!(
            text,
            r#"{"cmd":"storm","since_unix_ns":7,"expect_code":1000,"timeout_ms":10}"#
        );
        let Command::Storm { since_unix_ns, .. } = serde_json::from_str(&text).unwrap() else {
            panic!("{text}");
        };
        assert_eq!(since_unix_ns, 7);
    }
}
