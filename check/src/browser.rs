//! `--browser`: confirms the prediction in real headless Chromium, Firefox and WebKit.
//!
//! The check serves the built demo page (`target/www`, made by `make build`) on `--page-addr`,
//! starts the browser through its WebDriver (ChromeDriver, geckodriver, or `WebKitWebDriver`
//! under `xvfb-run`, since WebKitGTK's MiniBrowser has no headless mode), opens the page, and
//! runs the wasm probe's `measureClose(url)` in it: open, `close(1000)`, and the time to the
//! `close` event. [`Driver`] is also what the e2e page tests and the bench use.
//!
//! Every program is looked up on `PATH` first, then at the path Debian's package installs it
//! to; a missing one is an error that names the package to install.

use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use fantoccini::wd::TimeoutConfiguration;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::predict::BrowserOutcome;
use crate::CloseCode;

/// ChromeDriver where Debian's `chromium-driver` installs it (when it is not on `PATH`).
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Chromium where Debian's `chromium` installs it (when it is not on `PATH`).
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Firefox ESR where Debian's `firefox-esr` installs it (when it is not on `PATH`).
pub const FIREFOX: &str = "/usr/bin/firefox-esr";
/// WebKitGTK's WebDriver where Debian's `webkit2gtk-driver` installs it.
pub const WEBKITDRIVER: &str = "/usr/bin/WebKitWebDriver";
/// The browser `WebKitWebDriver` drives: WebKitGTK's MiniBrowser, with `--automation`. It is
/// never on `PATH`; this is where Debian's `libwebkit2gtk-4.1-0` puts it on x86_64.
pub const MINIBROWSER: &str = "/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser";
/// Runs a program on a fresh virtual X display (Debian's `xvfb`), for MiniBrowser.
pub const XVFB_RUN: &str = "/usr/bin/xvfb-run";
/// How long a WebDriver server may take to answer `/status`, and the page to load.
pub const STARTUP: Duration = Duration::from_secs(20);
/// The first pause between two looks at a starting WebDriver server's `/status`; each pause
/// doubles, up to [`STATUS_POLL_MAX`].
pub const STATUS_POLL_MIN: Duration = Duration::from_millis(20);
/// The longest pause between two looks at a starting WebDriver server's `/status`.
pub const STATUS_POLL_MAX: Duration = Duration::from_millis(500);
/// How long one `/status` request may take.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// The most of a `/status` answer that is read: its status line is all that counts.
pub const STATUS_MAX_BYTES: usize = 4096;
/// The browser's profile, inside a driver's temporary directory.
const PROFILE_DIR: &str = "profile";
/// The `TMPDIR` of a driver and all it starts, inside its temporary directory.
const TMP_DIR: &str = "tmp";
/// How long a driver gets to exit on SIGTERM before its process group is killed.
pub const DRIVER_EXIT: Duration = Duration::from_secs(2);
/// The longest a probe may wait for `close`: past Chromium's 60 s closing-handshake timeout.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(90);
/// How much longer than [`PROBE_TIMEOUT`] WebDriver lets the probe's script run, so the
/// probe's own timeout always ends it first.
pub const SCRIPT_SLACK: Duration = Duration::from_secs(10);
/// How often the progress line on a terminal is redrawn.
pub const PROGRESS_TICK: Duration = Duration::from_secs(1);

/// A browser engine the check can drive, and its key in the JSON (`chromium`, `firefox`,
/// `webkit`). Adding one is a variant here; the compiler then points at every `match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Browser {
    /// Headless Chromium through ChromeDriver.
    Chromium,
    /// Headless Firefox ESR through geckodriver.
    Firefox,
    /// WebKitGTK's MiniBrowser through WebKitWebDriver, on a virtual display (Xvfb).
    #[value(name = "webkit")]
    WebKit,
}

