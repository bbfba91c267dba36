//! The server under test as a child process.
//!
//! [`server_binary`] builds `wsclose-server` with escargot (`cargo build -p wsclose-server --bin
//! wsclose-server`) once per test process, so the tests never run a stale binary, and finds the
//! executable from cargo's JSON messages (which honour `CARGO_TARGET_DIR` and `--release`
//! without guessing paths).
//! [`ServerProcess::start`] spawns it on `127.0.0.1:0` and waits for its listening line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, AsyncRead};
use tokio::process::{Child, Command};

/// The prefix of the one line the server prints to stdout once it listens.
pub const LISTENING_PREFIX: &str = "wsclose-server listening on http://";

/// What every listening line contains, the server's and the examples' (`listening on
/// http://IP:PORT`), right before the address.
pub const LISTENING_ON: &str = "listening on http://";

/// How long the server may take from spawn to its listening line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// The workspace root: the parent of this crate's manifest directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ has a parent")
        .to_path_buf()
}

/// Builds `wsclose-server` (once per test process) and returns the path of the executable.
///
/// Debug by default; `--release` when the environment variable `WSCLOSE_E2E_RELEASE` is set.
/// Panics with cargo's output when the build fails, because no test can run without it.
pub fn server_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        build(Target::Bin {
            package: "wsclose-server",
            name: "wsclose-server",
        })
        .unwrap_or_else(|err| panic!("{err:#}"))
    })
}

/// Builds `wsclose-check` (once per test process) and returns the path of the executable, like
/// [`server_binary`]: for tests that run the check as a user does, flags and exit status
/// included.
pub fn check_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        build(Target::Bin {
            package: "wsclose-check",
            name: "wsclose-check",
        })
        .unwrap_or_else(|err| panic!("{err:#}"))
    })
}

/// Builds the example `name` of the `wsclose` crate (`wsclose/examples/NAME.rs`, every feature, once per test
/// process) and returns the path of the executable, like [`server_binary`].
pub fn example_binary(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, path)) = built.iter().find(|(built, _)| built == name) {
        return path.clone();
    }
    let path = build(Target::Example(name)).unwrap_or_else(|err| panic!("{err:#}"));
    built.push((name.to_owned(), path.clone()));
    path
}

/// Builds `target` with escargot (`cargo build -p PACKAGE --bin NAME`, or `cargo build -p
/// wsclose --all-features --example NAME`; `--release` with `WSCLOSE_E2E_RELEASE`), and
/// returns the path of the
/// executable from cargo's JSON messages, which honour `CARGO_TARGET_DIR` and `--release`
/// without guessing paths. A failed build's error carries the compiler's rendered messages.
fn build(target: Target<'_>) -> anyhow::Result<PathBuf> {
    let mut build = escargot::CargoBuild::new().manifest_path(workspace_root().join("Cargo.toml"));
    let (package, name) = match target {
        Target::Bin { package, name } => {
            build = build.package(package).bin(name);
            (package, name)
        }
        Target::Example(name) => {
            build = build.package("wsclose").all_features().example(name);
            ("wsclose", name)
        }
    };
    if std::env::var_os("WSCLOSE_E2E_RELEASE").is_some() {
        build = build.release();
    }
    let what = format!("cargo build -p {package} {target:?}");
    let mut rendered = String::new();
    for message in build.exec().with_context(|| format!("run {what}"))? {
        let message = message.with_context(|| format!("{what} failed:\n{rendered}"))?;
        match message
            .decode()
            .with_context(|| format!("{what}: a message"))?
        {
            escargot::format::Message::CompilerArtifact(artifact)
                if artifact.target.name == name =>
            {
                if let Some(executable) = artifact.executable {
                    return Ok(executable.into_owned());
                }
            }
            escargot::format::Message::CompilerMessage(compiler) => {
                rendered.push_str(compiler.message.rendered.as_deref().unwrap_or_default());
            }
            _ => {}
        }
    }
    bail!("{what} succeeded but reported no {name} executable")
}

/// What [`build`] builds: a binary of a workspace package, or an example of `wsclose`.
#[derive(Debug, Clone, Copy)]
enum Target<'a> {
    /// `-p PACKAGE --bin NAME`.
    Bin {
        /// The workspace package.
        package: &'a str,
        /// The binary.
        name: &'a str,
    },
    /// `--example NAME`.
    Example(&'a str),
}

