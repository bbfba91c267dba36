//! The lifecycle through real tungstenite: a server and a client `WebSocketStream` over an
//! in-memory `tokio::io::duplex` pipe, under paused time, so every deadline is exact.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{stream, SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use wsclose::{
    close, serve_websocket, CloseCode, EndReason, Ending, Initiator, Lifecycle, Message,
};

use wsclose::test_util::{self, Socket};

/// The lifecycle with `test_util::TIMING`: a ping at 9 s, a silent peer dropped at 10 s, writes
/// bounded by 2 s, a close handshake by 3 s.
fn lifecycle() -> Lifecycle {
    Lifecycle::new().with_timing(test_util::TIMING)
}

async fn pair() -> (Socket, Socket) {
    test_util::pair(None).await
}

/// Reads and answers nothing.
fn read_only(_: Message) -> Option<Message> {
    None
}

/// The next message the client reads (its reads also flush its queued replies).
async fn next(client: &mut Socket) -> Option<Message> {
    client.next().await.and_then(Result::ok)
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_is_pinged_then_dropped_at_the_pong_deadline() {
    let (server, mut client) = pair().await;
    let started = Instant::now();
    let ending = serve_websocket(server, &lifecycle(), stream::pending(), read_only).await;
    assert_eq!(
        ending,
        Ending::dropped(Initiator::Server, EndReason::PongTimeout)
    );
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    assert_eq!(
        next(&mut client).await,
        Some(Message::Ping(Default::default())),
        "one ping at 9 s"
    );
    assert_eq!(
        next(&mut client).await,
        None,
        "then the connection ends, without a Close"
    );
}

#[tokio::test(start_paused = true)]
async fn any_frame_from_the_peer_moves_the_read_deadline() {
    let (server, mut client) = pair().await;
    let task = tokio::spawn(async move {
        serve_websocket(server, &lifecycle(), stream::pending(), read_only).await
    });
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(8)).await;
        client
            .send(Message::Pong(Default::default()))
            .await
            .unwrap();
    }
    tokio::task::yield_now().await;
    assert!(
        !task.is_finished(),
        "40 s in, four pong timeouts, and still open"
    );
    drop(client);
    assert_eq!(task.await.unwrap().reason, EndReason::PeerGone);
}

