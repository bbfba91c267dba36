//! `--idle`: the real `wsclose-check` binary against in-process servers and relays that each
//! model one way a quiet WebSocket ends: a proxy's idle timeout (a TCP relay with an idle timer),
//! a lifetime cap (a relay that cuts whatever flows), a server that pings, one that closes quiet
//! clients with a Close frame, one that drops every connection with a FIN or a reset, one that
//! drops a peer that answers no Ping; and hostile ones (floods, garbage) that must not grow the
//! check's memory or keep it past MAX.
//!
//! Durations are short (MAX 4 s, cuts at 2 s) so the file runs in seconds, its tests in
//! parallel. The cut times are asserted within the issue's ±1 s.

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use wsclose_check::raw::{OP_BINARY, OP_PING};

mod common;

use common::*;

/// `--idle`'s MAX in these tests.
const MAX: &str = "4s";
/// Where the relays and servers here cut.
const CUT: Duration = Duration::from_secs(2);
/// The tolerance the issue gives a measured cut.
const TOLERANCE_MS: f64 = 1000.0;
/// The arguments of every run: short waits, MAX, a keepalive every 700 ms, JSON.
/// `--idle-interval` is not a divisor of [`CUT`]: a client Ping that reaches a test server as it
/// cuts makes a FIN a reset (closing a socket with unread data resets it).
const IDLE: [&str; 9] = [
    "--close-wait",
    "1s",
    "--timeout",
    "2s",
    "--idle",
    MAX,
    "--idle-interval",
    "700ms",
    "--json",
];

/// What a test server does besides echoing messages (tungstenite answers Pings and Closes).
#[derive(Debug, Clone, Default)]
struct Behaviour {
    /// Each text message it gets is also sent here.
    heard: Option<mpsc::UnboundedSender<String>>,
    /// Sends a Ping this often.
    ping_every: Option<Duration>,
    /// Drops TCP (FIN, no Close) when the client sent no frame (a Pong included) for this long.
    drop_silent: Option<Duration>,
    /// Sends Close(code, "idle") when the client sent no frame for this long.
    close_quiet: Option<(Duration, u16)>,
    /// Drops every connection this long after its upgrade: with a reset when `true`.
    lifetime: Option<(Duration, bool)>,
}

/// Sleeps until `at`, or forever when `None`.
async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A tokio-tungstenite echo server that behaves as `behaviour` says.
async fn ws_server(stream: TcpStream, behaviour: Behaviour) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let born = Instant::now();
    let mut heard = Instant::now();
    let mut closing = false;
    let ping_every = behaviour.ping_every.unwrap_or(Duration::from_secs(3600));
    let mut pings = tokio::time::interval_at(born + ping_every, ping_every);
    pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let silent = behaviour.drop_silent.map(|after| heard + after);
        let quiet = behaviour
            .close_quiet
            .filter(|_| !closing)
            .map(|(after, _)| heard + after);
        let end_of_life = behaviour.lifetime.map(|(after, _)| born + after);
        tokio::select! {
            message = ws.next() => match message {
                Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                    heard = Instant::now();
                    if let (Some(to), Message::Text(text)) = (&behaviour.heard, &message) {
                        let _ = to.send(text.to_string());
                    }
                    let _ = ws.send(message).await;
                }
                Some(Ok(_)) => heard = Instant::now(),
                None | Some(Err(_)) => return,
            },
            _ = pings.tick(), if behaviour.ping_every.is_some() => {
                let _ = ws.send(Message::Ping(Vec::new().into())).await;
            }
            () = until(silent) => return,
            () = until(quiet) => {
                let code = behaviour.close_quiet.expect("set").1;
                closing = true;
                let close = CloseFrame { code: CloseCode::from(code), reason: "idle".into() };
                let _ = ws.close(Some(close)).await;
            }
            () = until(end_of_life) => {
                if behaviour.lifetime.expect("set").1 {
                    ws.get_ref().set_zero_linger().unwrap();
                }
                return;
            }
        }
    }
}

/// A server of `behaviour` on `127.0.0.1:0`, aborted when the handle drops.
async fn server(behaviour: Behaviour) -> (SocketAddr, Aborted) {
    let (addr, task) = serve(move |stream| ws_server(stream, behaviour.clone())).await;
    (addr, Aborted(task))
}

