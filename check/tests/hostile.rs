//! The real `wsclose-check` binary against servers written to break it, and against fragile
//! ones it must not break: each run ends within [`TIME_BOUND`] with the exit status it should
//! have, one line on stderr that says why, and a peak RSS under [`RSS_BOUND_KIB`].
//!
//! Every server here is an in-process tokio task on `127.0.0.1:0`, aborted when its test ends.
//! The `--deploy` cases are in `hostile/deploy.rs`.

#[path = "hostile/deploy.rs"]
mod deploy;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::Message;
use wsclose_check::raw::{Frame, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT};

mod common;

use common::*;

/// Reads (some of) the request, answers `head`, then `chunk` until the peer goes away.
async fn answer_forever(mut stream: TcpStream, head: &'static [u8], chunk: &'static [u8]) {
    let _ = stream.read(&mut [0u8; 4096]).await;
    let _ = stream.write_all(head).await;
    write_forever(&mut stream, chunk).await;
}

/// Writes one 60 MiB binary frame (under the 64 MiB a buffering reader would accept), header
/// and payload; false once the peer has gone away.
async fn write_huge_frame(stream: &mut TcpStream) -> bool {
    let mut header = vec![OP_BINARY | 0x80, 127];
    header.extend_from_slice(&(60u64 << 20).to_be_bytes());
    if stream.write_all(&header).await.is_err() {
        return false;
    }
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..60 {
        if stream.write_all(&zeros).await.is_err() {
            return false;
        }
    }
    true
}

#[tokio::test]
async fn silent_tcp_ends_at_the_default_timeout() {
    let run = check_served("ws", &[], silent).await;
    run.assert(2, "the upgrade got no answer within 10s (--timeout)");
}

#[tokio::test]
async fn silent_tls_ends_at_the_timeout() {
    let run = check_served("wss", &FAST, silent).await;
    run.assert(2, "the TLS handshake got no answer within 2s (--timeout)");
}

#[tokio::test]
async fn an_endless_head_is_cut_at_64_kib() {
    let head = b"HTTP/1.1 101 Switching Protocols\r\nX-Pad: ";
    let run = check_served("ws", &FAST, |stream| {
        answer_forever(stream, head, &[b'a'; 16 * 1024])
    })
    .await;
    run.assert(2, "no end of HTTP head in 64 KiB");
}

#[tokio::test]
async fn a_refusal_with_an_endless_body_is_read_64_kib_deep() {
    let head = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 1099511627776\r\n\r\n";
    let run = check_served("ws", &FAST, |stream| {
        answer_forever(stream, head, &[b'x'; 64 * 1024])
    })
    .await;
    run.assert(1, "fail: handshake: 403 Forbidden");
}

#[tokio::test]
async fn a_flood_of_tiny_frames_is_counted_not_kept() {
    let run = check_served("ws", &FAST, |mut stream| async move {
        if accept_upgrade(&mut stream).await.is_some() {
            // Empty binary frames, 32 Ki of them per write, and never a read.
            write_forever(&mut stream, &[OP_BINARY | 0x80, 0].repeat(32 * 1024)).await;
        }
    })
    .await;
    run.assert(1, "fail: close-answered: no Close within 1s");
}

#[tokio::test]
async fn a_huge_frame_length_is_skipped_not_buffered() {
    let run = check_served("ws", &FAST, |mut stream| async move {
        if accept_upgrade(&mut stream).await.is_some() {
            // 60 MiB frames (under the 64 MiB a buffering reader would accept), back to back.
            while write_huge_frame(&mut stream).await {}
        }
    })
    .await;
    run.assert(1, "fail: close-answered: no Close within 1s");
}

#[tokio::test]
async fn a_server_that_never_reads_gets_no_50_mb_message_in_memory() {
    let run = check_served(
        "ws",
        &[&FAST[..], &["--max-size", "50000000", "--json"]].concat(),
        |mut stream| async move {
            if accept_upgrade(&mut stream).await.is_some() {
                silent(stream).await;
            }
        },
    )
    .await;
    run.assert(1, "fail: close-answered: no Close within 1s");
    let max_size = &json(&run)["checks"][7];
    assert_eq!(max_size["id"], "max-message-size");
    assert!(
        max_size["detail"]
            .as_str()
            .unwrap()
            .contains("stopped reading after"),
        "{max_size}"
    );
}

