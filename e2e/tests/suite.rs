//! One behaviour suite, four servers: the lifecycle's guarantees checked against the demo
//! server's `/ws/echo` and against each example in `wsclose/examples/` (warp, axum,
//! tokio-tungstenite), which all call `wsclose::serve_websocket`.
//!
//! Each check is one test per server, in a module named after it, so a failure names the
//! server (`axum_example::silent_peer_is_dropped_at_the_pong_deadline`):
//! * the Close is echoed with its code and reason, and a message is echoed before it;
//! * the TCP connection ends right after the close handshake;
//! * a silent peer is pinged, then dropped at the pong deadline, without a Close;
//! * SIGTERM sends Close 1001, waits for the peer's answer, then exits 0.
//!
//! Every server gets the same short timing through the same `WSCLOSE_*` variables: the demo
//! server reads them as its flags' environment, the examples through `Timing::from_env`.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use wsclose_e2e::raw::RawClient;
use wsclose_e2e::ws::{
    assert_answered, assert_tcp_ends_after_close, close_and_wait, connect, next_data,
    silent_peer_dropped,
};
use wsclose_e2e::{ServerProcess, IO_TIMEOUT};

/// Pings every 500 ms, drops a silent peer after 1.5 s, waits 3 s for a Close to be answered.
const TIMING: [(&str, &str); 3] = [
    ("WSCLOSE_PING_INTERVAL", "500ms"),
    ("WSCLOSE_PONG_TIMEOUT", "1500ms"),
    ("WSCLOSE_CLOSE_TIMEOUT", "3s"),
];
/// The pong timeout above.
const PONG_TIMEOUT: Duration = Duration::from_millis(1500);

/// A correct server answers a Close in about 1 ms; under a second proves it answered.
const CLOSE_BOUND: Duration = Duration::from_secs(1);
/// After the close handshake the server closes TCP at once; 100 ms is the RFC-minded bound.
const TCP_END_BOUND: Duration = Duration::from_millis(100);
/// How long the peer takes to answer the server's shutdown Close; the server must wait.
const ANSWER_AFTER: Duration = Duration::from_millis(500);

/// One server under test.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// `wsclose-server` itself, on `/ws/echo`.
    Server,
    /// `wsclose/examples/NAME.rs`, on `/ws`.
    Example(&'static str),
}

impl Target {
    async fn start(self) -> (ServerProcess, &'static str) {
        match self {
            Target::Server => {
                let mut command_env = Vec::new();
                for (name, value) in TIMING {
                    let flag = name
                        .trim_start_matches("WSCLOSE_")
                        .to_lowercase()
                        .replace('_', "-");
                    command_env.push(format!("--{flag}"));
                    command_env.push(value.to_owned());
                }
                let args: Vec<&str> = command_env.iter().map(String::as_str).collect();
                (ServerProcess::start(&args).await, "/ws/echo")
            }
            Target::Example(name) => (ServerProcess::start_example(name, &TIMING).await, "/ws"),
        }
    }
}

async fn close_is_echoed_with_its_code_and_reason(target: Target) {
    let (server, path) = target.start().await;
    let mut ws = connect(&server.ws_url(path)).await;
    ws.send(Message::text("hello ✓")).await.expect("send");
    assert_eq!(
        next_data(&mut ws, IO_TIMEOUT).await,
        Message::text("hello ✓"),
        "{target:?}"
    );
    let closed = close_and_wait(&mut ws, 4000, "bye now", IO_TIMEOUT).await;
    println!("{target:?}: Close 4000 answered in {:?}", closed.elapsed);
    assert_answered(&closed, 4000, "bye now", CLOSE_BOUND, &target);
}

async fn tcp_ends_right_after_the_close_handshake(target: Target) {
    let (server, path) = target.start().await;
    let mut raw = RawClient::connect(server.addr(), path).await;
    assert_tcp_ends_after_close(&mut raw, Duration::from_secs(3), TCP_END_BOUND, &target).await;
}

async fn silent_peer_is_dropped_at_the_pong_deadline(target: Target) {
    let (server, path) = target.start().await;
    // Reads the pings to count them, answers nothing.
    let mut raw = RawClient::connect(server.addr(), path).await;
    silent_peer_dropped(&mut raw, PONG_TIMEOUT * 4)
        .await
        .assert_dropped(
            PONG_TIMEOUT - Duration::from_millis(200)..PONG_TIMEOUT * 3,
            &target,
        );
}

async fn sigterm_sends_1001_and_waits_for_the_answer(target: Target) {
    let (mut server, path) = target.start().await;
    let mut ws = connect(&server.ws_url(path)).await;
    // The upgrade is done once an echo comes back.
    ws.send(Message::text("up")).await.expect("send");
    next_data(&mut ws, IO_TIMEOUT).await;
    server.sigterm();
    let close = loop {
        match tokio::time::timeout(IO_TIMEOUT, ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => continue,
            other => panic!("{target:?}: no Close after SIGTERM: {other:?}"),
        }
    };
    let code = close.as_ref().map(|frame| u16::from(frame.code));
    assert_eq!(code, Some(1001), "{target:?}: {close:?}");
    // tungstenite queued our answer when it read the Close; it goes out on the next read or
    // flush. Hold it back, and check that the server is still waiting.
    tokio::time::sleep(ANSWER_AFTER).await;
    assert_eq!(
        server.try_exit_status(),
        None,
        "{target:?}: exited before the peer answered its Close"
    );
    let answered = Instant::now();
    ws.flush().await.ok();
    while let Ok(Some(Ok(_))) = tokio::time::timeout(IO_TIMEOUT, ws.next()).await {}
    let status = server
        .wait_exit(IO_TIMEOUT)
        .await
        .unwrap_or_else(|| panic!("{target:?}: still running after the answer"));
    println!(
        "{target:?}: exited {status} {:?} after the answer",
        answered.elapsed()
    );
    assert!(status.success(), "{target:?}: {status}");
    assert!(
        answered.elapsed() < CLOSE_BOUND,
        "{target:?}: exit took {:?}",
        answered.elapsed()
    );
}

/// The four checks against one target, in a module named after it: one test per check, named
/// after it.
macro_rules! suite {
    ($module:ident, $target:expr) => {
        suite!(
            $module,
            $target,
            close_is_echoed_with_its_code_and_reason,
            tcp_ends_right_after_the_close_handshake,
            silent_peer_is_dropped_at_the_pong_deadline,
            sigterm_sends_1001_and_waits_for_the_answer,
        );
    };
    ($module:ident, $target:expr, $($check:ident,)+) => {
        mod $module {
            use super::*;
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check($target).await;
                }
            )+
        }
    };
}

suite!(wsclose_server, Target::Server);
suite!(warp_example, Target::Example("warp"));
suite!(axum_example, Target::Example("axum"));
suite!(
    tokio_tungstenite_example,
    Target::Example("tokio_tungstenite")
);