impl Browser {
    /// Every engine, in the order they run.
    pub fn all() -> &'static [Browser] {
        <Browser as clap::ValueEnum>::value_variants()
    }

    /// `chromium`, `firefox` or `webkit`: the key in the JSON and the value of `--browser`.
    pub fn name(self) -> &'static str {
        match self {
            Browser::Chromium => "chromium",
            Browser::Firefox => "firefox",
            Browser::WebKit => "webkit",
        }
    }

    /// `Chromium`, `Firefox` or `WebKit`, as people write them.
    pub fn label(self) -> &'static str {
        match self {
            Browser::Chromium => "Chromium",
            Browser::Firefox => "Firefox",
            Browser::WebKit => "WebKit",
        }
    }
}

impl fmt::Display for Browser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `--browser`: one engine, or a set of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrowserChoice {
    /// One engine.
    One(Browser),
    /// `both`: Chromium, then Firefox.
    Both,
    /// `all`: every engine, in [`Browser::all`]'s order.
    All,
}

impl BrowserChoice {
    /// The browsers, in the order they run.
    pub fn browsers(self) -> Vec<Browser> {
        match self {
            BrowserChoice::One(browser) => vec![browser],
            BrowserChoice::Both => vec![Browser::Chromium, Browser::Firefox],
            BrowserChoice::All => Browser::all().to_vec(),
        }
    }
}

impl clap::ValueEnum for BrowserChoice {
    fn value_variants<'a>() -> &'a [Self] {
        static VARIANTS: std::sync::OnceLock<Vec<BrowserChoice>> = std::sync::OnceLock::new();
        VARIANTS.get_or_init(|| {
            Browser::all()
                .iter()
                .map(|browser| BrowserChoice::One(*browser))
                .chain([BrowserChoice::Both, BrowserChoice::All])
                .collect()
        })
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(match self {
            BrowserChoice::One(browser) => browser.to_possible_value()?,
            BrowserChoice::Both => {
                clap::builder::PossibleValue::new("both").help("Chromium, then Firefox")
            }
            BrowserChoice::All => {
                clap::builder::PossibleValue::new("all").help("Chromium, Firefox, then WebKit")
            }
        })
    }
}

/// Why `--browser` could not measure.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    /// A program `--browser` needs is neither on `PATH` nor where Debian installs it.
    #[error("{program} is not installed (not on PATH, not at {fallback}): install {package}")]
    Missing {
        /// The program's name.
        program: &'static str,
        /// Where Debian's package puts it.
        fallback: &'static str,
        /// What to install: the Debian package, or the make target.
        package: &'static str,
    },
    /// No free port for the WebDriver server, or no address for the page.
    #[error("no free port for the WebDriver server: {0}")]
    Port(#[source] std::io::Error),
    /// The temporary profile directory could not be made.
    #[error("cannot make a temporary profile directory: {0}")]
    Profile(#[source] std::io::Error),
    /// The WebDriver server could not be started.
    #[error("cannot start {}: {source}", program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The WebDriver server exited before its `/status` answered.
    #[error("{} exited before it was ready ({status})", program.display())]
    Exited {
        /// The program.
        program: PathBuf,
        /// How it exited.
        status: ExitStatus,
    },
    /// The WebDriver server's `/status` did not answer 200 within [`STARTUP`].
    #[error("{} did not answer on port {port} within {}", program.display(), humantime::format_duration(STARTUP))]
    NotReady {
        /// The program.
        program: PathBuf,
        /// Its port.
        port: u16,
    },
    /// The WebDriver server refused a session.
    #[error("no {browser} session: {source}")]
    Session {
        /// For which browser.
        browser: Browser,
        /// fantoccini's reason.
        source: fantoccini::error::NewSessionError,
    },
    /// A WebDriver command failed.
    #[error("{what}: {source}")]
    Command {
        /// What the command was for.
        what: String,
        /// fantoccini's reason.
        source: fantoccini::error::CmdError,
    },
    /// The probe page is not built.
    #[error("no built probe in {} (run `make build`, or pass --www)", .0.display())]
    NoPage(PathBuf),
    /// The probe page could not be served.
    #[error("cannot serve the page on {addr}: {source}")]
    Serve {
        /// `--page-addr`.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The probe answered something that is neither a measurement nor an error.
    #[error("the probe answered {answer}: {source}")]
    Probe {
        /// The answer, as JSON.
        answer: String,
        /// What is wrong with it.
        source: serde_json::Error,
    },
}

/// What one browser showed: the outcome, or why it could not be measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Measured {
    /// `close` fired.
    Outcome(BrowserOutcome),
    /// The probe failed (for example: the server refused the page's Origin), or the run
    /// stopped before it (`--max-time`, a signal).
    Failed {
        /// The probe's error.
        error: String,
    },
}

/// The probe's answer, as the page's script hands it back (see [`measure`]).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ProbeAnswer {
    /// `close` fired.
    Closed {
        /// `performance.now()` from `close()` to the `close` event.
        close_after_ms: f64,
        /// `CloseEvent.code`.
        code: u16,
        /// `CloseEvent.wasClean`.
        was_clean: bool,
    },
    /// The probe threw.
    Failed {
        /// Its message.
        error: String,
    },
}