/// Fills `listener`'s accept queue with connections nobody accepts; returns them, to hold.
async fn fill_backlog(addr: SocketAddr) -> Vec<TcpStream> {
    let mut queued = Vec::new();
    for _ in 0..8 {
        match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => queued.push(stream),
            _ => break, // the queue is full: SYNs are dropped now
        }
    }
    queued
}

#[tokio::test]
async fn a_full_backlog_is_unreachable_within_the_timeout() {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap(); // never accepts
    let addr = listener.local_addr().unwrap();
    let _queued = fill_backlog(addr).await;
    let run = check(args(&format!("ws://{addr}/"), &FAST)).await;
    run.assert(2, "no answer within 2s (--timeout)");
}

#[tokio::test]
async fn a_server_that_stops_accepting_mid_run_is_reported_hung() {
    // A tungstenite echo server that serves three connections (the check's reachability
    // probe, its handshake and close-answered), then never accepts again, its queue full.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        for _ in 0..3 {
            let (stream, _) = listener.accept().await.unwrap();
            connections.spawn(echo(stream));
        }
        let _queued = fill_backlog(addr).await;
        let _listener = listener;
        std::future::pending::<()>().await;
    });
    let run = check(args(&format!("ws://{addr}/"), &FAST)).await;
    server.abort();
    run.assert(1, "fail: server-survived: the server stopped answering");
    assert!(run.stdout.contains("close-answered"), "{}", run.stdout);
}

/// A tokio-tungstenite echo; returns the first protocol error, the kind Node `ws` emits as an
/// 'error' event (a peer that just goes away, or an I/O error, is not one).
async fn echo(stream: TcpStream) -> Option<String> {
    let mut ws = tokio_tungstenite::accept_async(stream).await.ok()?;
    while let Some(message) = ws.next().await {
        match message {
            Ok(message @ (Message::Text(_) | Message::Binary(_))) => {
                let _ = ws.send(message).await;
            }
            Ok(_) => {}
            Err(
                WsError::Io(_) | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake),
            ) => return None,
            Err(error) => return Some(error.to_string()),
        }
    }
    None
}

#[tokio::test]
async fn a_server_that_dies_on_a_malformed_frame_is_a_finding_with_every_result_kept() {
    // Node `ws` with no 'error' listener: the first protocol error takes the whole process
    // down. Here: the listener and every connection are dropped at once.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (crashed, mut crash) = tokio::sync::mpsc::channel::<String>(1);
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, _) = accepted.unwrap();
                    let crashed = crashed.clone();
                    connections.spawn(async move {
                        if let Some(error) = echo(stream).await {
                            let _ = crashed.send(error).await;
                            std::future::pending::<()>().await; // the process ends, not this task
                        }
                    });
                }
                Some(error) = crash.recv() => {
                    println!("server: died on {error}");
                    drop(listener);
                    connections.shutdown().await;
                    return;
                }
            }
        }
    });
    let run = check(args(
        &format!("ws://{addr}/"),
        &[&FAST[..], &["--json", "--with", "protocol-errors"]].concat(),
    ))
    .await;
    server.abort();
    run.assert(
        1,
        "fail: server-survived: the server stopped accepting connections (connection refused) after protocol-errors (unmasked frame)",
    );
    let json = json(&run);
    let verdicts: Vec<(&str, &str)> = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|check| {
            (
                check["id"].as_str().unwrap(),
                check["verdict"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            ("handshake", "pass"),
            ("close-answered", "pass"),
            ("close-code-echoed", "pass"),
            ("tcp-closed", "pass"),
            ("ping-answered", "pass"),
            ("keepalive", "skip"),
            ("origin", "warn"),
            ("max-message-size", "skip"),
            ("protocol-errors", "warn"),
            ("server-survived", "fail"),
        ]
    );
    let survived = &json["checks"][9];
    assert!(
        survived["fix"]
            .as_str()
            .unwrap()
            .contains("add an error handler"),
        "{survived}"
    );
    assert!(
        json["checks"][8]["detail"]
            .as_str()
            .unwrap()
            .contains("10 not sent: the server went down"),
        "{json}"
    );
    assert_eq!(json["predicted"]["chromium"]["code"], 1000);
}