/// Aborts its task when dropped, so a failing test leaves nothing running.
struct Aborted(JoinHandle<()>);

impl Drop for Aborted {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// When a relay cuts a connection (both sides, with a FIN).
#[derive(Debug, Clone, Copy)]
enum Cut {
    /// After this long with no byte either way: a proxy's idle timeout.
    Idle(Duration),
    /// This long after the connection came, whatever flows: a lifetime cap.
    Lifetime(Duration),
}

/// A TCP relay on `127.0.0.1:0` to `upstream` that cuts as `cut` says: a fake proxy.
async fn relay(upstream: SocketAddr, cut: Cut) -> (SocketAddr, Aborted) {
    let (addr, task) = serve(move |client| relay_one(client, upstream, cut)).await;
    (addr, Aborted(task))
}

async fn relay_one(mut client: TcpStream, upstream: SocketAddr, cut: Cut) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client_in, mut client_out) = client.split();
    let (mut server_in, mut server_out) = server.split();
    let (mut up, mut down) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let deadline = |from: Instant| match cut {
        Cut::Idle(idle) => from + idle,
        Cut::Lifetime(life) => from + life,
    };
    let born = Instant::now();
    let mut cut_at = deadline(born);
    loop {
        tokio::select! {
            read = client_in.read(&mut up) => match read {
                Ok(n) if n > 0 && server_out.write_all(&up[..n]).await.is_ok() => {}
                _ => return,
            },
            read = server_in.read(&mut down) => match read {
                Ok(n) if n > 0 && client_out.write_all(&down[..n]).await.is_ok() => {}
                _ => return,
            },
            () = tokio::time::sleep_until(cut_at) => return,
        }
        if let Cut::Idle(_) = cut {
            cut_at = deadline(Instant::now());
        }
    }
}

/// Runs the binary against `url` with [`IDLE`] and `extra`.
async fn idle_run(url: &str, extra: &[&str]) -> (Run, Value) {
    let run = check(args(url, &[&IDLE[..], extra].concat())).await;
    assert!(run.elapsed < TIME_BOUND, "{run:#?}");
    assert!(run.peak_rss_kib < RSS_BOUND_KIB, "{run:#?}");
    let json = json(&run);
    (run, json)
}

/// The `modes` entry of `mode` in `modes`.
fn mode<'a>(modes: &'a Value, mode: &str) -> &'a Value {
    modes
        .as_array()
        .unwrap_or_else(|| panic!("no modes: {modes}"))
        .iter()
        .find(|held| held["mode"] == mode)
        .unwrap_or_else(|| panic!("no {mode} in {modes}"))
}

/// The verdict of check `id`.
fn verdict<'a>(json: &'a Value, id: &str) -> &'a str {
    check_field(json, id, "verdict")
}

/// Asserts that `ms` is [`CUT`] within the issue's ±1 s.
fn assert_cut(ms: &Value, json: &Value) {
    let ms = ms.as_f64().unwrap_or_else(|| panic!("no cut in {json}"));
    let cut = CUT.as_secs_f64() * 1e3;
    assert!(
        (ms - cut).abs() <= TOLERANCE_MS,
        "cut after {ms} ms, not {cut}: {json}"
    );
}

/// Every key of the `idle` and `dead_peer` objects, as the contract lists them.
fn assert_keys(json: &Value) {
    let keys = |value: &Value| {
        let mut keys: Vec<String> = value
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {value}"))
            .keys()
            .cloned()
            .collect();
        keys.sort();
        keys
    };
    assert_eq!(
        keys(&json["idle"]),
        [
            "classification",
            "cut_after_ms",
            "cut_by",
            "max_ms",
            "modes",
            "recommended_ping_interval_ms",
            "upstream_modes"
        ]
    );
    for held in json["idle"]["modes"].as_array().unwrap() {
        assert_eq!(
            keys(held),
            [
                "close_code",
                "close_reason",
                "ended_after_ms",
                "how",
                "mode",
                "server_ping_interval_ms",
                "server_pings"
            ]
        );
    }
    assert_eq!(
        keys(&json["dead_peer"]),
        ["close_code", "dropped_after_ms", "how"]
    );
    assert_eq!(json["idle"]["max_ms"], 4000.0);
}

