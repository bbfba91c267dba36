//! What a rolling restart needs from one instance, against the real binary: signal
//! handlers in place before the listening line, the listener closed before anything else,
//! `/healthz` saying `draining`, `--shutdown-code 1012`, `?after=N` and the `instance` field,
//! and the header-read timeout that drops an unfinished request.
//!
//! Run with `cargo test -p wsclose-e2e --test restart -- --nocapture` to see the figures.

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use wsclose_check::How;
use wsclose_e2e::http::read_response;
use wsclose_e2e::raw::RawClient;
use wsclose_e2e::ws::{assert_healthy, connect, next_data};
use wsclose_e2e::{ServerProcess, IO_TIMEOUT};

/// A supervisor that reads the listening line and sends SIGTERM at once must get a graceful
/// exit. Before the handlers were installed ahead of that line, the default action killed the
/// process (status 143) in most tries.
#[tokio::test]
async fn sigterm_the_moment_the_listening_line_is_read_exits_0() {
    for attempt in 0..20 {
        let mut server = ServerProcess::start(&[]).await;
        server.sigterm();
        let status = server.wait_exit(Duration::from_secs(5)).await;
        assert!(
            status.is_some_and(|status| status.success()),
            "attempt {attempt}: {status:?}; stderr:\n{}",
            server.stderr_text()
        );
    }
}

/// Sends one `GET path` on an open keep-alive connection and reads the one response.
async fn get_on(stream: &mut TcpStream, path: &str) -> (u16, String) {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .expect("write request");
    let response = read_response(stream).await.expect("a response");
    (response.status, response.body)
}

#[tokio::test]
async fn shutdown_closes_the_listener_first_and_healthz_reports_draining() {
    let mut server = ServerProcess::start(&["--close-timeout", "2s"]).await;
    let addr: SocketAddr = server.addr();
    // A peer that never answers Close holds the shutdown open for the close timeout.
    let mut silent = RawClient::connect(addr, "/ws/drain?push_ms=0").await;
    let mut keep_alive = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(
        get_on(&mut keep_alive, "/healthz").await,
        (200, "ok".into())
    );

    server.sigterm();
    let (outcome, _) = silent.next_close(IO_TIMEOUT).await;
    assert!(
        outcome.how == How::Close && outcome.close_code() == Some(1001),
        "{outcome:?}"
    );
    // The Close went out after the listener was closed: a new connection is refused at once,
    // so a proxy moves on to another instance.
    let refused = TcpStream::connect(addr).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|error| error.kind() == std::io::ErrorKind::ConnectionRefused),
        "a new connection during shutdown: {refused:?}"
    );
    // An HTTP connection that was already open hears that the instance is draining.
    assert_eq!(
        get_on(&mut keep_alive, "/healthz").await,
        (503, "draining".into())
    );
    let status = server.wait_exit(Duration::from_secs(4)).await;
    assert!(status.is_some_and(|status| status.success()), "{status:?}");
}

#[tokio::test]
async fn shutdown_code_1012_tells_clients_the_service_restarts() {
    let mut server = ServerProcess::start(&["--shutdown-code", "1012"]).await;
    let mut ws = connect(&server.ws_url("/ws/drain?push_ms=20")).await;
    next_data(&mut ws, IO_TIMEOUT).await;
    server.sigterm();
    let mut close = None;
    while let Ok(Some(Ok(message))) = tokio::time::timeout(IO_TIMEOUT, ws.next()).await {
        if let Message::Close(Some(frame)) = message {
            close = Some((u16::from(frame.code), frame.reason.to_string()));
        }
    }
    assert_eq!(close, Some((1012, "server restarting".to_owned())));
    let status = server.wait_exit(Duration::from_secs(4)).await;
    assert!(status.is_some_and(|status| status.success()), "{status:?}");
}

/// The first tick of a connection, as JSON.
async fn first_tick(server: &ServerProcess, path: &str) -> serde_json::Value {
    let mut ws = connect(&server.ws_url(path)).await;
    let message = next_data(&mut ws, IO_TIMEOUT).await;
    serde_json::from_str(message.to_text().expect("text tick")).expect("JSON tick")
}

#[tokio::test]
async fn after_resumes_the_sequence_and_ticks_name_their_instance() {
    let named = ServerProcess::start(&["--instance", "alpha"]).await;
    let tick = first_tick(&named, "/ws/drain?push_ms=20&after=41").await;
    assert_eq!(tick["seq"], 42, "{tick}");
    assert_eq!(tick["instance"], "alpha", "{tick}");
    let tick = first_tick(&named, "/ws/drain?push_ms=20").await;
    assert_eq!(tick["seq"], 0, "{tick}");

    let unnamed = ServerProcess::start(&[]).await;
    let tick = first_tick(&unnamed, "/ws/drain?push_ms=20").await;
    assert_eq!(tick["instance"], unnamed.addr().to_string(), "{tick}");

    let (response, _) =
        RawClient::upgrade(unnamed.addr(), "/ws/drain?after=18446744073709551615", &[])
            .await
            .expect("upgrade request");
    assert_eq!(response.status, 400, "after = u64::MAX has no next seq");
    assert_healthy(&unnamed).await;
}

/// Slowloris: a request whose headers never finish is dropped at `--header-timeout`, without
/// an ERROR in the log, and the server keeps serving.
#[tokio::test]
async fn unfinished_request_headers_are_dropped_at_the_header_timeout() {
    let server = ServerProcess::start(&["--header-timeout", "1s"]).await;
    let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Never: finished")
        .await
        .expect("write part of a request");
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(IO_TIMEOUT, stream.read_to_end(&mut rest)).await;
    let dropped_after = started.elapsed();
    println!("unfinished request dropped after {dropped_after:?}");
    assert!(read.is_ok(), "still open after {IO_TIMEOUT:?}");
    assert!(
        dropped_after >= Duration::from_millis(900),
        "dropped after {dropped_after:?}, before the 1 s header timeout"
    );
    assert_healthy(&server).await;
    assert!(
        !server.stderr_text().contains("ERROR"),
        "{}",
        server.stderr_text()
    );
}
