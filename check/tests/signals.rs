//! SIGINT, SIGTERM and `timeout` end a run the way its normal end does: the report so far is
//! printed, and 5 s later no process the check started is alive and nothing it made is left in
//! its temporary directory, with a real browser in each engine.
//!
//! The check runs with `TMPDIR` pointed at a fresh directory, which every process it starts
//! inherits (the driver, the browser and its helpers, xvfb-run and Xvfb; the driver's own
//! `TMPDIR` is a directory inside it); a process "the check started" is one whose `TMPDIR`
//! is that directory or inside it, or whose command line names it (found in /proc with
//! `procfs`). The browser is kept busy by a stand-in probe page whose
//! `measureClose` opens a WebSocket to the test's server and never returns, so the signal
//! always lands while the browser runs. A test whose browser is not installed says so and
//! passes.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// How long after the run ended every process it started must be gone (the bound).
const GONE_AFTER: Duration = Duration::from_secs(5);
/// The longest the browser may take to start and open its WebSocket on a busy machine.
const BROWSER_UP: Duration = Duration::from_secs(90);
/// The longest the check may take to end once signalled (the driver gets 2 s for SIGTERM).
const ENDS_WITHIN: Duration = Duration::from_secs(30);
/// The `timeout` given to the check in the `timeout` case: long enough for any browser to be
/// up; the stand-in probe keeps it busy far longer (90 s).
const TIMEOUT_AFTER: &str = "45s";
/// The flags that keep the checks short, so the run reaches the browser at once.
const QUICK: [&str; 6] = [
    "--only",
    "handshake",
    "--close-wait",
    "200ms",
    "--timeout",
    "2s",
];

/// One browser run at a time: two would share the machine's two cores with the rest.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How the run is ended.
#[derive(Debug, Clone, Copy)]
enum End {
    /// This signal, sent to the check once the browser is up.
    Signal(Signal),
    /// `timeout -s TERM 45s wsclose-check ...`.
    Timeout,
    /// No signal: the probe page answers at once and the run ends by itself.
    Finished,
}

/// Every process whose environment holds `TMPDIR=tmpdir`, or whose command line names it:
/// `(pid, command line)`.
fn started_in(tmpdir: &Path) -> Vec<(i32, String)> {
    let marker = OsString::from(tmpdir);
    let needle = tmpdir.to_string_lossy().into_owned();
    let Ok(processes) = procfs::process::all_processes() else {
        return Vec::new();
    };
    processes
        .flatten()
        .filter(|process| process.pid() != std::process::id() as i32)
        .filter_map(|process| {
            let cmdline = process.cmdline().unwrap_or_default().join(" ");
            // The check's TMPDIR, or one inside it (the driver's own).
            let in_env = process.environ().is_ok_and(|env| {
                env.get(&OsString::from("TMPDIR"))
                    .is_some_and(|dir| Path::new(dir).starts_with(&marker))
            });
            let zombie = process.stat().is_ok_and(|stat| stat.state == 'Z');
            ((in_env || cmdline.contains(&needle)) && !zombie).then(|| (process.pid(), cmdline))
        })
        .collect()
}

/// Kills every process [`started_in`] its directory when dropped: a failing test leaves
/// nothing running.
struct KillLeftovers(PathBuf);