#[tokio::test]
async fn a_server_that_never_pings_behind_an_idle_timeout_is_cut_and_the_proxy_named() {
    let (app, _app) = server(Behaviour::default()).await;
    let (proxy, _proxy) = relay(app, Cut::Idle(CUT)).await;
    let upstream = format!("ws://{app}/");
    let (run, json) = idle_run(&format!("ws://{proxy}/"), &["--upstream", &upstream]).await;
    assert_keys(&json);
    let idle = &json["idle"];
    let browser = mode(&idle["modes"], "browser");
    assert_eq!(browser["how"], "fin", "{json}");
    assert_cut(&browser["ended_after_ms"], &json);
    assert_eq!(browser["server_pings"], 0, "{json}");
    for traffic in ["client-ping", "app-message"] {
        assert_eq!(mode(&idle["modes"], traffic)["how"], "open", "{json}");
    }
    assert_eq!(idle["classification"], "idle-timeout", "{json}");
    assert_cut(&idle["cut_after_ms"], &json);
    assert_eq!(idle["cut_by"], "proxy", "{json}");
    // Straight to the app, nothing was cut.
    for held in idle["upstream_modes"].as_array().unwrap() {
        assert_eq!(held["how"], "open", "{json}");
    }
    let recommended = idle["recommended_ping_interval_ms"].as_f64().unwrap();
    assert!(
        recommended <= idle["cut_after_ms"].as_f64().unwrap() / 2.0,
        "{json}"
    );
    assert_eq!(verdict(&json, "idle"), "fail");
    // The relay cuts the dead peer too, at the same time: dropped, and said to be the cut.
    assert_eq!(json["dead_peer"]["how"], "fin", "{json}");
    assert_eq!(verdict(&json, "dead-peer"), "pass");
    assert!(
        detail(&json, "dead-peer").contains("the idle cut"),
        "{json}"
    );
    let fix = check_field(&json, "idle", "fix");
    assert!(
        fix.contains("the server sent no Ping on any connection (in up to 4.0 s): ping every <= "),
        "{fix}"
    );
    assert_eq!(run.status, Some(1), "{run:#?}");
    assert!(run.stderr.contains("fail: idle: "), "{run:#?}");
}

#[tokio::test]
async fn without_upstream_who_cut_is_unknown_and_the_table_says_what_a_quiet_tab_sees() {
    let (app, _app) = server(Behaviour::default()).await;
    let (proxy, _proxy) = relay(app, Cut::Idle(CUT)).await;
    let table = [&IDLE[..8]].concat();
    let run = check(args(&format!("ws://{proxy}/"), &table)).await;
    assert_eq!(run.status, Some(1), "{run:#?}");
    for line in [
        "idle connections (--idle 4.0 s)",
        "classification: idle-timeout after ",
        "cut by: unknown",
        "a quiet tab (predicted)",
        "1006",
        "--upstream ws://APP/PATH would tell which",
        "fix: the server sent no Ping on any connection",
    ] {
        assert!(run.stdout.contains(line), "no {line:?} in {}", run.stdout);
    }
}

#[tokio::test]
async fn a_server_that_pings_survives_the_idle_timeout_and_drops_the_dead_peer() {
    let (app, _app) = server(Behaviour {
        ping_every: Some(Duration::from_millis(500)),
        drop_silent: Some(Duration::from_millis(1500)),
        ..Behaviour::default()
    })
    .await;
    let (proxy, _proxy) = relay(app, Cut::Idle(CUT)).await;
    let (run, json) = idle_run(&format!("ws://{proxy}/"), &[]).await;
    assert_keys(&json);
    let idle = &json["idle"];
    for held in idle["modes"].as_array().unwrap() {
        assert_eq!(held["how"], "open", "{json}");
        assert_eq!(held["ended_after_ms"], Value::Null, "{json}");
    }
    let browser = mode(&idle["modes"], "browser");
    assert!(browser["server_pings"].as_u64().unwrap() >= 4, "{json}");
    let every = browser["server_ping_interval_ms"].as_f64().unwrap();
    assert!((every - 500.0).abs() < 250.0, "{json}");
    assert_eq!(idle["classification"], "no-cut", "{json}");
    assert_eq!(idle["cut_after_ms"], Value::Null, "{json}");
    assert_eq!(idle["cut_by"], "unknown", "{json}");
    assert_eq!(idle["recommended_ping_interval_ms"], Value::Null, "{json}");
    assert_eq!(idle["upstream_modes"], Value::Null, "{json}");
    assert_eq!(verdict(&json, "idle"), "pass");
    // The dead peer answers no Ping: dropped 1.5 s after the last frame it sent (the upgrade).
    let dead = &json["dead_peer"];
    assert_eq!(dead["how"], "fin", "{json}");
    let dropped = dead["dropped_after_ms"].as_f64().unwrap();
    assert!((dropped - 1500.0).abs() <= TOLERANCE_MS, "{json}");
    assert_eq!(verdict(&json, "dead-peer"), "pass");
    assert_eq!(run.status, Some(0), "{run:#?}");
}

