//! The raw-frame suite: frames written by hand over a `TcpStream`, each breaking one
//! rule of RFC 6455 (or one admission rule of the server). Every case asserts the exact Close code
//! or HTTP status, that the server then ends the TCP connection, and that it still serves a fresh
//! connection afterwards.

use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use wsclose_e2e::raw::{Frame, RawClient, OP_BINARY, OP_PING, OP_PONG, OP_TEXT, RSV1, RSV2, RSV3};
use wsclose_e2e::ws::{
    assert_healthy, assert_raw_close_echoed, close_and_wait, connect, next_frame,
};
use wsclose_e2e::{ServerProcess, IO_TIMEOUT};

/// Close codes.
const PROTOCOL_ERROR: u16 = 1002;
const INVALID_PAYLOAD: u16 = 1007;
const TOO_BIG: u16 = 1009;

/// The server waits this long for our Close reply (which the raw client never sends) before it
/// drops the socket; short, so the cleanup check below stays fast.
const CLOSE_TIMEOUT: &str = "1s";

async fn server() -> ServerProcess {
    ServerProcess::start(&["--close-timeout", CLOSE_TIMEOUT]).await
}

/// [`expect_close_code`] on a server of its own.
async fn expect_close_code_on_a_fresh_server(frames: &[Frame], code: u16) {
    expect_close_code(&server().await, frames, code).await;
}

/// `frames` on a server of its own get Close 1002 (see [`expect_close_code`]).
async fn protocol_error(frames: &[Frame]) {
    expect_close_code_on_a_fresh_server(frames, PROTOCOL_ERROR).await;
}

/// Sends `frames` on a fresh `/ws/echo` connection, asserts the server's Close `code`, that the
/// TCP connection ends within close-timeout plus margin, and that the server is still healthy.
async fn expect_close_code(server: &ServerProcess, frames: &[Frame], code: u16) {
    let mut raw = RawClient::connect(server.addr(), "/ws/echo").await;
    for frame in frames {
        // The server may close while a large frame is still being written; the Close it sent
        // first is what counts.
        if let Err(err) = raw.send(frame).await {
            println!("write stopped early: {err}");
            break;
        }
    }
    let (outcome, skipped) = raw.next_close(IO_TIMEOUT).await;
    let Some(close) = &outcome.close else {
        panic!("expected Close {code}, got {outcome:?} (after {skipped:?})");
    };
    assert_eq!(
        close.close_code(),
        Some(code),
        "reason {:?}",
        String::from_utf8_lossy(close.close_reason())
    );
    assert!(
        std::str::from_utf8(close.close_reason()).is_ok(),
        "the server's own close reason must be UTF-8"
    );
    let ended = raw.wait_tcp_end(Duration::from_secs(4)).await;
    assert!(ended.is_some(), "TCP still open 4 s after Close {code}");
    assert_healthy(server).await;
}

async fn expect_echo(server: &ServerProcess, frames: &[Frame], opcode: u16, payload: &[u8]) {
    let mut raw = RawClient::connect(server.addr(), "/ws/echo").await;
    for frame in frames {
        raw.send(frame).await.expect("send");
    }
    let echoed = loop {
        let frame = next_frame(&mut raw, "echo").await;
        if frame.opcode != OP_PING {
            break frame;
        }
    };
    assert_eq!(u16::from(echoed.opcode), opcode);
    assert!(echoed.fin);
    assert_eq!(echoed.payload, payload);
    assert_eq!(echoed.mask, None, "server frames must not be masked");
    assert_raw_close_echoed(&mut raw, 1000, b"", &"after the echo").await;
}

#[tokio::test]
async fn unmasked_client_frame() {
    protocol_error(&[Frame::text("hi").unmasked()]).await;
}

#[tokio::test]
async fn rsv1_set() {
    protocol_error(&[Frame::text("hi").rsv(RSV1)]).await;
}

#[tokio::test]
async fn rsv2_set() {
    protocol_error(&[Frame::text("hi").rsv(RSV2)]).await;
}

