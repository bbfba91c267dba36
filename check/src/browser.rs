//! `--browser`: confirms the prediction in real headless Chromium, Firefox and WebKit.
//!
//! The check serves the built demo page (`target/www`, made by `make build`) on `--page-addr`,
//! starts the browser through its WebDriver (`/usr/bin/chromedriver`, `geckodriver`, or
//! `WebKitWebDriver` under `xvfb-run`, since WebKitGTK's MiniBrowser has no headless mode), opens
//! the page, and runs the wasm probe's `measureClose(url)` in it: open, `close(1000)`, and the
//! time to the `close` event. [`Driver`] is also what the e2e page tests use.

use std::io::IsTerminal;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::TimeoutConfiguration;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde::Serialize;
use serde_json::json;

use crate::predict::BrowserOutcome;
use crate::CloseCode;

/// ChromeDriver, as Debian's `chromium-driver` installs it.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Chromium, as Debian's `chromium` installs it.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Firefox ESR, as Debian's `firefox-esr` installs it.
pub const FIREFOX: &str = "/usr/bin/firefox-esr";
/// WebKitGTK's WebDriver, as Debian's `webkit2gtk-driver` installs it.
pub const WEBKITDRIVER: &str = "/usr/bin/WebKitWebDriver";
/// The browser `WebKitWebDriver` drives: WebKitGTK's MiniBrowser, with `--automation`.
pub const MINIBROWSER: &str = "/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser";
/// Runs a program on a fresh virtual X display (Debian's `xvfb`), for MiniBrowser.
pub const XVFB_RUN: &str = "/usr/bin/xvfb-run";
/// How long a WebDriver server may take to listen, and the page to load.
pub const STARTUP: Duration = Duration::from_secs(20);
/// How long a driver's process group gets to exit on SIGTERM before it is killed.
pub const DRIVER_EXIT: Duration = Duration::from_secs(2);
/// The longest a probe may wait for `close`: past Chromium's 60 s closing-handshake timeout.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(90);

/// A browser the check can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Browser {
    /// Headless Chromium through ChromeDriver.
    Chromium,
    /// Headless Firefox ESR through geckodriver.
    Firefox,
    /// WebKitGTK's MiniBrowser through WebKitWebDriver, on a virtual display (Xvfb).
    Webkit,
}

impl Browser {
    /// `chromium`, `firefox` or `webkit`, as in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Browser::Chromium => "chromium",
            Browser::Firefox => "firefox",
            Browser::Webkit => "webkit",
        }
    }
}

/// `--browser`: which browsers confirm the prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BrowserChoice {
    /// Chromium only.
    Chromium,
    /// Firefox only.
    Firefox,
    /// WebKit only.
    Webkit,
    /// Chromium, then Firefox.
    Both,
    /// Chromium, Firefox, then WebKit.
    All,
}

impl BrowserChoice {
    /// The browsers, in the order they run.
    pub fn browsers(self) -> Vec<Browser> {
        match self {
            BrowserChoice::Chromium => vec![Browser::Chromium],
            BrowserChoice::Firefox => vec![Browser::Firefox],
            BrowserChoice::Webkit => vec![Browser::Webkit],
            BrowserChoice::Both => vec![Browser::Chromium, Browser::Firefox],
            BrowserChoice::All => vec![Browser::Chromium, Browser::Firefox, Browser::Webkit],
        }
    }
}

/// What one browser showed: the outcome, or why it could not be measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Measured {
    /// `close` fired.
    Outcome(BrowserOutcome),
    /// The probe failed (for example: the server refused the page's Origin).
    Failed {
        /// The probe's error.
        error: String,
    },
}

/// Where geckodriver is: `~/.cargo/bin/geckodriver` (`make setup`), else on `PATH`.
pub fn geckodriver() -> PathBuf {
    let installed = std::env::var_os("HOME")
        .map(|home| Path::new(&home).join(".cargo/bin/geckodriver"))
        .filter(|path| path.is_file());
    installed.unwrap_or_else(|| PathBuf::from("geckodriver"))
}

/// A WebDriver server (ChromeDriver, geckodriver, or WebKitWebDriver under `xvfb-run`) in its
/// own process group, with a fresh profile directory. Dropping it ends the group (the driver,
/// its browser, and for WebKit the X server) and removes the profile, so no browser outlives
/// it.
pub struct Driver {
    browser: Browser,
    child: Child,
    port: u16,
    profile: PathBuf,
}