#[tokio::test]
async fn a_server_that_never_drops_a_dead_peer_gets_a_warning() {
    let (app, _app) = server(Behaviour::default()).await;
    let (run, json) = idle_run(&format!("ws://{app}/"), &[]).await;
    assert_eq!(json["dead_peer"]["how"], "open", "{json}");
    assert_eq!(json["dead_peer"]["dropped_after_ms"], Value::Null, "{json}");
    assert_eq!(verdict(&json, "dead-peer"), "warn");
    assert!(
        detail(&json, "dead-peer").contains("still connected after 4.0 s"),
        "{json}"
    );
    assert_eq!(json["idle"]["classification"], "no-cut", "{json}");
    assert_eq!(run.status, Some(0), "{run:#?}");
    assert!(run.stderr.contains("dead-peer"), "{run:#?}");
}

#[tokio::test]
async fn a_lifetime_cap_cuts_every_mode_and_no_interval_is_recommended() {
    let (app, _app) = server(Behaviour::default()).await;
    let (proxy, _proxy) = relay(app, Cut::Lifetime(CUT)).await;
    let (run, json) = idle_run(&format!("ws://{proxy}/"), &[]).await;
    let idle = &json["idle"];
    for held in idle["modes"].as_array().unwrap() {
        assert_eq!(held["how"], "fin", "{json}");
        assert_cut(&held["ended_after_ms"], &json);
    }
    assert_eq!(idle["classification"], "lifetime-cap", "{json}");
    assert_cut(&idle["cut_after_ms"], &json);
    assert_eq!(idle["recommended_ping_interval_ms"], Value::Null, "{json}");
    assert_eq!(verdict(&json, "idle"), "fail");
    assert_eq!(run.status, Some(1), "{run:#?}");
    assert!(run.stderr.contains("lifetime-cap"), "{run:#?}");
}

#[tokio::test]
async fn a_server_that_closes_quiet_clients_is_a_warning_with_its_code() {
    let runs = [1000u16, 1001, 4000].map(|code| async move {
        let (app, _app) = server(Behaviour {
            close_quiet: Some((CUT, code)),
            ..Behaviour::default()
        })
        .await;
        let upstream = format!("ws://{app}/");
        (code, idle_run(&upstream, &["--upstream", &upstream]).await)
    });
    for (code, (run, json)) in futures::future::join_all(runs).await {
        let idle = &json["idle"];
        let browser = mode(&idle["modes"], "browser");
        assert_eq!(browser["how"], "close", "{json}");
        assert_eq!(browser["close_code"], code, "{json}");
        assert_eq!(browser["close_reason"], "idle", "{json}");
        assert_cut(&browser["ended_after_ms"], &json);
        // Traffic (a Ping, a message) keeps the others open.
        for traffic in ["client-ping", "app-message"] {
            assert_eq!(mode(&idle["modes"], traffic)["how"], "open", "{json}");
        }
        assert_eq!(idle["classification"], "server-drops-quiet", "{json}");
        assert_eq!(idle["cut_by"], "server", "{json}");
        let recommended = idle["recommended_ping_interval_ms"].as_f64().unwrap();
        let cut = idle["cut_after_ms"].as_f64().unwrap();
        assert!(recommended > 0.0 && recommended <= cut / 2.0, "{json}");
        assert_eq!(verdict(&json, "idle"), "warn");
        assert_eq!(json["dead_peer"]["how"], "close", "{json}");
        assert_eq!(json["dead_peer"]["close_code"], code, "{json}");
        assert_eq!(verdict(&json, "dead-peer"), "pass");
        assert_eq!(run.status, Some(0), "{run:#?}");
    }
}

