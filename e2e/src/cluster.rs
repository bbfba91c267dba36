//! nginx in front of two `wsclose-server` instances, as `make serve-cluster` runs them.
//!
//! [`Cluster::start`] runs `deploy/serve-cluster.sh` (the same script a user runs) in its own
//! process group, with nginx on a free port and its prefix in a temporary directory, and reads
//! the script's stdout lines. It returns once the script has announced both instances (each
//! listening), nginx's pid (nginx listening, pid file written) and nginx's address, so every
//! process a test signals is up and its pid known, read from those lines. Dropping a
//! [`Cluster`] kills the script's process group (script, instances) and nginx's own, so a
//! failing test never leaves one behind.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::server::{server_binary, workspace_root};

/// How long the cluster may take from spawn to nginx's listening line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The Debian nginx binary, unless `NGINX_BIN` says otherwise (nginx itself reads `NGINX`).
pub fn nginx_binary() -> PathBuf {
    std::env::var_os("NGINX_BIN").map_or_else(|| "/usr/sbin/nginx".into(), PathBuf::from)
}

/// One start of one instance, as the script announced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceStart {
    /// 1 or 2.
    pub instance: u32,
    /// The process id of this start.
    pub pid: u32,
    /// Where this instance listens (nginx's upstream).
    pub addr: SocketAddr,
}

/// A running cluster; the process group is killed on drop.
pub struct Cluster {
    child: Child,
    pgid: i32,
    addr: SocketAddr,
    starts: mpsc::UnboundedReceiver<InstanceStart>,
    latest: [Option<InstanceStart>; 2],
    /// nginx's master pid from the script's `nginx pid` line, 0 until then. Shared with the
    /// task that reads the lines, so that a start that fails afterwards still kills nginx.
    nginx: Arc<AtomicI32>,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts the cluster. `proxy_read_timeout` is nginx's (for example `"60s"`); `args` are
    /// passed to every instance after `--addr` (each also gets `WSCLOSE_INSTANCE=K`).
    pub async fn start(proxy_read_timeout: &str, args: &[&str]) -> Cluster {
        Self::start_with(proxy_read_timeout, args, &[], false).await
    }

    /// [`Cluster::start`] with extra environment variables for the script and, through it, the
    /// instances (for example `INSTANCE_LOG_MAX` and `RUST_LOG`).
    pub async fn start_with_env(
        proxy_read_timeout: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Cluster {
        Self::start_with(proxy_read_timeout, args, env, false).await
    }

    /// Starts the cluster as a background job of a non-interactive shell (`make serve-cluster &`
    /// in a script, a CI step) starts it: with SIGINT and SIGTERM ignored.
    pub async fn start_as_background_job(proxy_read_timeout: &str, args: &[&str]) -> Cluster {
        Self::start_with(proxy_read_timeout, args, &[], true).await
    }

    async fn start_with(
        proxy_read_timeout: &str,
        args: &[&str],
        env: &[(&str, &str)],
        background: bool,
    ) -> Cluster {
        match Self::try_start(proxy_read_timeout, args, env, background).await {
            Ok(cluster) => cluster,
            Err(error) => panic!("cluster {args:?} did not start: {error:#}"),
        }
    }

    async fn try_start(
        proxy_read_timeout: &str,
        args: &[&str],
        env: &[(&str, &str)],
        background: bool,
    ) -> anyhow::Result<Cluster> {
        let nginx = nginx_binary();
        anyhow::ensure!(
            nginx.is_file(),
            "these tests need nginx at {}: run `make setup-browsers` (Debian's nginx), or set \
             NGINX_BIN",
            nginx.display()
        );
        let dir = tempfile::tempdir().context("temporary cluster directory")?;
        let script = workspace_root().join("deploy/serve-cluster.sh");
        let mut command = if background {
            // A shell that ignores both, then becomes the script: dispositions survive exec.
            let mut command = Command::new("bash");
            command
                .args(["-c", "trap '' INT TERM; exec \"$0\" \"$@\""])
                .arg(script);
            command
        } else {
            Command::new(script)
        };
        let mut child = command
            .arg(server_binary())
            .args(args)
            .env("ADDR", "127.0.0.1:0")
            .env("PROXY_READ_TIMEOUT", proxy_read_timeout)
            .env("CLUSTER_DIR", dir.path())
            .env("NGINX_BIN", &nginx)
            .envs(env.iter().copied())
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("spawn deploy/serve-cluster.sh")?;
        let pgid = i32::try_from(child.id().context("child has a pid")?)?;
        let (listening_tx, listening_rx) = tokio::sync::oneshot::channel();
        let (starts_tx, starts) = mpsc::unbounded_channel();
        let nginx_pid = Arc::new(AtomicI32::new(0));
        let nginx_line = Arc::clone(&nginx_pid);
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        tokio::spawn(async move {
            let mut listening_tx = Some(listening_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(pid) = parse_nginx_line(&line) {
                    nginx_line.store(pid, Ordering::SeqCst);
                } else if let Some(rest) = line.strip_prefix("wsclose-cluster listening on http://")
                {
                    if let Some(tx) = listening_tx.take() {
                        let _ = tx.send(rest.trim().to_owned());
                    }
                } else if let Some(start) = parse_instance_line(&line) {
                    let _ = starts_tx.send(start);
                }
            }
        });
        let mut cluster = Cluster {
            child,
            pgid,
            addr: "127.0.0.1:1".parse()?,
            starts,
            latest: [None, None],
            nginx: nginx_pid,
            dir,
        };
        let listening = match tokio::time::timeout(STARTUP_TIMEOUT, listening_rx).await {
            Ok(Ok(addr)) => addr,
            _ => bail!("no listening line; logs:\n{}", cluster.logs()),
        };
        cluster.addr = listening.parse().context("nginx address")?;
        // The script prints nginx's pid before the listening line, and the task reads them in
        // order.
        anyhow::ensure!(
            cluster.nginx.load(Ordering::SeqCst) > 0,
            "no nginx pid line before the listening line"
        );
        while cluster.latest.iter().any(Option::is_none) {
            cluster.next_start(Duration::from_secs(5)).await?;
        }
        Ok(cluster)
    }

    /// The cluster's directory (`CLUSTER_DIR`: nginx's prefix, its logs, the instance logs).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// nginx's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://NGINX{path}`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// The latest start of instance `k` (1 or 2).
    pub fn instance(&self, k: u32) -> InstanceStart {
        self.latest[k as usize - 1].expect("both instances started")
    }

    /// Waits for the next instance start the script announces.
    pub async fn next_start(&mut self, timeout: Duration) -> anyhow::Result<InstanceStart> {
        let start = tokio::time::timeout(timeout, self.starts.recv())
            .await
            .context("no instance start announced in time")?
            .context("the cluster script ended")?;
        self.latest[start.instance as usize - 1] = Some(start);
        Ok(start)
    }

    /// Sends SIGTERM to instance `k`'s current process (one step of a rolling restart).
    pub fn sigterm_instance(&self, k: u32) {
        let pid = i32::try_from(self.instance(k).pid).expect("pid fits");
        nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM instance");
    }

    /// Stops the whole cluster as Ctrl-C does (SIGINT to the process group) and waits for the
    /// script's exit status.
    pub async fn interrupt(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGINT);
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()?
            .ok()
    }

