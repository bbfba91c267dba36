//! The release server as a child process, and what `/proc` says about it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context};

use wsclose_e2e::server::{workspace_root, LISTENING_ON};

/// How long the server may take from spawn to its listening line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// A running release `wsclose-server`. Dropping it kills the process and reaps it.
pub struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    /// Spawns `binary --addr 127.0.0.1:0 args…` with its stderr going to `log`, and waits for
    /// the listening line.
    pub fn start(binary: &Path, args: &[String], log: &Path) -> anyhow::Result<Server> {
        if !binary.is_file() {
            bail!(
                "no server binary at {} (run `cargo build --release -p wsclose-server`)",
                binary.display()
            );
        }
        let mut command = Command::new(binary);
        command
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "warn");
        Self::spawn(command, log)
    }

    /// Spawns `command` (any server that prints a line containing `listening on http://IP:PORT`
    /// first, such as the bench's peers) with its stderr going to `log`, and waits for that line.
    pub fn spawn(mut command: Command, log: &Path) -> anyhow::Result<Server> {
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("create server log {}", log.display()))?;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("spawn {:?}", command.get_program()))?;
        let stdout = child.stdout.take().context("piped stdout")?;
        let (line_tx, line_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = line_tx.send(line);
            }
            // Keep draining so the server never blocks on a full stdout pipe.
            for _ in lines {}
        });
        // From here on, `Drop` kills the child whatever happens.
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let line = line_rx.recv_timeout(STARTUP_TIMEOUT).with_context(|| {
            format!(
                "no listening line from the server within {STARTUP_TIMEOUT:?}; see {}",
                log.display()
            )
        })?;
        server.addr = line
            .split_once(LISTENING_ON)
            .with_context(|| format!("unexpected first stdout line {line:?}"))?
            .1
            .trim()
            .parse()
            .with_context(|| format!("no socket address in {line:?}"))?;
        Ok(server)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `ws://IP:PORT{path}`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// The resident set size in KiB (`VmRSS` in `/proc/PID/status`, read by procfs).
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = procfs::process::Process::new(self.pid() as i32)
            .and_then(|process| process.status())
            .context("read /proc/PID/status")?;
        status.vmrss.context("no VmRSS in /proc/PID/status")
    }

    /// CPU time used so far, user plus system (`utime + stime` in `/proc/PID/stat`, in units
    /// of procfs's `ticks_per_second`).
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        let stat = procfs::process::Process::new(self.pid() as i32)
            .and_then(|process| process.stat())
            .context("read /proc/PID/stat")?;
        let ticks = stat.utime + stat.stime;
        Ok(Duration::from_secs_f64(
            ticks as f64 / procfs::ticks_per_second() as f64,
        ))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the release server is: `$CARGO_TARGET_DIR/release/wsclose-server`, else
/// `<workspace>/target/release/wsclose-server`.
pub fn default_binary() -> PathBuf {
    target_dir().join("release").join("wsclose-server")
}

/// The cargo target directory this workspace builds into.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_relative() {
                workspace_root().join(dir)
            } else {
                dir
            }
        })
        .unwrap_or_else(|| workspace_root().join("target"))
}