impl From<ProbeAnswer> for Measured {
    fn from(answer: ProbeAnswer) -> Measured {
        match answer {
            ProbeAnswer::Closed {
                close_after_ms,
                code,
                was_clean,
            } => Measured::Outcome(BrowserOutcome {
                close_after_ms,
                code: CloseCode::from(code),
                was_clean,
            }),
            ProbeAnswer::Failed { error } => Measured::Failed { error },
        }
    }
}

/// A program the check runs: its name on `PATH`, where Debian installs it, and what to
/// install when it is in neither place.
struct Program {
    name: &'static str,
    fallback: &'static str,
    package: &'static str,
}

impl Program {
    /// The program on `PATH`, else at its Debian path, else [`BrowserError::Missing`].
    fn find(&self) -> Result<PathBuf, BrowserError> {
        which::which(self.name)
            .ok()
            .or_else(|| Some(PathBuf::from(self.fallback)).filter(|path| path.is_file()))
            .ok_or(BrowserError::Missing {
                program: self.name,
                fallback: self.fallback,
                package: self.package,
            })
    }
}

/// Where geckodriver is: on `PATH`, else `~/.cargo/bin/geckodriver` (`make setup`).
pub fn geckodriver() -> Result<PathBuf, BrowserError> {
    let missing = BrowserError::Missing {
        program: "geckodriver",
        fallback: "~/.cargo/bin/geckodriver",
        package: "it with `make setup` (cargo install geckodriver)",
    };
    which::which("geckodriver")
        .ok()
        .or_else(|| {
            let home = std::env::var_os("HOME")?;
            Some(Path::new(&home).join(".cargo/bin/geckodriver")).filter(|path| path.is_file())
        })
        .ok_or(missing)
}

/// The programs a session in `browser` needs: the WebDriver server to run, and the browser
/// binary it is told to drive.
fn programs(browser: Browser) -> Result<(PathBuf, PathBuf), BrowserError> {
    Ok(match browser {
        Browser::Chromium => (
            Program {
                name: "chromedriver",
                fallback: CHROMEDRIVER,
                package: "chromium-driver",
            }
            .find()?,
            Program {
                name: "chromium",
                fallback: CHROMIUM,
                package: "chromium",
            }
            .find()?,
        ),
        Browser::Firefox => (
            geckodriver()?,
            Program {
                name: "firefox-esr",
                fallback: FIREFOX,
                package: "firefox-esr",
            }
            .find()?,
        ),
        // MiniBrowser needs an X display: xvfb-run starts one and runs the driver on it.
        Browser::WebKit => {
            Program {
                name: "WebKitWebDriver",
                fallback: WEBKITDRIVER,
                package: "webkit2gtk-driver",
            }
            .find()?;
            let minibrowser = Path::new(MINIBROWSER);
            if !minibrowser.is_file() {
                return Err(BrowserError::Missing {
                    program: "MiniBrowser",
                    fallback: MINIBROWSER,
                    package: "libwebkit2gtk-4.1-0",
                });
            }
            (
                Program {
                    name: "xvfb-run",
                    fallback: XVFB_RUN,
                    package: "xvfb and xauth",
                }
                .find()?,
                minibrowser.to_path_buf(),
            )
        }
    })
}