/// The fix itself: tungstenite only queues the Close reply when it reads the peer's Close, and
/// the next read flushes it. A loop that returned on `Message::Close` would drop the reply.
#[tokio::test(start_paused = true)]
async fn the_peer_close_is_answered_with_its_code_and_reason() {
    let (server, mut client) = pair().await;
    let task = tokio::spawn(async move {
        serve_websocket(server, &lifecycle(), stream::pending(), read_only).await
    });
    client
        .send(close::message(CloseCode::Library(4000), "bye"))
        .await
        .unwrap();
    assert_eq!(
        next(&mut client).await,
        Some(close::message(CloseCode::Library(4000), "bye")),
        "the server's Close reply"
    );
    let ending = task.await.unwrap();
    assert_eq!(
        ending,
        Ending::dropped(Initiator::Client, EndReason::PeerClose)
            .with_code(CloseCode::Library(4000))
            .with_handshake(Duration::ZERO)
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_sends_going_away_and_waits_for_the_answer() {
    let (server, mut client) = pair().await;
    let lifecycle = lifecycle();
    let task = tokio::spawn({
        let lifecycle = lifecycle.clone();
        async move { serve_websocket(server, &lifecycle, stream::pending(), read_only).await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let shutdown = tokio::spawn({
        let lifecycle = lifecycle.clone();
        async move { lifecycle.shutdown().await }
    });
    assert_eq!(
        next(&mut client).await,
        Some(close::shutdown(CloseCode::Away))
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!task.is_finished(), "still draining for the peer's Close");
    assert_eq!(
        next(&mut client).await,
        None,
        "the client's read sends its answer; then TCP ends"
    );
    let ending = task.await.unwrap();
    assert_eq!(
        (ending.code, ending.reason),
        (Some(CloseCode::Away), EndReason::Shutdown)
    );
    assert_eq!(ending.close_handshake, Some(Duration::from_millis(10)));
    assert_eq!(shutdown.await.unwrap(), 0, "every socket finished");
}

#[tokio::test(start_paused = true)]
async fn shutdown_with_service_restart_sends_1012() {
    let (server, mut client) = pair().await;
    let lifecycle = lifecycle().with_shutdown_code(CloseCode::Restart);
    let task = tokio::spawn({
        let lifecycle = lifecycle.clone();
        async move { serve_websocket(server, &lifecycle, stream::pending(), read_only).await }
    });
    tokio::task::yield_now().await;
    let _shutdown = tokio::spawn(async move { lifecycle.shutdown().await });
    assert_eq!(
        next(&mut client).await,
        Some(close::message(CloseCode::Restart, "server restarting"))
    );
    assert_eq!(next(&mut client).await, None);
    assert_eq!(task.await.unwrap().code, Some(CloseCode::Restart));
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_close_is_dropped_after_close_timeout() {
    let (server, _client) = pair().await;
    let lifecycle = lifecycle();
    let shutdown = tokio::spawn({
        let lifecycle = lifecycle.clone();
        async move {
            tokio::task::yield_now().await;
            lifecycle.shutdown().await
        }
    });
    let started = Instant::now();
    let ending = serve_websocket(server, &lifecycle, stream::pending(), read_only).await;
    assert_eq!(
        (ending.code, ending.reason),
        (Some(CloseCode::Away), EndReason::CloseTimeout)
    );
    assert_eq!(ending.close_handshake, None, "no answer, no handshake");
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    assert_eq!(shutdown.await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_peer_close_whose_answer_cannot_be_written_is_dropped_after_close_timeout() {
    // 256 bytes of pipe, filled by the first message, and a client that never reads: the
    // answer to its Close cannot go out, so the stream never ends.
    let (server, mut client) = test_util::pair_with(256, None).await;
    let fills_the_pipe = Message::binary(vec![0u8; 256 - 4]);
    let outgoing = stream::iter([fills_the_pipe]).chain(stream::pending());
    let task =
        tokio::spawn(
            async move { serve_websocket(server, &lifecycle(), outgoing, read_only).await },
        );
    // The message is written at once; only then does the Close arrive.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let close_sent = Instant::now();
    client
        .send(close::message(CloseCode::Normal, ""))
        .await
        .unwrap();
    let ending = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the connection ended")
        .unwrap();
    assert_eq!(
        (ending.code, ending.reason),
        (Some(CloseCode::Normal), EndReason::CloseTimeout)
    );
    assert_eq!(ending.close_handshake, None, "the answer never went out");
    assert_eq!(close_sent.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_at_most_close_timeout_plus_the_grace() {
    let lifecycle = lifecycle();
    lifecycle.spawn(std::future::pending::<()>());
    let started = Instant::now();
    assert_eq!(
        lifecycle.shutdown().await,
        1,
        "the task that never ends is still running"
    );
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(3) + wsclose::SHUTDOWN_GRACE
    );
}

#[tokio::test(start_paused = true)]
async fn the_end_of_the_outgoing_stream_closes_with_1000_and_waits_for_the_answer() {
    let (server, mut client) = pair().await;
    let outgoing = stream::iter([Message::text("a"), Message::text("b")]);
    let task =
        tokio::spawn(
            async move { serve_websocket(server, &lifecycle(), outgoing, read_only).await },
        );
    assert_eq!(next(&mut client).await, Some(Message::text("a")));
    assert_eq!(next(&mut client).await, Some(Message::text("b")));
    assert_eq!(
        next(&mut client).await,
        Some(close::message(CloseCode::Normal, ""))
    );
    assert!(!task.is_finished(), "still draining for the peer's Close");
    assert_eq!(next(&mut client).await, None);
    let ending = task.await.unwrap();
    assert_eq!(
        (ending.initiator, ending.code, ending.reason),
        (Initiator::Server, Some(CloseCode::Normal), EndReason::Done)
    );
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_takes_no_writes_is_dropped_after_write_timeout_with_one_message_pulled() {
    // 256 bytes of pipe and a client that never reads: the first 1 KiB message cannot be flushed.
    let (server, _client) = test_util::pair_with(256, None).await;
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let outgoing = stream::repeat_with(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        Message::binary(vec![0u8; 1024])
    });
    let started = Instant::now();
    let ending = serve_websocket(server, &lifecycle(), outgoing, read_only).await;
    assert_eq!(ending.reason, EndReason::WriteTimeout);
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(
        pulled.load(Ordering::Relaxed),
        1,
        "backpressure: nothing is pulled while a write is pending"
    );
}

#[tokio::test(start_paused = true)]
async fn the_handler_sees_data_its_reply_is_written_and_pings_are_answered() {
    let (server, mut client) = pair().await;
    let upper = |message: Message| Some(Message::text(message.to_text().ok()?.to_uppercase()));
    let task = tokio::spawn(async move {
        serve_websocket(server, &lifecycle(), stream::pending(), upper).await
    });
    client.send(Message::text("hi")).await.unwrap();
    client.send(Message::binary(vec![0xffu8])).await.unwrap(); // not text: no reply
    client.send(Message::Ping(vec![7u8].into())).await.unwrap();
    assert_eq!(next(&mut client).await, Some(Message::text("HI")));
    assert_eq!(
        next(&mut client).await,
        Some(Message::Pong(vec![7u8].into()))
    );
    drop(client);
    assert_eq!(task.await.unwrap().reason, EndReason::PeerGone);
}

/// Bytes a client could send that break the protocol, the server's socket config, and the
/// close code and reason they earn.
#[tokio::test(start_paused = true)]
async fn read_errors_get_their_close_codes() {
    let small = WebSocketConfig::default().max_message_size(Some(4));
    let cases: [(&[u8], Option<WebSocketConfig>, CloseCode, EndReason); 3] = [
        // A text frame without a mask: clients must mask.
        (
            &[0x81, 0x02, b'h', b'i'],
            None,
            CloseCode::Protocol,
            EndReason::ProtocolError,
        ),
        // A masked (with a zero key) text frame whose payload is 0xff: not UTF-8.
        (
            &[0x81, 0x81, 0, 0, 0, 0, 0xff],
            None,
            CloseCode::Invalid,
            EndReason::InvalidUtf8,
        ),
        // Five bytes against a maximum of four.
        (
            &[0x82, 0x85, 0, 0, 0, 0, 1, 2, 3, 4, 5],
            Some(small),
            CloseCode::Size,
            EndReason::MessageTooBig,
        ),
    ];
    for (bytes, config, code, reason) in cases {
        let (server, mut raw_client) = tokio::io::duplex(1024);
        raw_client.write_all(bytes).await.unwrap();
        let server = WebSocketStream::from_raw_socket(server, Role::Server, config).await;
        let mut client = WebSocketStream::from_raw_socket(raw_client, Role::Client, None).await;
        let task = tokio::spawn(async move {
            serve_websocket(server, &lifecycle(), stream::pending(), read_only).await
        });
        let reply = next(&mut client).await;
        assert_eq!(
            reply.as_ref().and_then(close::code),
            Some(code),
            "{reason}: {reply:?}"
        );
        assert_eq!(next(&mut client).await, None, "{reason}");
        let ending = task.await.unwrap();
        assert_eq!(
            (ending.initiator, ending.code, ending.reason),
            (Initiator::Server, Some(code), reason)
        );
    }
}