impl Driver {
    /// Starts the WebDriver server for `browser` on a free port and waits until it listens.
    pub fn start(browser: Browser) -> Result<Driver, String> {
        let (program, binary) = match browser {
            Browser::Chromium => (PathBuf::from(CHROMEDRIVER), CHROMIUM),
            Browser::Firefox => (geckodriver(), FIREFOX),
            // MiniBrowser needs an X display: xvfb-run starts one and runs the driver on it.
            Browser::Webkit => (PathBuf::from(XVFB_RUN), MINIBROWSER),
        };
        for needed in [binary]
            .into_iter()
            .chain((browser == Browser::Webkit).then_some(WEBKITDRIVER))
        {
            if !Path::new(needed).is_file() {
                return Err(format!("{needed} is missing: run `make setup`"));
            }
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|error| format!("no free port: {error}"))?
            .port();
        let profile = std::env::temp_dir().join(format!(
            "wsclose-{}-{}-{port}",
            browser.name(),
            std::process::id()
        ));
        std::fs::create_dir_all(&profile).map_err(|error| error.to_string())?;
        let mut command = Command::new(&program);
        if browser == Browser::Webkit {
            command.args(["-a", WEBKITDRIVER]);
        }
        let child = command
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|error| {
                format!(
                    "cannot start {}: {error} (run `make setup`)",
                    program.display()
                )
            })?;
        let driver = Driver {
            browser,
            child,
            port,
            profile,
        };
        let deadline = Instant::now() + STARTUP;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not listen on port {port}",
                    program.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(driver)
    }

    /// A new headless session.
    pub async fn connect(&self) -> Result<Client, String> {
        let capabilities = match self.browser {
            Browser::Chromium => json!({
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": CHROMIUM,
                    "args": [
                        "--headless=new",
                        "--no-sandbox",
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
                        format!("--user-data-dir={}", self.profile.display()),
                    ],
                },
            }),
            Browser::Firefox => json!({
                "browserName": "firefox",
                "moz:firefoxOptions": {
                    "binary": FIREFOX,
                    "args": ["-headless", "-profile", self.profile.display().to_string()],
                },
            }),
            // Without `--automation` MiniBrowser never answers the session request.
            Browser::Webkit => json!({
                "webkitgtk:browserOptions": {
                    "binary": MINIBROWSER,
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
            .map_err(|error| format!("no {} session: {error}", self.browser.name()))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group holds the driver and the browser it launched (and xvfb-run with its X
        // server), nothing else. SIGTERM first, so xvfb-run removes its temporary files; then
        // SIGKILL for whatever is left.
        if let Ok(group) = i32::try_from(self.child.id()) {
            let group = nix::unistd::Pid::from_raw(group);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + DRIVER_EXIT;
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
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
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), String> {
    if !www.join("pkg/wsclose_client.js").is_file() {
        return Err(format!(
            "no built probe in {} (run `make build`, or pass --www)",
            www.display()
        ));
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|error| format!("cannot serve the page on {addr}: {error}"))?;
    let addr = listener.local_addr().map_err(|error| error.to_string())?;
    let files = warp::fs::dir(www.to_path_buf());
    let task = tokio::spawn(warp::serve(files).incoming(listener).run());
    Ok((addr, task))
}

/// Opens the page at `page` in `browser` and measures `close()` on `url` with the wasm probe.
pub async fn measure(browser: Browser, page: &str, url: &str) -> Result<Measured, String> {
    let driver = tokio::task::spawn_blocking(move || Driver::start(browser))
        .await
        .map_err(|error| error.to_string())??;
    let client = driver.connect().await?;
    let result = measure_in(&client, page, url).await;
    let _ = client.close().await;
    drop(driver);
    result
}

async fn measure_in(client: &Client, page: &str, url: &str) -> Result<Measured, String> {
    client
        .update_timeouts(TimeoutConfiguration::new(
            Some(PROBE_TIMEOUT + Duration::from_secs(10)),
            Some(STARTUP),
            None,
        ))
        .await
        .map_err(|error| format!("set the WebDriver timeouts: {error}"))?;
    client
        .goto(page)
        .await
        .map_err(|error| format!("open {page}: {error}"))?;
    client
        .wait()
        .at_most(STARTUP)
        .for_element(Locator::Css("html[data-ready='true']"))
        .await
        .map_err(|error| format!("the probe page did not load: {error}"))?;
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
        .map_err(|error| format!("run the probe: {error}"))?;
    if let Some(error) = value.get("error").and_then(|error| error.as_str()) {
        return Ok(Measured::Failed {
            error: error.to_owned(),
        });
    }
    let outcome = BrowserOutcome {
        close_after_ms: value["close_after_ms"].as_f64().unwrap_or(f64::NAN),
        code: CloseCode::from(
            value["code"]
                .as_u64()
                .and_then(|code| u16::try_from(code).ok())
                .unwrap_or(0),
        ),
        was_clean: value["was_clean"].as_bool().unwrap_or(false),
    };
    Ok(Measured::Outcome(outcome))
}

/// Prints a live progress line on stderr while `work` runs (rewritten in place on a
/// terminal, a line every 10 s elsewhere), then clears it.
pub async fn with_progress<T>(label: &str, work: impl std::future::Future<Output = T>) -> T {
    let terminal = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut work = std::pin::pin!(work);
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            result = &mut work => {
                if terminal {
                    eprint!("\r\x1b[2K");
                }
                return result;
            }
            _ = ticker.tick() => {
                let seconds = started.elapsed().as_secs();
                if terminal {
                    eprint!("\r\x1b[2K{label}: waiting for the close event… {seconds} s");
                } else if seconds % 10 == 0 {
                    eprintln!("{label}: waiting for the close event… {seconds} s");
                }
            }
        }
    }
}