/// True when this process runs as root, where Chromium refuses to start with its sandbox.
pub fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Chromium's command line: headless, the profile in `profile`, and its sandbox on unless
/// `as_root` (Chromium will not run as root with it).
pub fn chromium_args(profile: &Path, as_root: bool) -> Vec<String> {
    let mut args: Vec<String> = [
        "--headless=new",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-quic",
        "--hide-scrollbars",
        "--window-size=1280,1200",
    ]
    .map(str::to_owned)
    .to_vec();
    if as_root {
        args.push("--no-sandbox".to_owned());
    }
    args.push(format!("--user-data-dir={}", profile.display()));
    args
}

/// A WebDriver server (ChromeDriver, geckodriver, or WebKitWebDriver under `xvfb-run`) in its
/// own process group, with a fresh temporary directory: the browser's profile (`profile/`),
/// the `TMPDIR` of the driver and everything it starts (`tmp/`: Chromium's and ChromeDriver's
/// own temporary directories land there), and for WebKit xvfb-run's X authority file.
/// Dropping it ends the group (the driver, its browser, and for WebKit xvfb-run and its X
/// server) and removes the directory, so nothing outlives it.
pub struct Driver {
    browser: Browser,
    /// The browser binary the session is told to run.
    binary: PathBuf,
    child: Child,
    port: u16,
    /// `profile/`, `tmp/`, and for WebKit xvfb-run's X authority file (`-f`), so xvfb-run
    /// makes no `/tmp/xvfb-run.*` directory of its own.
    dir: tempfile::TempDir,
}

impl Driver {
    /// Starts the WebDriver server for `browser` on a free port and waits until its `/status`
    /// answers 200.
    pub async fn start(browser: Browser) -> Result<Driver, BrowserError> {
        let (program, binary) = programs(browser)?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(BrowserError::Port)?
            .port();
        let dir = tempfile::Builder::new()
            .prefix(&format!("wsclose-{browser}-"))
            .tempdir()
            .map_err(BrowserError::Profile)?;
        for sub in [PROFILE_DIR, TMP_DIR] {
            std::fs::create_dir(dir.path().join(sub)).map_err(BrowserError::Profile)?;
        }
        let mut command = Command::new(&program);
        command.env("TMPDIR", dir.path().join(TMP_DIR));
        if browser == Browser::WebKit {
            let driver = Program {
                name: "WebKitWebDriver",
                fallback: WEBKITDRIVER,
                package: "webkit2gtk-driver",
            }
            .find()?;
            command
                .arg("-a")
                .arg("-f")
                .arg(dir.path().join("Xauthority"))
                .arg(driver);
        }
        let child = command
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|source| BrowserError::Spawn {
                program: program.clone(),
                source,
            })?;
        let mut driver = Driver {
            browser,
            binary,
            child,
            port,
            dir,
        };
        // Retry while the driver still runs: it is starting. Once it exited, it never answers.
        let child = &mut driver.child;
        let ready = (|| status_ok(port))
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(STATUS_POLL_MIN)
                    .with_max_delay(STATUS_POLL_MAX)
                    .without_max_times()
                    .with_total_delay(Some(STARTUP)),
            )
            .sleep(tokio::time::sleep)
            .when(|_| matches!(child.try_wait(), Ok(None)))
            .await;
        if ready.is_err() {
            return Err(match driver.child.try_wait() {
                Ok(Some(status)) => BrowserError::Exited { program, status },
                _ => BrowserError::NotReady { program, port },
            });
        }
        Ok(driver)
    }

    /// The browser's profile directory, inside the driver's temporary directory.
    pub fn profile(&self) -> PathBuf {
        self.dir.path().join(PROFILE_DIR)
    }

    /// A new headless session.
    pub async fn connect(&self) -> Result<Client, BrowserError> {
        let capabilities = match self.browser {
            Browser::Chromium => json!({
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": self.binary,
                    "args": chromium_args(&self.profile(), running_as_root()),
                },
            }),
            Browser::Firefox => json!({
                "browserName": "firefox",
                "moz:firefoxOptions": {
                    "binary": self.binary,
                    "args": ["-headless", "-profile", self.profile()],
                },
            }),
            // Without `--automation` MiniBrowser never answers the session request.
            Browser::WebKit => json!({
                "webkitgtk:browserOptions": {
                    "binary": self.binary,
                    "args": ["--automation"],
                },
            }),
        };
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object literal")
        };
        // The WebDriver server listens on 127.0.0.1 over plain HTTP: no TLS stack needed.
        ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .map_err(|source| BrowserError::Session {
                browser: self.browser,
                source,
            })
    }
}