/// The resident memory of process `pid` in KiB, or `None` once it is gone: for a task that
/// samples a server's RSS beside the test (which keeps the [`ServerProcess`]).
pub fn rss_kib_of(pid: u32) -> Option<u64> {
    procfs::process::Process::new(i32::try_from(pid).ok()?)
        .and_then(|process| process.status())
        .ok()?
        .vmrss
}

/// Shared, growing copy of what a child printed on one of its streams.
type Captured = Arc<Mutex<Vec<String>>>;

/// A running `wsclose-server`. Dropping it kills the process (SIGKILL), so a test that fails or
/// panics half-way still cleans up; call [`ServerProcess::sigterm`] and
/// [`ServerProcess::wait_exit`] to test the graceful path instead.
pub struct ServerProcess {
    child: Child,
    pid: u32,
    addr: SocketAddr,
    stdout: Captured,
    stderr: Captured,
}

impl ServerProcess {
    /// Spawns the server with `--addr 127.0.0.1:0` followed by `args`, and waits until it prints
    /// its listening line. Panics (with the server's stderr) if it does not start.
    pub async fn start(args: &[&str]) -> ServerProcess {
        match Self::try_start(args).await {
            Ok(server) => server,
            Err(err) => panic!("wsclose-server {args:?} did not start: {err:#}"),
        }
    }

    /// Like [`ServerProcess::start`], but returns the error instead of panicking.
    pub async fn try_start(args: &[&str]) -> anyhow::Result<ServerProcess> {
        Self::try_start_on("127.0.0.1:0", args).await
    }

    /// Like [`ServerProcess::start`], listening on `listen` (`IP:0` for a free port there).
    pub async fn start_on(listen: &str, args: &[&str]) -> ServerProcess {
        match Self::try_start_on(listen, args).await {
            Ok(server) => server,
            Err(err) => panic!("wsclose-server --addr {listen} {args:?} did not start: {err:#}"),
        }
    }

    async fn try_start_on(listen: &str, args: &[&str]) -> anyhow::Result<ServerProcess> {
        let mut command = server_command();
        command.args(["--addr", listen]).args(args);
        Self::spawn(command).await
    }

    /// Spawns the example `name` (see [`example_binary`]) on `127.0.0.1:0`, its only argument,
    /// with `env` added to a clean environment, and waits for its `listening on` line.
    pub async fn start_example(name: &str, env: &[(&str, &str)]) -> ServerProcess {
        let mut command = clean_command(&example_binary(name));
        command.arg("127.0.0.1:0").envs(env.iter().copied());
        match Self::spawn(command).await {
            Ok(server) => server,
            Err(err) => panic!("example {name} did not start: {err:#}"),
        }
    }

    /// Spawns `command` with piped output and waits until it prints its listening line: one
    /// that contains [`LISTENING_ON`] followed by the address. Any server that prints such a
    /// line will do: the bench starts its release build and its peers this way.
    pub async fn spawn(mut command: Command) -> anyhow::Result<ServerProcess> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().context("spawn the server")?;
        let pid = child.id().context("child has a pid")?;
        let stderr: Captured = Arc::default();
        let stdout: Captured = Arc::default();
        let verbose = std::env::var_os("WSCLOSE_E2E_VERBOSE").is_some();
        capture(child.stderr.take().expect("piped"), stderr.clone(), verbose);