impl Drop for KillLeftovers {
    fn drop(&mut self) {
        for (pid, _) in started_in(&self.0) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// A stand-in for the built probe page: ready at once, and a `measureClose` that opens a
/// WebSocket to the URL it is given and never returns (`busy`), or that returns a
/// measurement at once.
fn probe_page(busy: bool) -> tempfile::TempDir {
    let www = tempfile::tempdir().expect("a directory for the page");
    std::fs::create_dir(www.path().join("pkg")).unwrap();
    std::fs::write(
        www.path().join("index.html"),
        "<!doctype html><html data-ready=\"true\"><body>busy</body></html>",
    )
    .unwrap();
    std::fs::write(
        www.path().join("pkg/wsclose_client.js"),
        "export default async function init() {}\n\
         export function measureClose(url) {\n\
           window.held = new WebSocket(url);\n\
           return new Promise(() => {});\n\
         }\n",
    )
    .unwrap();
    if !busy {
        std::fs::write(
            www.path().join("pkg/wsclose_client.js"),
            "export default async function init() {}\n\
             export async function measureClose(url) {\n\
               return { elapsedMs: 1, code: 1000, wasClean: true };\n\
             }\n",
        )
        .unwrap();
    }
    www
}

/// A WebSocket server on `127.0.0.1:0` that accepts every upgrade and then holds the
/// connection without reading; it says on the channel each upgrade it answered, `true` for a
/// browser's (a `User-Agent` of `Mozilla/...`).
async fn busy_server() -> (String, mpsc::Receiver<bool>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let (came, upgrades) = mpsc::channel(64);
    let task = tokio::spawn(async move {
        let mut held = tokio::task::JoinSet::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            let came = came.clone();
            held.spawn(async move {
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
                    match stream.read_u8().await {
                        Ok(byte) => head.push(byte),
                        Err(_) => return,
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let Some(key) = head.lines().find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("sec-websocket-key")
                        .then(|| value.trim().to_owned())
                }) else {
                    return;
                };
                let response = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                    derive_accept_key(key.as_bytes())
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let browser = head.to_lowercase().contains("user-agent: mozilla");
                let _ = came.send(browser).await;
                std::future::pending::<()>().await;
            });
        }
    });
    (url, upgrades, task)
}

/// True when the programs of `browser` are installed (else the test says so and passes).
fn installed(browser: &str) -> bool {
    let needed: &[&str] = match browser {
        "chromium" => &["chromium", "chromedriver"],
        "firefox" => &["firefox-esr", "geckodriver"],
        _ => &["WebKitWebDriver", "xvfb-run"],
    };
    let home_bin = std::env::var_os("HOME")
        .map(|home| Path::new(&home).join(".cargo/bin"))
        .unwrap_or_default();
    needed
        .iter()
        .all(|program| which::which(program).is_ok() || home_bin.join(program).is_file())
}

/// Runs the check with `--browser browser` against a busy server, ends it by `end` once the
/// browser is up, and asserts it ended as its normal end does.
async fn ends_cleanly(browser: &str, end: End) {
    if !installed(browser) {
        eprintln!("SKIPPED: {browser} or its WebDriver is not installed (make setup)");
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let tmp = tempfile::tempdir().expect("the check's TMPDIR");
    let _leftovers = KillLeftovers(tmp.path().to_path_buf());
    let www = probe_page(!matches!(end, End::Finished));
    let (url, mut upgrades, server) = busy_server().await;
    let browser_came = async {
        while let Some(browser) = upgrades.recv().await {
            if browser {
                return true;
            }
        }
        false
    };
    let check = env!("CARGO_BIN_EXE_wsclose-check");
    let mut command = match end {
        End::Signal(_) | End::Finished => Command::new(check),
        End::Timeout => {
            let mut command = Command::new("timeout");
            command.args(["-s", "TERM", TIMEOUT_AFTER, check]);
            command
        }
    };
    let mut child = command
        .arg(&url)
        .args(["--browser", browser, "--www"])
        .arg(www.path())
        .args(QUICK)
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run wsclose-check");
    let up = matches!(end, End::Finished)
        || tokio::select! {
            up = tokio::time::timeout(BROWSER_UP, browser_came) => matches!(up, Ok(true)),
            _ = child.wait() => false, // it ended on its own: the failure says how
        };
    if !up {
        let _ = child.start_kill();
        let output = output(child).await;
        panic!("{browser} never opened its WebSocket: {output}");
    }
    // The browser is up: the processes found are the driver, the browser and its helpers.
    let running = started_in(tmp.path());
    assert!(
        matches!(end, End::Finished) || running.len() >= 2,
        "{browser}: the check's processes are not found: {running:#?}"
    );
    let pid = Pid::from_raw(child.id().expect("running") as i32);
    if let End::Signal(signal) = end {
        kill(pid, signal).expect("signal the check");
    }
    let status = tokio::time::timeout(ENDS_WITHIN + Duration::from_secs(45), child.wait())
        .await
        .unwrap_or_else(|_| panic!("{browser}: the check did not end after {end:?}"))
        .expect("its status");
    let output = output(child).await;
    server.abort();
    let expected = match end {
        End::Signal(signal) => 128 + signal as i32,
        End::Timeout => 124, // timeout's own status once it had to end the command
        End::Finished => 1,  // close-answered fails: the server never answers a Close
    };
    assert_eq!(status.code(), Some(expected), "{browser} {end:?}: {output}");
    if let End::Finished = end {
        assert!(output.contains("measured in headless browsers"), "{output}");
    }
    if let End::Signal(signal) = end {
        // The report so far: the checks, and the browser cut off.
        assert!(output.contains("handshake"), "{output}");
        assert!(
            output.contains(&format!("cut off: interrupted by {}", signal.as_str())),
            "{output}"
        );
    }
    tokio::time::sleep(GONE_AFTER).await;
    let alive = started_in(tmp.path());
    assert!(
        alive.is_empty(),
        "{browser} {end:?}: still alive {GONE_AFTER:?} after the run: {alive:#?}"
    );
    let left: Vec<PathBuf> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert!(left.is_empty(), "{browser} {end:?}: left behind: {left:?}");
}

/// The child's stdout and stderr, and its status, as text for a failure message.
async fn output(mut child: Child) -> String {
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout).await;
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr).await;
    }
    let status: Option<ExitStatus> = child.try_wait().ok().flatten();
    format!("status {status:?}\nstdout:\n{stdout}\nstderr:\n{stderr}")
}

