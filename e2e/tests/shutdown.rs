//! Graceful shutdown: on SIGTERM (or SIGINT) the server sends Close 1001 to every socket, after
//! every tick it pushed before, waits at most `--close-timeout` for the replies, and exits 0.

use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use wsclose_check::How;
use wsclose_e2e::raw::RawClient;
use wsclose_e2e::ws::{assert_contiguous, connect, parse_tick, Tick};
use wsclose_e2e::{heavy_test_guard, MetricsSnapshot, ServerProcess, IO_TIMEOUT};

const CONNECTIONS: usize = 200;

/// How long before the SIGTERM a client's last tick may have been sent (ticks every 20 ms).
const LAST_TICK_SLACK_MS: u64 = 100;

/// Milliseconds since the Unix epoch, the clock of the ticks' `sent_at_ms`.
fn unix_ms() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    u64::try_from(since.as_millis()).expect("fits")
}

/// What one client saw from its first tick to the end of its stream.
struct Seen {
    ticks: Vec<Tick>,
    close_code: Option<u16>,
    error: Option<String>,
}

#[tokio::test]
async fn sigterm_sends_1001_after_every_tick_to_200_clients_and_exits_0() {
    let _heavy = heavy_test_guard().await;
    let close_timeout = Duration::from_secs(2);
    let mut server = ServerProcess::start(&["--close-timeout", "2s"]).await;

    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(CONNECTIONS);
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut ws = connect(&server.ws_url("/ws/drain?push_ms=20")).await;
        let ready = ready_tx.clone();
        clients.push(tokio::spawn(async move {
            let mut seen = Seen {
                ticks: Vec::new(),
                close_code: None,
                error: None,
            };
            // tungstenite answers the server's Close while it is polled, so keep reading
            // until the stream ends.
            while let Some(message) = ws.next().await {
                match message {
                    Ok(message @ Message::Text(_)) => {
                        if seen.ticks.is_empty() {
                            let _ = ready.send(()).await;
                        }
                        assert!(seen.close_code.is_none(), "tick after Close");
                        seen.ticks.push(parse_tick(&message));
                    }
                    Ok(Message::Close(frame)) => {
                        seen.close_code = Some(frame.map_or(1005, |frame| frame.code.into()));
                    }
                    Ok(_) => {}
                    Err(err) => {
                        seen.error = Some(err.to_string());
                        break;
                    }
                }
            }
            seen
        }));
    }
    drop(ready_tx);
    for _ in 0..CONNECTIONS {
        tokio::time::timeout(IO_TIMEOUT, ready_rx.recv())
            .await
            .expect("every client gets a first tick")
            .expect("client alive");
    }
    // Let the ticks flow a little, then stop the server mid-stream.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let signalled_unix_ms = unix_ms();
    server.sigterm();
    let signalled = Instant::now();

    let status = server
        .wait_exit(close_timeout + Duration::from_secs(1))
        .await;
    let exit_after = signalled.elapsed();
    let status = status.unwrap_or_else(|| {
        panic!("still running {exit_after:?} after SIGTERM (close timeout {close_timeout:?})")
    });
    println!("exited with {status} {exit_after:?} after SIGTERM");
    assert!(status.success(), "exit status {status}");

    let mut total_ticks = 0;
    for (i, client) in clients.into_iter().enumerate() {
        let seen = tokio::time::timeout(IO_TIMEOUT, client)
            .await
            .expect("client finished")
            .expect("client task");
        assert_eq!(
            seen.close_code,
            Some(1001),
            "client {i}: error {:?}",
            seen.error
        );
        assert_eq!(
            seen.error, None,
            "client {i}: the handshake did not complete"
        );
        assert!(
            seen.ticks.len() >= 2,
            "client {i}: {} ticks",
            seen.ticks.len()
        );
        assert_contiguous(&seen.ticks, 0);
        // The ticks flowed until the shutdown: the last one was sent just before the Close
        // (ticks every 20 ms), not long before it.
        let last_sent = seen.ticks.last().and_then(|tick| tick.sent_at_ms.as_u64());
        assert!(
            last_sent.is_some_and(|sent| sent + LAST_TICK_SLACK_MS >= signalled_unix_ms),
            "client {i}: last tick sent at {last_sent:?}, SIGTERM at {signalled_unix_ms}"
        );
        total_ticks += seen.ticks.len();
    }
    println!("{CONNECTIONS} clients got Close 1001 after {total_ticks} contiguous ticks in all");
}

/// A peer that reads the Close but never answers it holds the shutdown for `--close-timeout`,
/// and no longer.
#[tokio::test]
async fn shutdown_waits_for_a_silent_peer_only_until_close_timeout() {
    let mut server = ServerProcess::start(&["--close-timeout", "1s"]).await;
    let mut raw = RawClient::connect(server.addr(), "/ws/drain?push_ms=50").await;
    // The shutdown must find the socket in the lifecycle: wait until the server counts it.
    MetricsSnapshot::wait_until(server.addr(), IO_TIMEOUT, |page| {
        page.sum("wsclose_connections_active", &[]) == 1.0
    })
    .await
    .expect("the socket counted as active");
    server.sigterm();
    let signalled = Instant::now();

    let (outcome, _ticks) = raw.next_close(IO_TIMEOUT).await;
    assert!(
        outcome.how == How::Close && outcome.close_code() == Some(1001),
        "{outcome:?}"
    );
    // While it waits, it accepts no new connections: refused at TCP level, or a 503.
    match RawClient::upgrade(server.addr(), "/ws/echo", &[]).await {
        Err(_) => {}
        Ok((response, _)) => assert_eq!(response.status, 503, "upgrade during shutdown"),
    }
    // Never reply. The server gives up after the close timeout and exits.
    let status = server.wait_exit(Duration::from_secs(2)).await;
    let exit_after = signalled.elapsed();
    println!("silent peer: exited {status:?} {exit_after:?} after SIGTERM");
    let status = status.expect("exited within close-timeout + 1 s");
    assert!(status.success(), "{status}");
    assert!(
        exit_after >= Duration::from_millis(500),
        "exited after {exit_after:?}, without waiting for the peer's Close"
    );
    assert!(raw.wait_tcp_end(Duration::from_secs(1)).await.is_some());
}

#[tokio::test]
async fn sigint_also_shuts_down_gracefully() {
    let mut server = ServerProcess::start(&["--close-timeout", "1s"]).await;
    let mut ws = connect(&server.ws_url("/ws/echo")).await;
    server.sigint();
    let mut code = None;
    while let Ok(Some(message)) = tokio::time::timeout(IO_TIMEOUT, ws.next()).await {
        match message {
            Ok(Message::Close(frame)) => code = frame.map(|frame| u16::from(frame.code)),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert_eq!(code, Some(1001));
    let status = server.wait_exit(Duration::from_secs(2)).await;
    assert!(status.is_some_and(|status| status.success()), "{status:?}");
}
