//! The reverse proxies people put in front of WebSocket servers, as Debian ships them: nginx,
//! HAProxy 2.6, Apache 2.4 (`mod_proxy_wstunnel`) and Caddy 2.6, each started in front of one
//! upstream with short idle timeouts, for the tests that measure what each does to an idle
//! WebSocket (`tests/idle.rs`).
//!
//! [`Proxy::start`] writes the proxy's own configuration into a temporary directory (its
//! prefix, pid file, logs and state all live there; nothing is written elsewhere), runs the
//! proxy in the foreground in a process group of its own on a free port of 127.0.0.1, and
//! returns once a WebSocket upgrade through it reaches the upstream (a 101). Dropping a
//! [`Proxy`] kills the whole group (the master and its workers), so a failing test leaves no
//! proxy behind. Each proxy's configuration is in its own file: `nginx.rs`, `haproxy.rs`,
//! `apache.rs`, `caddy.rs`, which also say what each timeout does, as measured.

mod apache;
mod caddy;
mod haproxy;
mod nginx;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// How long a proxy may take from spawn to forwarding its first upgrade.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How often the readiness wait tries an upgrade while the proxy starts.
const READY_POLL: Duration = Duration::from_millis(50);
/// Bound on one upgrade attempt of the readiness wait.
const READY_ATTEMPT: Duration = Duration::from_secs(2);
/// How many free ports are tried when another process takes the one picked first.
const PORT_ATTEMPTS: usize = 5;
/// The log file in the proxy's directory that holds its stdout and stderr.
const LOG_FILE: &str = "proxy.log";

/// Which proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    /// Debian's nginx (1.22): `proxy_read_timeout` and `proxy_send_timeout`.
    Nginx,
    /// Debian's HAProxy (2.6): `timeout client`, `timeout server` and `timeout tunnel`.
    Haproxy,
    /// Debian's Apache httpd (2.4) with `mod_proxy_wstunnel`: `Timeout` and `ProxyTimeout`.
    Apache,
    /// Debian's Caddy (2.6): `reverse_proxy`, whose HTTP transport has a `read_timeout`.
    Caddy,
}

impl ProxyKind {
    /// The name in tables and logs.
    pub fn name(self) -> &'static str {
        match self {
            ProxyKind::Nginx => "nginx",
            ProxyKind::Haproxy => "HAProxy",
            ProxyKind::Apache => "Apache",
            ProxyKind::Caddy => "Caddy",
        }
    }

    /// The settings that bound an idle proxied WebSocket, set to `timeout` (or left at the
    /// proxy's defaults when `None`), as one line for tables and logs.
    pub fn settings(self, timeout: Option<Duration>) -> String {
        let Some(timeout) = timeout else {
            return format!("{} defaults", self.name());
        };
        let secs = timeout.as_secs();
        match self {
            ProxyKind::Nginx => format!("proxy_read_timeout {secs}s; proxy_send_timeout {secs}s"),
            ProxyKind::Haproxy => {
                format!("timeout client {secs}s, timeout server {secs}s, timeout tunnel {secs}s")
            }
            ProxyKind::Apache => format!("Timeout {secs}, ProxyTimeout {secs}"),
            ProxyKind::Caddy => format!("reverse_proxy transport http read_timeout {secs}s"),
        }
    }
}

/// What a proxy needs to be started: where it listens, where it forwards, its timeout, and
/// the directory it owns.
pub(crate) struct Setup<'a> {
    /// The directory for the configuration, pid file, logs and state.
    pub dir: &'a Path,
    /// Where the proxy listens.
    pub listen: SocketAddr,
    /// Where it forwards.
    pub upstream: SocketAddr,
    /// The idle timeout to configure; `None` keeps the proxy's defaults.
    pub timeout: Option<Duration>,
}