#[tokio::test]
async fn chromium_finished() {
    ends_cleanly("chromium", End::Finished).await;
}

#[tokio::test]
async fn firefox_finished() {
    ends_cleanly("firefox", End::Finished).await;
}

/// After a successful WebKit run there is no `xvfb-run.*` directory, in `$TMPDIR` or anywhere.
#[tokio::test]
async fn webkit_finished() {
    ends_cleanly("webkit", End::Finished).await;
}

#[tokio::test]
async fn chromium_sigint() {
    ends_cleanly("chromium", End::Signal(Signal::SIGINT)).await;
}

#[tokio::test]
async fn chromium_sigterm() {
    ends_cleanly("chromium", End::Signal(Signal::SIGTERM)).await;
}

#[tokio::test]
async fn chromium_timeout() {
    ends_cleanly("chromium", End::Timeout).await;
}

#[tokio::test]
async fn firefox_sigint() {
    ends_cleanly("firefox", End::Signal(Signal::SIGINT)).await;
}

#[tokio::test]
async fn firefox_sigterm() {
    ends_cleanly("firefox", End::Signal(Signal::SIGTERM)).await;
}

#[tokio::test]
async fn firefox_timeout() {
    ends_cleanly("firefox", End::Timeout).await;
}

#[tokio::test]
async fn webkit_sigint() {
    ends_cleanly("webkit", End::Signal(Signal::SIGINT)).await;
}

#[tokio::test]
async fn webkit_sigterm() {
    ends_cleanly("webkit", End::Signal(Signal::SIGTERM)).await;
}

#[tokio::test]
async fn webkit_timeout() {
    ends_cleanly("webkit", End::Timeout).await;
}

/// SIGHUP (the terminal went away) in the middle of the checks, without a browser: the run
/// ends at once with the report so far and exit status 129.
#[tokio::test]
async fn sighup_during_the_checks_prints_the_report_so_far() {
    let (url, mut upgrades, server) = busy_server().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsclose-check"))
        .arg(&url)
        .args(["--close-wait", "60s", "--timeout", "2s"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run wsclose-check");
    // The handshake's upgrade, then close-answered's, which waits 60 s for a Close.
    for _ in 0..2 {
        let upgrade = tokio::time::timeout(ENDS_WITHIN, upgrades.recv()).await;
        assert!(matches!(upgrade, Ok(Some(false))), "{upgrade:?}");
    }
    let pid = Pid::from_raw(child.id().expect("running") as i32);
    kill(pid, Signal::SIGHUP).expect("signal the check");
    let status = tokio::time::timeout(ENDS_WITHIN, child.wait())
        .await
        .expect("the check ended on SIGHUP")
        .expect("its status");
    let output = output(child).await;
    server.abort();
    assert_eq!(status.code(), Some(129), "{output}");
    assert!(output.contains("handshake"), "{output}");
    assert!(
        output.contains("cut off: interrupted by SIGHUP"),
        "{output}"
    );
    assert!(
        output.contains("stopped early (interrupted by SIGHUP): what did not run is skip"),
        "{output}"
    );
}