/// `Ok` when `GET /status` on `127.0.0.1:port` answers 200 within [`STATUS_TIMEOUT`]; reads
/// at most [`STATUS_MAX_BYTES`].
async fn status_ok(port: u16) -> Result<(), std::io::Error> {
    let not_yet = || std::io::Error::other("not ready");
    let ask = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        // The Host with its port: ChromeDriver answers nothing to a Host it does not allow.
        let request =
            format!("GET /status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        // The status line is enough: read until its end, at most STATUS_MAX_BYTES.
        let mut head = Vec::new();
        let mut chunk = [0u8; 512];
        while !head.windows(2).any(|pair| pair == b"\r\n") && head.len() < STATUS_MAX_BYTES {
            match stream.read(&mut chunk).await? {
                0 => break,
                read => head.extend_from_slice(&chunk[..read]),
            }
        }
        let status = head.split(|byte| *byte == b' ').nth(1).unwrap_or_default();
        if status == b"200" {
            Ok(())
        } else {
            Err(not_yet())
        }
    };
    tokio::time::timeout(STATUS_TIMEOUT, ask)
        .await
        .unwrap_or_else(|_| Err(not_yet()))
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group holds the driver and the browser it launched (and xvfb-run with its X
        // server), nothing else. SIGTERM first, so each can end cleanly (Xvfb removes its lock
        // files); once the driver exited, or after DRIVER_EXIT, SIGKILL whatever is left.
        let Ok(pid) = i32::try_from(self.child.id()) else {
            return;
        };
        let group = Pid::from_raw(pid);
        let _ = killpg(group, Signal::SIGTERM);
        // Wait for the driver on a thread of its own, so the wait has a deadline.
        let (exited, exit) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let _ = nix::sys::wait::waitpid(group, None);
            let _ = exited.send(());
        });
        let _ = exit.recv_timeout(DRIVER_EXIT);
        let _ = killpg(group, Signal::SIGKILL);
        let _ = waiter.join();
        // The temporary directory is removed when `dir` drops, after this.
    }
}

/// Where `make build` puts the demo page and the wasm probe.
pub fn default_www() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/www"))
}

/// Serves `www` on `addr` until the returned task is aborted; returns the page's address.
pub async fn serve_page(
    www: &Path,
    addr: SocketAddr,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), BrowserError> {
    if !www.join("pkg/wsclose_client.js").is_file() {
        return Err(BrowserError::NoPage(www.to_path_buf()));
    }
    let serve = |source| BrowserError::Serve { addr, source };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(serve)?;
    let addr = listener.local_addr().map_err(serve)?;
    let files = warp::fs::dir(www.to_path_buf());
    let task = tokio::spawn(warp::serve(files).incoming(listener).run());
    Ok((addr, task))
}

/// Opens the page at `page` in `browser` and measures `close()` on `url` with the wasm probe.
/// Dropping the future before it ends drops the driver too, which ends the browser.
pub async fn measure(browser: Browser, page: &str, url: &str) -> Result<Measured, BrowserError> {
    let driver = Driver::start(browser).await?;
    let client = driver.connect().await?;
    let result = measure_in(&client, page, url).await;
    let _ = client.close().await;
    drop(driver);
    result
}