#[tokio::test]
async fn rsv3_set_on_a_control_frame() {
    protocol_error(&[Frame::ping("hi").rsv(RSV3)]).await;
}

#[tokio::test]
async fn reserved_data_opcodes() {
    let server = server().await;
    for opcode in [0x3, 0x7] {
        expect_close_code(&server, &[Frame::new(opcode, "x")], PROTOCOL_ERROR).await;
    }
}

#[tokio::test]
async fn reserved_control_opcodes() {
    let server = server().await;
    for opcode in [0xB, 0xF] {
        expect_close_code(&server, &[Frame::new(opcode, "x")], PROTOCOL_ERROR).await;
    }
}

#[tokio::test]
async fn fragmented_control_frame() {
    protocol_error(&[Frame::ping("part").fin(false), Frame::continuation("rest")]).await;
}

#[tokio::test]
async fn control_frame_over_125_bytes() {
    protocol_error(&[Frame::ping(vec![b'p'; 126])]).await;
}

#[tokio::test]
async fn continuation_without_a_start() {
    protocol_error(&[Frame::continuation("orphan")]).await;
}

#[tokio::test]
async fn new_data_frame_while_a_fragmented_message_is_open() {
    protocol_error(&[Frame::text("first ").fin(false), Frame::text("second")]).await;
}

#[tokio::test]
async fn invalid_close_codes() {
    let server = server().await;
    for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        println!("close code {code}");
        expect_close_code(&server, &[Frame::close(code, b"")], PROTOCOL_ERROR).await;
    }
}