        let (line_tx, line_rx) = tokio::sync::oneshot::channel();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("piped")).lines();
        let stdout_copy = stdout.clone();
        tokio::spawn(async move {
            let mut line_tx = Some(line_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                stdout_copy.lock().expect("lock").push(line.clone());
                if let Some(tx) = line_tx.take() {
                    let _ = tx.send(line);
                }
            }
        });

        let line = match tokio::time::timeout(STARTUP_TIMEOUT, line_rx).await {
            Ok(Ok(line)) => line,
            Ok(Err(_)) => {
                let status = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
                bail!(
                    "stdout closed before the listening line (exit: {status:?}); stderr:\n{}",
                    joined(&stderr)
                );
            }
            Err(_) => bail!(
                "no listening line within {STARTUP_TIMEOUT:?}; stderr:\n{}",
                joined(&stderr)
            ),
        };
        let addr = line
            .split_once(LISTENING_ON)
            .with_context(|| format!("unexpected first stdout line {line:?}"))?
            .1
            .trim()
            .parse::<SocketAddr>()
            .with_context(|| format!("no socket address in {line:?}"))?;
        Ok(ServerProcess {
            child,
            pid,
            addr,
            stdout,
            stderr,
        })
    }

    /// The exit status if the process has exited, without waiting.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("poll the server process")
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `ws://IP:PORT{path}`; `path` starts with `/` and may carry a query.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// `http://IP:PORT{path}`.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends SIGTERM, as a process manager does to stop the server gracefully.
    pub fn sigterm(&self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
    }

    /// Sends SIGINT, as Ctrl-C in a terminal does.
    pub fn sigint(&self) {
        self.signal(nix::sys::signal::Signal::SIGINT);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid).expect("pid fits in i32"));
        nix::sys::signal::kill(pid, signal).expect("signal the server");
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running then.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()
            .map(|status| status.expect("wait for wsclose-server"))
    }

    /// The server's resident set size in KiB (`VmRSS` in `/proc/PID/status`, read by procfs).
    /// Panics when it cannot be read; see [`ServerProcess::try_rss_kib`].
    pub fn rss_kib(&self) -> u64 {
        self.try_rss_kib().expect("read VmRSS in /proc/PID/status")
    }

    /// Like [`ServerProcess::rss_kib`], but returns the error.
    pub fn try_rss_kib(&self) -> anyhow::Result<u64> {
        let status = procfs::process::Process::new(self.pid as i32)
            .and_then(|process| process.status())
            .context("read /proc/PID/status")?;
        status.vmrss.context("no VmRSS in /proc/PID/status")
    }

    /// CPU time used so far by the threads the process has now: the sum of each thread's time
    /// on a CPU in `/proc/PID/task/TID/schedstat`, in nanoseconds. (`utime + stime` in
    /// `/proc/PID/stat` count in ticks of 10 ms: over a 5 s window and 1,000 connections, a
    /// step of 2 µs per connection-second.) A thread that exits takes its time with it; the
    /// servers measured keep their threads.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        let tasks = procfs::process::Process::new(self.pid as i32)
            .and_then(|process| process.tasks())
            .context("list /proc/PID/task")?;
        // A thread that exits while they are read is skipped.
        let nanos: u64 = tasks
            .flatten()
            .filter_map(|task| task.schedstat().ok())
            .map(|schedstat| schedstat.sum_exec_runtime)
            .sum();
        Ok(Duration::from_nanos(nanos))
    }

    /// Every line the server printed to stdout so far (the listening line first).
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().expect("lock").clone()
    }

    /// Everything the server logged to stderr so far.
    pub fn stderr_text(&self) -> String {
        joined(&self.stderr)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // `kill_on_drop` sends SIGKILL once `child` drops; kill now so it happens even if the
        // runtime is already gone, and say what the server logged when the test failed.
        let _ = self.child.start_kill();
        if std::thread::panicking() {
            eprintln!(
                "---- wsclose-server {} stderr ----\n{}",
                self.addr,
                joined(&self.stderr)
            );
        }
    }
}

/// A command for the server binary with every `WSCLOSE_*` variable removed, so a developer's
/// shell (say, `WSCLOSE_ALLOWED_ORIGINS` left over from `make serve`) cannot change what the
/// tests see: each test passes the flags it means.
fn server_command() -> Command {
    clean_command(server_binary())
}

/// A command for `program` with every `WSCLOSE_*` variable removed (see [`server_command`]).
fn clean_command(program: &Path) -> Command {
    let mut command = Command::new(program);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("WSCLOSE_") {
            command.env_remove(name);
        }
    }
    command
}

fn capture(stream: impl AsyncRead + Unpin + Send + 'static, into: Captured, echo: bool) {
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if echo {
                eprintln!("[server] {line}");
            }
            into.lock().expect("lock").push(line);
        }
    });
}

fn joined(captured: &Captured) -> String {
    captured.lock().expect("lock").join("\n")
}