/// gorilla/websocket's documented read loop, echoing: Close answered with the same code (no
/// reason), protocol errors answered 1002, but UTF-8 never validated, and a 64-bit length with
/// its top bit set answered by dropping TCP. Accepts any Origin.
async fn gorilla_read_loop(mut stream: TcpStream) {
    if accept_upgrade(&mut stream).await.is_none() {
        return;
    }
    let mut buf = BytesMut::new();
    let mut in_message = false;
    loop {
        let frame = match Frame::decode(&buf) {
            Ok(Some((frame, used))) => {
                buf.advance(used);
                frame
            }
            Ok(None) => match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            },
            Err(_) => return, // a length it cannot read: TCP dropped
        };
        let control = frame.opcode & 0x8 != 0;
        let protocol_error = frame.mask.is_none()
            || frame.rsv != 0
            || ![
                OP_CONTINUATION,
                OP_TEXT,
                OP_BINARY,
                OP_CLOSE,
                OP_PING,
                OP_PONG,
            ]
            .contains(&frame.opcode)
            || (control && (!frame.fin || frame.payload.len() > 125))
            || (frame.opcode == OP_CONTINUATION && !in_message)
            || frame
                .close_code()
                .is_some_and(|code| code < 1000 || matches!(code, 1004..=1006 | 1015));
        let reply = if protocol_error {
            Frame::close(1002, b"")
        } else {
            match frame.opcode {
                OP_CLOSE => match frame.close_code() {
                    Some(code) => Frame::close(code, b""),
                    None => Frame::new(OP_CLOSE, Vec::new()),
                },
                OP_PING => Frame::new(OP_PONG, frame.payload),
                OP_PONG => continue,
                _ => {
                    in_message = !frame.fin;
                    Frame::new(frame.opcode, frame.payload).fin(frame.fin)
                }
            }
        };
        let closing = reply.opcode == OP_CLOSE;
        let _ = stream.write_all(&reply.unmasked().encode()).await;
        if closing {
            return;
        }
    }
}

#[tokio::test]
async fn a_gorilla_read_loop_passes_with_warnings_and_fails_only_with_strict() {
    let (addr, server) = serve(gorilla_read_loop).await;
    let url = format!("ws://{addr}/");
    let run = check(args(&url, &[&FAST[..], &["--json", "--all"]].concat())).await;
    run.assert(
        0,
        "ok: nothing browsers will see; warnings: close-code-echoed, origin, protocol-errors",
    );
    let protocol = detail(&json(&run), "protocol-errors").to_owned();
    assert!(
        protocol.contains("invalid UTF-8 text → nothing (expected 1007)"),
        "{protocol}"
    );
    assert!(
        protocol.contains("64-bit length with its top bit set → TCP closed without a Close"),
        "{protocol}"
    );
    let strict = check(args(&url, &[&FAST[..], &["--strict"]].concat())).await;
    server.abort();
    strict.assert(
        1,
        "fail: close-code-echoed: 4000 came back with reason \"\"",
    );
}