    /// [`Cluster::interrupt`], then asserts that the script exited 0 within `timeout`; the
    /// failure message holds [`Cluster::logs`].
    pub async fn assert_interrupt_stops(&mut self, timeout: Duration) {
        let status = self.interrupt(timeout).await;
        assert_eq!(
            status.map(|s| s.code()),
            Some(Some(0)),
            "the cluster did not exit 0 within {timeout:?} of Ctrl-C\n{}",
            self.logs()
        );
    }

    /// nginx's error log, each instance's stderr and the cluster's processes still running,
    /// for failure messages.
    pub fn logs(&self) -> String {
        let names = [
            "error.log",
            "instance-1.log.1",
            "instance-1.log",
            "instance-2.log.1",
            "instance-2.log",
        ];
        let mut logs: String = names
            .iter()
            .map(|name| {
                let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
                format!("--- {name}\n{text}")
            })
            .collect();
        logs.push_str("--- processes still running in the cluster's process groups\n");
        logs.push_str(&self.running());
        logs
    }

    /// `pid state command` of every process in the script's process group or nginx's (nginx
    /// runs in a session of its own), one a line.
    fn running(&self) -> String {
        let groups = [Some(self.pgid), self.announced_nginx()];
        let Ok(processes) = procfs::process::all_processes() else {
            return "(cannot read /proc)\n".to_owned();
        };
        processes
            .filter_map(|process| process.ok()?.stat().ok())
            .filter(|stat| groups.contains(&Some(stat.pgrp)))
            .map(|stat| format!("{} {} {}\n", stat.pid, stat.state, stat.comm))
            .collect()
    }
}

impl Cluster {
    /// nginx's master pid, as the script announced it before its listening line (nginx runs
    /// in its own session and process group, see the script).
    pub fn nginx_pid(&self) -> i32 {
        self.announced_nginx()
            .expect("a started cluster has announced nginx's pid")
    }

    /// nginx's master pid once the script has announced it.
    fn announced_nginx(&self) -> Option<i32> {
        Some(self.nginx.load(Ordering::SeqCst)).filter(|pid| *pid > 0)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGKILL);
        if let Some(nginx) = self.announced_nginx() {
            let _ = killpg(Pid::from_raw(nginx), Signal::SIGKILL);
        }
    }
}

/// Parses `wsclose-cluster nginx pid PID`.
fn parse_nginx_line(line: &str) -> Option<i32> {
    line.strip_prefix("wsclose-cluster nginx pid ")?
        .trim()
        .parse()
        .ok()
        .filter(|pid| *pid > 0)
}

/// Parses `wsclose-cluster instance K pid PID on http://IP:PORT`.
fn parse_instance_line(line: &str) -> Option<InstanceStart> {
    let rest = line.strip_prefix("wsclose-cluster instance ")?;
    let mut words = rest.split_whitespace();
    let instance = words.next()?.parse().ok()?;
    (words.next()? == "pid").then_some(())?;
    let pid = words.next()?.parse().ok()?;
    (words.next()? == "on").then_some(())?;
    let addr = words.next()?.strip_prefix("http://")?.parse().ok()?;
    Some(InstanceStart {
        instance,
        pid,
        addr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_lines_parse() {
        assert_eq!(
            parse_instance_line("wsclose-cluster instance 2 pid 4242 on http://127.0.0.1:40123"),
            Some(InstanceStart {
                instance: 2,
                pid: 4242,
                addr: "127.0.0.1:40123".parse().unwrap()
            })
        );
        assert_eq!(
            parse_instance_line("wsclose-cluster listening on http://x"),
            None
        );
    }

    #[test]
    fn nginx_lines_parse() {
        assert_eq!(
            parse_nginx_line("wsclose-cluster nginx pid 4242"),
            Some(4242)
        );
        assert_eq!(parse_nginx_line("wsclose-cluster nginx pid "), None);
        assert_eq!(
            parse_nginx_line("wsclose-cluster instance 1 pid 4242 on http://127.0.0.1:1"),
            None
        );
    }
}