#[tokio::test]
async fn close_with_a_one_byte_payload() {
    let server = server().await;
    let frame = Frame::new(wsclose_e2e::raw::OP_CLOSE, vec![0x03]);
    expect_close_code(&server, &[frame], PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn valid_close_codes_are_echoed() {
    let server = server().await;
    for code in [1000, 1001, 1003, 1007, 1008, 1011, 3000, 3999, 4000, 4999] {
        let mut raw = RawClient::connect(server.addr(), "/ws/echo").await;
        let reply = assert_raw_close_echoed(&mut raw, code, b"why", &code).await;
        assert_eq!(reply.close_reason(), b"why");
        assert!(raw.wait_tcp_end(Duration::from_secs(1)).await.is_some());
    }
    // An empty Close is answered with an empty Close (no code to echo).
    let mut raw = RawClient::connect(server.addr(), "/ws/echo").await;
    raw.send(&Frame::new(wsclose_e2e::raw::OP_CLOSE, Vec::new()))
        .await
        .expect("send");
    let (outcome, _) = raw.next_close(IO_TIMEOUT).await;
    assert!(
        outcome.close.as_ref().is_some_and(|f| f.payload.is_empty()),
        "{outcome:?}"
    );
    assert_healthy(&server).await;
}

#[tokio::test]
async fn invalid_utf8_text_in_one_frame() {
    expect_close_code_on_a_fresh_server(&[Frame::text(vec![b'o', 0xC3, 0x28])], INVALID_PAYLOAD)
        .await;
}

#[tokio::test]
async fn invalid_utf8_text_split_across_fragments() {
    let server = server().await;
    // F0 9F starts a 4-byte sequence; 0x28 cannot continue it.
    let frames = [
        Frame::text(vec![b'a', 0xF0, 0x9F]).fin(false),
        Frame::continuation(vec![0x28, b'b']),
    ];
    expect_close_code(&server, &frames, INVALID_PAYLOAD).await;
}

#[tokio::test]
async fn valid_utf8_split_across_fragments_is_echoed_whole() {
    let server = server().await;
    // "€" is E2 82 AC: split mid-character, the message as a whole is valid.
    let frames = [
        Frame::text(vec![b'<', 0xE2]).fin(false),
        Frame::continuation(vec![0x82]).fin(false),
        Frame::ping("in between"),
        Frame::continuation(vec![0xAC, b'>']),
    ];
    let mut raw = RawClient::connect(server.addr(), "/ws/echo").await;
    for frame in &frames {
        raw.send(frame).await.expect("send");
    }
    let mut pong = None;
    let echoed = loop {
        let frame = next_frame(&mut raw, "echo").await;
        match frame.opcode {
            OP_PONG => pong = Some(frame),
            OP_PING => {}
            _ => break frame,
        }
    };
    assert_eq!(echoed.opcode, OP_TEXT);
    assert_eq!(echoed.payload, "<€>".as_bytes());
    let pong = pong.expect("the ping between fragments was answered before the echo");
    assert_eq!(pong.payload, b"in between");
    assert_healthy(&server).await;
}

#[tokio::test]
async fn ping_is_answered_with_the_same_payload() {
    let server = server().await;
    let mut raw = RawClient::connect(server.addr(), "/ws/echo").await;
    raw.send(&Frame::ping("are you there")).await.expect("send");
    let pong = next_frame(&mut raw, "pong").await;
    assert_eq!(pong.opcode, OP_PONG);
    assert_eq!(pong.payload, b"are you there");
    // Unsolicited pongs are allowed and ignored: the same connection goes on echoing.
    raw.send(&Frame::pong("unsolicited")).await.expect("send");
    raw.send(&Frame::binary("after pong")).await.expect("send");
    let echoed = next_frame(
        &mut raw,
        "echo after an unsolicited pong (which must not end the connection)",
    )
    .await;
    assert_eq!(echoed.opcode, OP_BINARY);
    assert_eq!(echoed.payload, b"after pong");
}

/// RFC 6455 §5.2: in a 64-bit payload length "the most significant bit MUST be 0". A frame
/// that sets it is a protocol error (1002), not a message that is too big (1009).
#[tokio::test]
async fn length_with_its_top_bit_set_is_a_protocol_error() {
    let server = server().await;
    let mut raw = RawClient::connect(server.addr(), "/ws/echo").await;
    // FIN + binary; masked, 127 = a 64-bit length follows; the length; the masking key.
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 63 | 5).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    raw.send_bytes(&header).await.expect("send the header");
    let (outcome, _) = raw.next_close(IO_TIMEOUT).await;
    let Some(close) = &outcome.close else {
        panic!("expected Close 1002, got {outcome:?}");
    };
    assert_eq!(close.close_code(), Some(1002));
    assert_healthy(&server).await;
}

#[tokio::test]
async fn invalid_utf8_close_reason() {
    expect_close_code_on_a_fresh_server(&[Frame::close(1000, &[0xFF, 0xFE])], INVALID_PAYLOAD)
        .await;
}

#[tokio::test]
async fn message_too_big_in_one_frame() {
    expect_close_code_on_a_fresh_server(&[Frame::binary(vec![7; 65_537])], TOO_BIG).await;
}

#[tokio::test]
async fn message_too_big_across_fragments() {
    let server = server().await;
    let frames = [
        Frame::text(vec![b'a'; 40_000]).fin(false),
        Frame::continuation(vec![b'b'; 40_000]),
    ];
    expect_close_code(&server, &frames, TOO_BIG).await;
}

#[tokio::test]
async fn message_of_exactly_the_limit_in_fragments_is_echoed() {
    let server = server().await;
    let frames = [
        Frame::binary(vec![1; 30_000]).fin(false),
        Frame::continuation(vec![2; 30_000]).fin(false),
        Frame::continuation(vec![3; 5_536]),
    ];
    let mut whole = vec![1; 30_000];
    whole.extend([2; 30_000]);
    whole.extend([3; 5_536]);
    expect_echo(&server, &frames, OP_BINARY.into(), &whole).await;
}

#[tokio::test]
async fn smaller_max_message_size_flag() {
    let server = ServerProcess::start(&["--max-message-size", "512"]).await;
    expect_echo(
        &server,
        &[Frame::text(vec![b'x'; 512])],
        OP_TEXT.into(),
        &[b'x'; 512],
    )
    .await;
    expect_close_code(&server, &[Frame::text(vec![b'x'; 513])], TOO_BIG).await;
}

/// Upgrades `/ws/echo` with `headers` and returns the HTTP status.
async fn upgrade_status(server: &ServerProcess, headers: &[(&str, &str)]) -> u16 {
    let (response, client) = RawClient::upgrade(server.addr(), "/ws/echo", headers)
        .await
        .expect("upgrade exchange");
    assert_eq!(client.is_some(), response.status == 101);
    response.status
}

#[tokio::test]
async fn foreign_origin_is_forbidden() {
    let server = server().await;
    for origin in [
        "http://evil.example",
        "https://127.0.0.1.evil.example",
        &format!("http://127.0.0.1:{}", server.addr().port() + 1),
        "null",
    ] {
        assert_eq!(
            upgrade_status(&server, &[("Origin", origin)]).await,
            403,
            "{origin}"
        );
    }
    assert_healthy(&server).await;
}

#[tokio::test]
async fn missing_origin_is_accepted() {
    let server = server().await;
    assert_eq!(upgrade_status(&server, &[]).await, 101);
    assert_healthy(&server).await;
}

#[tokio::test]
async fn origin_matching_host_is_accepted() {
    let server = server().await;
    let origin = format!("http://{}", server.addr());
    assert_eq!(upgrade_status(&server, &[("Origin", &origin)]).await, 101);
    assert_healthy(&server).await;
}

#[tokio::test]
async fn allowed_origin_flag() {
    let server = ServerProcess::start(&[
        "--allowed-origin",
        "https://app.example",
        "--allowed-origin",
        "http://localhost:8080",
    ])
    .await;
    for origin in ["https://app.example", "http://localhost:8080"] {
        assert_eq!(
            upgrade_status(&server, &[("Origin", origin)]).await,
            101,
            "{origin}"
        );
    }
    let own = format!("http://{}", server.addr());
    for origin in ["https://evil.example", "http://app.example", own.as_str()] {
        assert_eq!(
            upgrade_status(&server, &[("Origin", origin)]).await,
            403,
            "{origin} is not on the list"
        );
    }
    assert_eq!(upgrade_status(&server, &[]).await, 101, "no Origin");
    assert_healthy(&server).await;
}

#[tokio::test]
async fn connections_beyond_max_connections_get_503() {
    let server = ServerProcess::start(&["--max-connections", "2"]).await;
    let mut first = connect(&server.ws_url("/ws/echo")).await;
    let _second = connect(&server.ws_url("/ws/drain?push_ms=50")).await;
    assert_eq!(upgrade_status(&server, &[]).await, 503);
    let (response, _) = RawClient::upgrade(server.addr(), "/ws/no-drain", &[])
        .await
        .unwrap();
    assert_eq!(response.status, 503, "every endpoint shares the limit");
    assert_eq!(response.body, b"too many connections\n");
    let health = wsclose_e2e::http_get(server.addr(), "/healthz")
        .await
        .unwrap();
    assert_eq!(
        (health.status, health.body.as_str()),
        (503, "too many connections\n"),
        "the cap counts TCP connections, so /healthz says the server is full"
    );

    let closed = close_and_wait(&mut first, 1000, "", IO_TIMEOUT).await;
    assert_eq!(closed.code(), CloseCode::Normal);
    // The slot belongs to the TCP connection: it is free once both sides have closed it.
    drop(first);
    // The freed slot is usable again, as soon as the server has finished with the old
    // connection (which may be a moment after the client saw the TCP end).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut third = loop {
        match RawClient::upgrade(server.addr(), "/ws/echo", &[])
            .await
            .unwrap()
        {
            (_, Some(client)) => break client,
            (response, None) if response.status == 503 => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "slot not freed 5 s after the close"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (response, None) => panic!("{response:?}"),
        }
    };
    third.send(&Frame::text("third")).await.unwrap();
    let echoed = next_frame(&mut third, "echo").await;
    assert_eq!(echoed.payload, b"third");
}