#[tokio::test]
async fn skip_keeps_the_malformed_probes_away_from_a_fragile_server() {
    let errors = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = errors.clone();
    let run = check_served(
        "ws",
        &[&FAST[..], &["--skip", "protocol-errors,origin", "--json"]].concat(),
        move |stream| {
            let seen = seen.clone();
            async move {
                if echo(stream).await.is_some() {
                    seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        },
    )
    .await;
    run.assert(0, "ok: every check that ran passed");
    assert_eq!(
        detail(&json(&run), "protocol-errors"),
        "not selected (--skip)"
    );
    assert_eq!(errors.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// How long the slow-failing server takes to answer anything: just under the `--timeout` and
/// `--close-wait` it is checked with, so every probe gets its answer, late.
const SLOW_ANSWER: Duration = Duration::from_millis(8500);

/// Answers the upgrade, then every frame (Close, Ping, a malformed one) after
/// [`SLOW_ANSWER`]: with a fresh deadline for each case, a run against it took minutes.
async fn slow_failing(mut stream: TcpStream) {
    if accept_upgrade(&mut stream).await.is_none() {
        return;
    }
    let mut buf = BytesMut::new();
    loop {
        match next_frame(&mut stream, &mut buf).await {
            Ok(Some(frame)) => {
                tokio::time::sleep(SLOW_ANSWER).await;
                let reply = match frame.opcode {
                    OP_PING => Frame::new(OP_PONG, frame.payload),
                    OP_CLOSE => Frame::close(frame.close_code().unwrap_or(1000), b""),
                    _ => Frame::close(1002, b""),
                };
                let _ = stream.write_all(&reply.unmasked().encode()).await;
            }
            Ok(None) => return,
            Err(()) => {
                tokio::time::sleep(SLOW_ANSWER).await;
                let _ = stream
                    .write_all(&Frame::close(1002, b"").unmasked().encode())
                    .await;
                return;
            }
        }
    }
}

/// The client's next frame, read into `buf` as needed: `Ok(None)` when the connection ended,
/// `Err(())` for bytes that are not a frame.
async fn next_frame(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<Option<Frame>, ()> {
    loop {
        match Frame::decode(buf) {
            Ok(Some((frame, used))) => {
                buf.advance(used);
                return Ok(Some(frame));
            }
            Ok(None) => match stream.read_buf(buf).await {
                Ok(0) | Err(_) => return Ok(None),
                Ok(_) => {}
            },
            Err(_) => return Err(()),
        }
    }
}

/// `--max-time` in the test, and how far past it a run may end on a busy machine.
const MAX_TIME: Duration = Duration::from_secs(5);
const MAX_TIME_MARGIN: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_slow_failing_server_cannot_keep_a_run_past_max_time() {
    let run = check_served(
        "ws",
        &[
            "--timeout",
            "10s",
            "--close-wait",
            "9s",
            "--all",
            "--json",
            "--max-time",
            "5s",
        ],
        slow_failing,
    )
    .await;
    assert!(run.elapsed < MAX_TIME + MAX_TIME_MARGIN, "{run:#?}");
    assert!(run.peak_rss_kib < RSS_BOUND_KIB, "{run:#?}");
    // The report is what it has, and says so in its one line.
    assert_eq!(run.stderr.lines().count(), 1, "{run:#?}");
    assert!(
        run.stderr
            .contains("stopped early (--max-time 5s reached): what did not run is skip"),
        "{run:#?}"
    );
    let json = json(&run);
    let checks = json["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 10, "every check has its row: {json}");
    assert_eq!(checks[0]["verdict"], "pass", "{json}");
    for check in &checks[1..] {
        assert_eq!(check["verdict"], "skip", "{json}");
        assert!(
            check["detail"].as_str().unwrap().contains("--max-time 5s"),
            "{json}"
        );
    }
    // A skip does not fail the run.
    assert_eq!(run.status, Some(0), "{run:#?}");
}

#[tokio::test]
async fn a_default_run_leaves_a_server_that_dies_on_a_malformed_frame_alive() {
    let errors = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = errors.clone();
    let run = check_served("ws", &[&FAST[..], &["--json"]].concat(), move |stream| {
        let seen = seen.clone();
        async move {
            if echo(stream).await.is_some() {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    })
    .await;
    run.assert(0, "ok: nothing browsers will see; warnings: origin");
    let json = json(&run);
    let protocol = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["id"] == "protocol-errors")
        .unwrap();
    assert_eq!(protocol["verdict"], "skip", "{json}");
    assert_eq!(
        protocol["detail"],
        "not run by default: it sends malformed frames that can crash a server; run it with \
         --with protocol-errors"
    );
    assert_eq!(errors.load(std::sync::atomic::Ordering::SeqCst), 0);
}
