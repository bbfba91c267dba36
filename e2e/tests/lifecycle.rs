//! The connection lifecycle, against the real binary: the close handshake on the
//! draining endpoints, the bug reproduced on `/ws/no-drain`, tick order, echo integrity and
//! `/healthz`.
//!
//! Run with `cargo test -p wsclose-e2e --test lifecycle -- --nocapture` to see the figures.

use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use futures::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use wsclose_e2e::raw::RawClient;
use wsclose_e2e::ws::{
    assert_answered, assert_contiguous, assert_tcp_ends_after_close, close_and_wait, connect,
    next_data, parse_tick,
};
use wsclose_e2e::{http_get, MetricsSnapshot, ServerProcess, IO_TIMEOUT};

/// A correct server answers Close in about 1 ms; anything under a second proves it answered.
const CLOSE_BOUND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn drain_echoes_normal_close() {
    let server = ServerProcess::start(&[]).await;
    let mut ws = connect(&server.ws_url("/ws/drain?push_ms=20")).await;
    assert_eq!(parse_tick(&next_data(&mut ws, IO_TIMEOUT).await).seq, 0);

    let closed = close_and_wait(&mut ws, 1000, "", IO_TIMEOUT).await;
    println!("/ws/drain close 1000 answered in {:?}", closed.elapsed);
    assert_answered(&closed, CloseCode::Normal, "", CLOSE_BOUND, &"/ws/drain");
}

#[tokio::test]
async fn custom_code_and_reason_are_echoed() {
    let server = ServerProcess::start(&[]).await;
    for path in [
        "/ws/drain?push_ms=20",
        "/ws/drain?push_ms=60000",
        "/ws/echo",
    ] {
        for (code, reason) in [(4000, "bye now"), (4999, "tschüss ✓"), (1001, "going")] {
            let mut ws = connect(&server.ws_url(path)).await;
            let closed = close_and_wait(&mut ws, code, reason, IO_TIMEOUT).await;
            println!("{path} close {code} answered in {:?}", closed.elapsed);
            assert_answered(&closed, code, reason, CLOSE_BOUND, &path);
        }
    }
}

/// The bug, reproduced on purpose: the server never reads, so the Close is never answered, while
/// the ticks keep coming.
#[tokio::test]
async fn no_drain_never_answers_close() {
    let server = ServerProcess::start(&[]).await;
    let mut ws = connect(&server.ws_url("/ws/no-drain?push_ms=50")).await;
    assert_eq!(parse_tick(&next_data(&mut ws, IO_TIMEOUT).await).seq, 0);

    let waited = Duration::from_secs(2);
    let closed = close_and_wait(&mut ws, 1000, "", waited).await;
    println!(
        "/ws/no-drain: no Close reply after {:?}, {} ticks meanwhile",
        closed.elapsed,
        closed.messages.len()
    );
    assert!(
        closed.answer.close.is_none(),
        "no-drain answered Close: {closed:?}"
    );
    assert!(!closed.ended, "no-drain connection ended: {closed:?}");
    assert!(
        closed.messages.len() >= 5,
        "no-drain stopped pushing: {closed:?}"
    );
}

/// With a 60 s push interval the writer is asleep when the Close comes; the server must still
/// drop the TCP connection at once, or Chromium waits up to 2 s before firing `close`.
#[tokio::test]
async fn tcp_ends_right_after_the_handshake_with_a_sleeping_writer() {
    let server = ServerProcess::start(&[]).await;
    for path in ["/ws/drain?push_ms=60000", "/ws/echo"] {
        let mut raw = RawClient::connect(server.addr(), path).await;
        let (wait, bound) = (Duration::from_secs(2), Duration::from_millis(100));
        assert_tcp_ends_after_close(&mut raw, wait, bound, &path).await;
    }
}

#[tokio::test]
async fn ticks_are_contiguous_and_none_is_lost_up_to_the_close() {
    let server = ServerProcess::start(&[]).await;
    let mut ws = connect(&server.ws_url("/ws/drain?push_ms=10")).await;
    let mut ticks = Vec::new();
    while ticks.len() < 40 {
        ticks.push(parse_tick(&next_data(&mut ws, IO_TIMEOUT).await));
    }
    let closed = close_and_wait(&mut ws, 1000, "", IO_TIMEOUT).await;
    assert_eq!(closed.code(), CloseCode::Normal, "{closed:?}");
    assert!(closed.ended, "{closed:?}");
    ticks.extend(closed.messages.iter().map(parse_tick));
    assert_contiguous(&ticks, 0);

    // Every tick the server counted as sent reached the client: none lost at the close.
    let received = ticks.len() as f64;
    let metrics = MetricsSnapshot::wait_until(server.addr(), Duration::from_secs(5), |page| {
        page.sum("wsclose_connections_active", &[]) == 0.0
    })
    .await
    .unwrap_or_else(|page| panic!("connection still counted as active:\n{}", page.text));
    let sent = metrics.sum("wsclose_messages_sent_total", &[("endpoint", "drain")]);
    println!("{received} ticks received, server sent {sent}");
    assert_eq!(
        sent, received,
        "server sent {sent} ticks, client got {received}"
    );
}

/// `len` bytes of UTF-8 mixing 1- to 4-byte characters.
fn text_of_len(len: usize) -> String {
    let mut text = String::with_capacity(len);
    let pattern = ['a', 'é', '€', '𝄞', 'z'];
    for c in pattern.iter().cycle() {
        if text.len() + c.len_utf8() > len {
            break;
        }
        text.push(*c);
    }
    while text.len() < len {
        text.push('.');
    }
    text
}

#[tokio::test]
async fn echo_returns_text_and_binary_unchanged_up_to_64_kib() {
    let server = ServerProcess::start(&[]).await;
    let mut ws = connect(&server.ws_url("/ws/echo")).await;
    for len in [0, 1, 125, 126, 127, 1000, 65_535, 65_536] {
        let text = text_of_len(len);
        assert_eq!(text.len(), len);
        ws.send(Message::text(text.clone())).await.expect("send");
        let echoed = next_data(&mut ws, IO_TIMEOUT).await;
        assert!(echoed == Message::text(text), "text of {len} bytes changed");

        let binary: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
        ws.send(Message::binary(binary.clone()))
            .await
            .expect("send");
        let echoed = next_data(&mut ws, IO_TIMEOUT).await;
        assert!(
            echoed == Message::binary(binary),
            "binary of {len} bytes changed"
        );
    }
    let closed = close_and_wait(&mut ws, 1000, "", IO_TIMEOUT).await;
    assert_eq!(closed.code(), CloseCode::Normal, "{closed:?}");
    assert!(
        closed.messages.is_empty(),
        "echo pushed something: {closed:?}"
    );
}

#[tokio::test]
async fn healthz_says_ok_and_stdout_has_one_line() {
    let server = ServerProcess::start(&[]).await;
    let response = http_get(server.addr(), "/healthz").await.expect("GET");
    assert_eq!(response.status, 200);
    assert_eq!(response.body, "ok");
    assert_eq!(
        server.stdout_lines(),
        vec![format!(
            "wsclose-server listening on http://{}",
            server.addr()
        )]
    );
}