/// A running proxy; its process group is killed on drop.
pub struct Proxy {
    kind: ProxyKind,
    child: Child,
    pgid: i32,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Proxy {
    /// Starts `kind` on a free port in front of `upstream` with `timeout` (see
    /// [`ProxyKind::settings`]; `None`: the proxy's defaults), and waits until an upgrade of
    /// `ready_path` through it gets the upstream's 101. Panics with the proxy's log when it
    /// does not start.
    pub async fn start(
        kind: ProxyKind,
        upstream: SocketAddr,
        timeout: Option<Duration>,
        ready_path: &str,
    ) -> Proxy {
        match Self::try_start(kind, upstream, timeout, ready_path).await {
            Ok(proxy) => proxy,
            Err(error) => panic!("{} did not start: {error:#}", kind.name()),
        }
    }

    async fn try_start(
        kind: ProxyKind,
        upstream: SocketAddr,
        timeout: Option<Duration>,
        ready_path: &str,
    ) -> anyhow::Result<Proxy> {
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix(&format!("wsclose-{}-", kind.name().to_lowercase()))
                .tempdir()
                .context("the proxy's temporary directory")?;
            let listen = free_port()?;
            let setup = Setup {
                dir: dir.path(),
                listen,
                upstream,
                timeout,
            };
            let command = match kind {
                ProxyKind::Nginx => nginx::command(&setup),
                ProxyKind::Haproxy => haproxy::command(&setup),
                ProxyKind::Apache => apache::command(&setup),
                ProxyKind::Caddy => caddy::command(&setup),
            }?;
            let mut proxy = Proxy::spawn(kind, command, listen, dir)?;
            match proxy.wait_ready(ready_path).await {
                Ok(()) => return Ok(proxy),
                // Another process took the port between the pick and the bind: pick again.
                Err(error)
                    if proxy
                        .log()
                        .to_lowercase()
                        .contains("address already in use") =>
                {
                    last_error = Some(error);
                }
                Err(error) => return Err(error.context(proxy.log())),
            }
        }
        Err(last_error
            .expect("at least one attempt")
            .context("every port picked was taken"))
    }

    fn spawn(
        kind: ProxyKind,
        mut command: Command,
        addr: SocketAddr,
        dir: tempfile::TempDir,
    ) -> anyhow::Result<Proxy> {
        let log = std::fs::File::create(dir.path().join(LOG_FILE)).context("the proxy's log")?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("the proxy's log")?)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawn {}", kind.name()))?;
        let pgid = i32::try_from(child.id().context("the proxy has a pid")?)?;
        Ok(Proxy {
            kind,
            child,
            pgid,
            addr,
            dir,
        })
    }

    /// Waits until an upgrade of `path` through the proxy gets a 101 from the upstream, while
    /// the proxy runs, for at most [`STARTUP_TIMEOUT`].
    async fn wait_ready(&mut self, path: &str) -> anyhow::Result<()> {
        let url = self.ws_url(path);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let attempt =
                tokio::time::timeout(READY_ATTEMPT, tokio_tungstenite::connect_async(&url)).await;
            let error = match attempt {
                Ok(Ok((mut ws, _))) => {
                    let _ = ws.close(None).await;
                    return Ok(());
                }
                Ok(Err(error)) => error.to_string(),
                Err(_) => format!("no answer within {READY_ATTEMPT:?}"),
            };
            if let Some(status) = self.child.try_wait().context("poll the proxy")? {
                bail!(
                    "{} exited ({status}) before forwarding an upgrade",
                    self.kind.name()
                );
            }
            if Instant::now() >= deadline {
                bail!("no 101 through {url} within {STARTUP_TIMEOUT:?}: {error}");
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// Which proxy this is.
    pub fn kind(&self) -> ProxyKind {
        self.kind
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://IP:PORT{path}` through the proxy.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// `http://IP:PORT{path}` through the proxy.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// What the proxy logged so far (its stdout and stderr), for failure messages.
    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join(LOG_FILE)).unwrap_or_default();
        format!("---- {} log ----\n{log}", self.kind.name())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // The master and its workers share the group; `kill_on_drop` covers the master alone.
        let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGKILL);
        if std::thread::panicking() {
            eprintln!("{}", self.log());
        }
    }
}

/// A port on 127.0.0.1 that was free a moment ago: none of these proxies can bind port 0 and
/// say which port it got. [`Proxy::start`] picks another when it was taken meanwhile.
fn free_port() -> anyhow::Result<SocketAddr> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .context("bind 127.0.0.1:0")
}

/// A [`Command`] for `program` if it is installed, else an error that says how to install it.
fn installed(program: &Path) -> anyhow::Result<Command> {
    anyhow::ensure!(
        program.is_file(),
        "these tests need {}: run `make setup` (Debian's nginx, haproxy, apache2 and caddy)",
        program.display()
    );
    Ok(Command::new(program))
}

/// Writes `text` to `name` in `dir` and returns its path.
fn write_config(dir: &Path, name: &str, text: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}