#[tokio::test]
async fn a_fin_and_a_reset_are_told_apart_and_the_server_named() {
    let runs = [(false, "fin"), (true, "rst")].map(|(reset, how)| async move {
        let (app, _app) = server(Behaviour {
            lifetime: Some((CUT, reset)),
            ..Behaviour::default()
        })
        .await;
        let url = format!("ws://{app}/");
        (how, idle_run(&url, &["--upstream", &url]).await)
    });
    for (how, (_run, json)) in futures::future::join_all(runs).await {
        let idle = &json["idle"];
        for held in idle["modes"].as_array().unwrap() {
            assert_eq!(held["how"], how, "{json}");
            assert_eq!(held["close_code"], Value::Null, "{json}");
            assert_cut(&held["ended_after_ms"], &json);
        }
        assert_eq!(json["dead_peer"]["how"], how, "{json}");
        assert_eq!(idle["classification"], "lifetime-cap", "{json}");
        assert_eq!(idle["cut_by"], "server", "{json}");
        assert_eq!(verdict(&json, "idle"), "fail");
    }
}

#[tokio::test]
async fn without_idle_the_report_has_no_idle_keys_and_no_idle_rows() {
    let (app, _app) = server(Behaviour::default()).await;
    let run = check(args(
        &format!("ws://{app}/"),
        &[&IDLE[..4], &["--json"]].concat(),
    ))
    .await;
    let json = json(&run);
    assert!(json.get("idle").is_none(), "{json}");
    assert!(json.get("dead_peer").is_none(), "{json}");
    let ids: Vec<&str> = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|check| check["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 10, "{json}");
    assert!(
        !ids.contains(&"idle") && !ids.contains(&"dead-peer"),
        "{json}"
    );
}

#[tokio::test]
async fn a_max_time_shorter_than_idle_needs_is_a_usage_error() {
    let run = check(args(
        "ws://127.0.0.1:9/",
        &["--idle", "130s", "--max-time", "60s"],
    ))
    .await;
    run.assert(
        2,
        "--max-time 1m is shorter than --idle 2m 10s needs: give 2m 45s or more",
    );
    let run = check(vec!["--idle".into(), "ws://127.0.0.1:9/".into()]).await;
    assert_eq!(run.status, Some(2), "{run:#?}");
    assert!(run.stderr.contains("put the URL before --idle"), "{run:#?}");
    let run = check(args(
        "ws://127.0.0.1:9/",
        &["--upstream", "ws://127.0.0.1:9/"],
    ))
    .await;
    assert_eq!(run.status, Some(2), "{run:#?}");
    assert!(
        run.stderr.contains("not provided: --idle [<MAX>]"),
        "{run:#?}"
    );
}

#[tokio::test]
async fn a_signal_during_idle_ends_the_run_at_once_with_what_the_connections_saw() {
    let (heard, mut messages) = mpsc::unbounded_channel();
    let (app, _app) = server(Behaviour {
        heard: Some(heard),
        ..Behaviour::default()
    })
    .await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_wsclose-check"))
        .arg(format!("ws://{app}/"))
        .args(&IDLE[..4])
        .args(["--idle", "60s", "--idle-interval", "200ms", "--json"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run wsclose-check");
    // app-message's first message: the idle connections are open and held.
    let message = tokio::time::timeout(Duration::from_secs(20), messages.recv()).await;
    assert_eq!(message, Ok(Some("wsclose-check idle".to_owned())));
    let signalled = Instant::now();
    let pid = nix::unistd::Pid::from_raw(child.id().expect("running") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("signal the check");
    let mut stdout = String::new();
    let mut out = child.stdout.take().unwrap();
    let read = async { out.read_to_string(&mut stdout).await.map(|_| ()) };
    let (status, _) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(child.wait(), read)
    })
    .await
    .expect("the check ended on SIGINT");
    // The connections end with a Close(1000) each, sent at once: well under the 60 s MAX.
    assert!(signalled.elapsed() < Duration::from_secs(5), "{stdout}");
    assert_eq!(status.unwrap().code(), Some(130), "{stdout}");
    let json: Value = serde_json::from_str(&stdout).unwrap();
    for held in json["idle"]["modes"].as_array().unwrap() {
        assert_eq!(held["how"], "open", "{json}");
    }
    for id in ["idle", "dead-peer"] {
        assert_eq!(verdict(&json, id), "skip", "{json}");
        assert!(
            detail(&json, id).contains("cut off: interrupted by SIGINT"),
            "{json}"
        );
    }
}

// Hostile servers: whatever they send during --idle, the check's memory stays bounded and the
// run ends by MAX plus what the other checks take.

/// How long past MAX a run against a hostile server may end: the other checks' waits
/// (`--timeout 2s`, `--close-wait 1s`) and a busy machine.
const PAST_MAX: Duration = Duration::from_secs(20);

/// Answers the upgrade, then writes `chunk` forever and never reads.
async fn flood(mut stream: TcpStream, chunk: Vec<u8>) {
    if accept_upgrade(&mut stream).await.is_some() {
        write_forever(&mut stream, &chunk).await;
    }
}

#[tokio::test]
async fn a_flood_of_data_frames_during_idle_is_counted_not_kept() {
    let (addr, _server) = {
        let (addr, task) =
            serve(|stream| flood(stream, [OP_BINARY | 0x80, 0].repeat(32 * 1024))).await;
        (addr, Aborted(task))
    };
    let (run, json) = idle_run(&format!("ws://{addr}/"), &[]).await;
    assert!(run.elapsed < Duration::from_secs(4) + PAST_MAX, "{run:#?}");
    let browser = mode(&json["idle"]["modes"], "browser");
    assert_eq!(browser["how"], "open", "{json}");
    assert_eq!(json["idle"]["classification"], "no-cut", "{json}");
}

#[tokio::test]
async fn a_flood_of_pings_during_idle_is_counted_and_bounded() {
    let (addr, _server) = {
        let (addr, task) =
            serve(|stream| flood(stream, [OP_PING | 0x80, 0].repeat(32 * 1024))).await;
        (addr, Aborted(task))
    };
    let (run, json) = idle_run(&format!("ws://{addr}/"), &[]).await;
    assert!(run.elapsed < Duration::from_secs(4) + PAST_MAX, "{run:#?}");
    let browser = mode(&json["idle"]["modes"], "browser");
    // More than any server that is not flooding sends in 4 s.
    assert!(browser["server_pings"].as_u64().unwrap() > 1_000, "{json}");
    // The server reads none of the Pongs: once the socket's buffers are full, a Pong does not
    // go out within --timeout, and the check ends the connection ("error"); or MAX comes first.
    assert!(
        ["error", "open"].contains(&browser["how"].as_str().unwrap()),
        "{json}"
    );
    // The dead peer answers nothing, so nothing blocks it: open at MAX.
    assert_eq!(json["dead_peer"]["how"], "open", "{json}");
}

#[tokio::test]
async fn garbage_and_lies_about_lengths_during_idle_get_a_finding() {
    // After 1 s, a Ping that claims 200 bytes (control frames carry at most 125).
    let garbage = |mut stream: TcpStream| async move {
        if accept_upgrade(&mut stream).await.is_some() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let _ = stream.write_all(&[OP_PING | 0x80, 126, 0, 200]).await;
            silent(stream).await;
        }
    };
    let (addr, task) = serve(garbage).await;
    let _server = Aborted(task);
    let (_run, json) = idle_run(&format!("ws://{addr}/"), &[]).await;
    let browser = mode(&json["idle"]["modes"], "browser");
    assert_eq!(browser["how"], "error", "{json}");
    assert!(
        detail(&json, "idle").contains("200-byte control frame"),
        "{json}"
    );
    assert_eq!(verdict(&json, "idle"), "fail");

    // A binary frame that claims 2^62 bytes, then a trickle: skipped as it comes, never kept.
    let lie = |mut stream: TcpStream| async move {
        if accept_upgrade(&mut stream).await.is_some() {
            let mut header = vec![OP_BINARY | 0x80, 127];
            header.extend_from_slice(&(1u64 << 62).to_be_bytes());
            let _ = stream.write_all(&header).await;
            write_forever(&mut stream, &[0u8; 64 * 1024]).await;
        }
    };
    let (addr, task) = serve(lie).await;
    let _server = Aborted(task);
    let (run, json) = idle_run(&format!("ws://{addr}/"), &[]).await;
    assert!(run.elapsed < Duration::from_secs(4) + PAST_MAX, "{run:#?}");
    assert_eq!(
        mode(&json["idle"]["modes"], "browser")["how"],
        "open",
        "{json}"
    );
}