async fn measure_in(client: &Client, page: &str, url: &str) -> Result<Measured, BrowserError> {
    let command = |what: &str| {
        let what = what.to_owned();
        move |source| BrowserError::Command { what, source }
    };
    client
        .update_timeouts(TimeoutConfiguration::new(
            Some(PROBE_TIMEOUT + SCRIPT_SLACK),
            Some(STARTUP),
            None,
        ))
        .await
        .map_err(command("set the WebDriver timeouts"))?;
    client
        .goto(page)
        .await
        .map_err(command(&format!("open {page}")))?;
    client
        .wait()
        .at_most(STARTUP)
        .for_element(Locator::Css("html[data-ready='true']"))
        .await
        .map_err(command("the probe page did not load"))?;
    let script = r#"
        const [url, timeoutMs, done] = arguments;
        (async () => {
          const probe = await import('/pkg/wsclose_client.js');
          await probe.default();
          try {
            const r = await probe.measureClose(url, { code: 1000, reason: 'wsclose-check', closeTimeoutMs: timeoutMs });
            done({ close_after_ms: r.elapsedMs, code: r.code, was_clean: r.wasClean });
          } catch (e) {
            done({ error: String((e && e.message) || e) });
          }
        })();
    "#;
    let value = client
        .execute_async(
            script,
            vec![json!(url), json!(PROBE_TIMEOUT.as_millis() as u64)],
        )
        .await
        .map_err(command("run the probe"))?;
    let answer: ProbeAnswer =
        serde_json::from_value(value.clone()).map_err(|source| BrowserError::Probe {
            answer: value.to_string(),
            source,
        })?;
    Ok(answer.into())
}

/// Shows a live progress line on stderr while `work` runs (`LABEL: waiting for the close
/// event… 12s`), then clears it, also when the future is dropped before `work` ends (a stop).
/// The line is drawn only when stderr is a terminal.
pub async fn with_progress<T>(label: &str, work: impl std::future::Future<Output = T>) -> T {
    let line = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        .with_finish(ProgressFinish::AndClear);
    line.set_style(
        ProgressStyle::with_template("{msg}: waiting for the close event… {elapsed}")
            .expect("a valid template"),
    );
    line.set_message(label.to_owned());
    line.enable_steady_tick(PROGRESS_TICK);
    work.await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_answer_is_read_whole_or_not_at_all() {
        let closed: ProbeAnswer =
            serde_json::from_value(json!({"close_after_ms": 1.5, "code": 1000, "was_clean": true}))
                .unwrap();
        assert_eq!(
            Measured::from(closed),
            Measured::Outcome(BrowserOutcome {
                close_after_ms: 1.5,
                code: CloseCode::Normal,
                was_clean: true
            })
        );
        let failed: ProbeAnswer = serde_json::from_value(json!({"error": "refused"})).unwrap();
        assert_eq!(
            Measured::from(failed),
            Measured::Failed {
                error: "refused".into()
            }
        );
        // A field missing or of the wrong type is an error, never a NaN or a 0.
        for bad in [
            json!({"close_after_ms": 1.5, "code": 1000}),
            json!({"close_after_ms": "1.5", "code": 1000, "was_clean": true}),
            json!({"close_after_ms": 1.5, "code": 70000, "was_clean": true}),
        ] {
            assert!(serde_json::from_value::<ProbeAnswer>(bad).is_err());
        }
    }

    #[test]
    fn the_browser_choices_are_the_engines_plus_both_and_all() {
        use clap::ValueEnum;
        let names: Vec<String> = BrowserChoice::value_variants()
            .iter()
            .map(|choice| choice.to_possible_value().unwrap().get_name().to_owned())
            .collect();
        assert_eq!(names, ["chromium", "firefox", "webkit", "both", "all"]);
        assert_eq!(
            BrowserChoice::from_str("webkit", false).unwrap(),
            BrowserChoice::One(Browser::WebKit)
        );
        assert_eq!(BrowserChoice::All.browsers(), Browser::all());
        for browser in Browser::all() {
            assert_eq!(serde_json::to_value(browser).unwrap(), browser.name());
        }
    }

    #[test]
    fn chromium_keeps_its_sandbox_unless_root() {
        let profile = Path::new("/tmp/p");
        assert!(!chromium_args(profile, false).contains(&"--no-sandbox".to_owned()));
        assert!(chromium_args(profile, true).contains(&"--no-sandbox".to_owned()));
    }
}
