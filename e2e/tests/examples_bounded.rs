//! The programs people copy hold bounded memory against the attacks of issue 33: the README's
//! axum program (`wsclose/examples/axum.rs`, whose handler is the README's, as checked here),
//! the warp example and the tokio-tungstenite example, each with the recommended socket
//! configuration (`wsclose::config`).
//!
//! Each attack opens its sockets, reads the example's RSS, then runs: every socket writes its
//! frames while it reads for the server's answer, and stops writing at the server's Close.
//! A task samples the RSS meanwhile. With the configuration the first frame is refused at its
//! header (its length is over the 64 KiB frame limit) with Close 1009; the whole payload is
//! written only to a server that takes it, so the test is quick when it passes.
//!
//! Without the configuration (tungstenite's defaults: 64 MiB messages in 16 MiB frames, a write
//! buffer with no bound), each attack makes the example hold hundreds of MiB, and the test
//! fails on the RSS bound and on the missing Close.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use wsclose_e2e::raw::{Frame, RawClient, OP_BINARY, OP_CLOSE};
use wsclose_e2e::server::{rss_kib_of, workspace_root};
use wsclose_e2e::{heavy_test_guard, raise_fd_limit, ServerProcess, IO_TIMEOUT};

const MIB: usize = 1 << 20;
/// How much an attack may raise the example's RSS, in KiB (issue 33: at most 16 MiB).
const RSS_GROWTH_BOUND_KIB: u64 = 16 * 1024;
/// How often the RSS is sampled while an attack runs.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);
/// How long a socket may take to write its whole attack to a server that takes it (a debug
/// build of an example unmasks a few hundred MiB a second).
const WRITE_DEADLINE: Duration = Duration::from_secs(60);
/// How long a socket whose echo has begun stays open unread, while the RSS is sampled: the
/// server holds the echo for its `write_timeout` (10 s) meanwhile.
const ECHO_HOLD: Duration = Duration::from_secs(1);
/// Close 1009 (message too big) and 1008 (policy: a message refused by a budget or deadline).
const REFUSED: [u16; 2] = [1009, 1008];

/// The frame length of the unfinished-message and echo attacks.
const FRAME_LEN: usize = 8 * MIB;
/// Sockets that each send an unfinished message.
const UNFINISHED_SOCKETS: usize = 8;
/// The unfinished message: 7 frames of 8 MiB with a Pong between them, and no final frame.
const UNFINISHED_LEN: usize = 56 * MIB;
/// Sockets that each send a complete message to be echoed, and never read.
const ECHO_SOCKETS: usize = 8;
/// The echoed message: 7 frames of 8 MiB and a final one of 4 MiB.
const ECHO_LEN: usize = 60 * MIB;
/// Sockets that each send one frame and stop a byte short of its end.
const BIG_FRAME_SOCKETS: usize = 16;
/// That frame's length: tungstenite's default `max_frame_size`.
const BIG_FRAME_LEN: usize = 16 * MIB;

/// The first thing a socket read from the server.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// A Close frame, with its code.
    Close(Option<u16>),
    /// The start of a data frame: the echo has begun.
    Data,
    /// EOF before any frame.
    Eof,
    /// A read error (a reset, say).
    Error(std::io::ErrorKind),
    /// Bytes that are no frame.
    Garbage(String),
    /// Nothing within `IO_TIMEOUT` after the writes ended.
    Nothing,
}

/// The encoded frames one socket writes, in order.
type Attack = Arc<Vec<Arc<[u8]>>>;

/// `message_len` bytes in binary frames of [`FRAME_LEN`] (the last one shorter), with a Pong
/// after each when `pongs`, and the final frame's FIN only when `finished` (else the message
/// never ends: its last frame is left out).
fn fragmented(message_len: usize, finished: bool, pongs: bool) -> Attack {
    let mut lengths = Vec::new();
    let mut left = message_len;
    while left > 0 {
        lengths.push(left.min(FRAME_LEN));
        left -= left.min(FRAME_LEN);
    }
    // One encoding per distinct frame, shared by every socket.
    let first: Arc<[u8]> = Frame::binary(vec![b'x'; lengths[0]])
        .fin(false)
        .encode()
        .into();
    let middle: Arc<[u8]> = Frame::continuation(vec![b'x'; FRAME_LEN])
        .fin(false)
        .encode()
        .into();
    let pong: Arc<[u8]> = Frame::pong(b"still here".to_vec()).encode().into();
    let mut frames = vec![first];
    for (index, &len) in lengths.iter().enumerate().skip(1) {
        if pongs {
            frames.push(pong.clone());
        }
        let fin = finished && index == lengths.len() - 1;
        frames.push(if !fin && len == FRAME_LEN {
            middle.clone()
        } else {
            Frame::continuation(vec![b'x'; len])
                .fin(fin)
                .encode()
                .into()
        });
    }
    Arc::new(frames)
}

/// One binary frame of `len` bytes, all but its last byte.
fn frame_a_byte_short(len: usize) -> Attack {
    let encoded = Frame::binary(vec![b'x'; len]).encode();
    Arc::new(vec![encoded[..encoded.len() - 1].into()])
}

/// Reads until the server's first frame: a Close (its code), or the first byte of a data frame
/// (then reads no further, so an echo stays in the server). Pings are skipped.
async fn first_answer(read: &mut (impl AsyncRead + Unpin)) -> Answer {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 256];
    loop {
        if buf.first().is_some_and(|byte| byte & 0x0F <= OP_BINARY) {
            return Answer::Data;
        }
        match Frame::decode(&buf) {
            Ok(Some((frame, _))) if frame.opcode == OP_CLOSE => {
                return Answer::Close(frame.close_code())
            }
            Ok(Some((_, used))) => {
                buf.drain(..used);
                continue;
            }
            Ok(None) => {}
            Err(error) => return Answer::Garbage(format!("{error:#}")),
        }
        match read.read(&mut chunk).await {
            Ok(0) => return Answer::Eof,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(error) => return Answer::Error(error.kind()),
        }
    }
}

/// Writes `attack` while reading for the server's answer, and stops writing at it. Returns
/// the client (still connected, so whatever the server holds for it stays held) and the answer.
async fn run_attack(mut client: RawClient, attack: Attack) -> (RawClient, Answer) {
    let answer = {
        let (mut read, mut write) = client.stream_mut().split();
        let writing = async {
            for frame in attack.iter() {
                write.write_all(frame).await?;
            }
            write.flush().await
        };
        let reading = first_answer(&mut read);
        tokio::pin!(writing, reading);
        tokio::select! {
            answer = &mut reading => answer,
            // Written, refused (the server closed) or stuck: the answer may still come.
            _ = tokio::time::timeout(WRITE_DEADLINE, &mut writing) => {
                tokio::time::timeout(IO_TIMEOUT, &mut reading)
                    .await
                    .unwrap_or(Answer::Nothing)
            }
        }
    };
    if answer == Answer::Data {
        tokio::time::sleep(ECHO_HOLD).await;
    }
    (client, answer)
}

/// Starts `example`, opens `sockets` sockets on `/ws`, runs `attack` on all of them at once,
/// and checks that the RSS grew by at most [`RSS_GROWTH_BOUND_KIB`] and that every socket was
/// answered with Close 1009 or 1008.
async fn attack_example(example: &str, what: &str, sockets: usize, attack: Attack) {
    let _heavy = heavy_test_guard().await;
    raise_fd_limit();
    let server = ServerProcess::start_example(example, &[]).await;
    let mut clients = Vec::new();
    for _ in 0..sockets {
        clients.push(RawClient::connect(server.addr(), "/ws").await);
    }
    let baseline = server.rss_kib();
    let peak = Arc::new(AtomicU64::new(baseline));
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let sampler = tokio::spawn({
        let (peak, pid) = (peak.clone(), server.pid());
        async move {
            loop {
                if let Some(rss) = rss_kib_of(pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = tokio::time::sleep(SAMPLE_EVERY) => {}
                }
            }
        }
    });
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|client| tokio::spawn(run_attack(client, attack.clone())))
        .collect();
    let mut answers = Vec::new();
    let mut held = Vec::new();
    for task in tasks {
        let (client, answer) = task.await.expect("attack task");
        answers.push(answer);
        held.push(client);
    }
    // Every socket is still open here: one last sample, then the sampler stops.
    peak.fetch_max(server.rss_kib(), Ordering::Relaxed);
    let _ = stop.send(());
    sampler.await.expect("sampler");
    drop(held);
    let peak = peak.load(Ordering::Relaxed);
    let growth = peak.saturating_sub(baseline);
    println!(
        "{example}, {what}: RSS {baseline} KiB before, peak {peak} KiB (+{} MiB); answers {answers:?}",
        growth / 1024
    );
    assert!(
        growth <= RSS_GROWTH_BOUND_KIB,
        "{example}, {what}: RSS grew by {growth} KiB (bound {RSS_GROWTH_BOUND_KIB} KiB)"
    );
    for answer in &answers {
        assert!(
            matches!(answer, Answer::Close(Some(code)) if REFUSED.contains(code)),
            "{example}, {what}: expected Close 1009 or 1008, got {answers:?}"
        );
    }
}

#[tokio::test]
async fn axum_example_drops_unfinished_messages() {
    attack_example(
        "axum",
        "8 unfinished 56 MiB messages",
        UNFINISHED_SOCKETS,
        fragmented(UNFINISHED_LEN, false, true),
    )
    .await;
}

#[tokio::test]
async fn axum_example_refuses_echoes_it_would_hold() {
    attack_example(
        "axum",
        "8 complete 60 MiB echoes, never read",
        ECHO_SOCKETS,
        fragmented(ECHO_LEN, true, false),
    )
    .await;
}

#[tokio::test]
async fn warp_example_drops_unfinished_messages() {
    attack_example(
        "warp",
        "8 unfinished 56 MiB messages",
        UNFINISHED_SOCKETS,
        fragmented(UNFINISHED_LEN, false, true),
    )
    .await;
}

#[tokio::test]
async fn tokio_tungstenite_example_drops_unfinished_frames() {
    attack_example(
        "tokio_tungstenite",
        "16 unfinished 16 MiB frames",
        BIG_FRAME_SOCKETS,
        frame_a_byte_short(BIG_FRAME_LEN),
    )
    .await;
}

/// The text of `async fn upgrade` up to its closing brace, in the file at `path`.
fn upgrade_handler(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{path:?}: {err}"));
    let start = text
        .find("async fn upgrade(")
        .unwrap_or_else(|| panic!("no `async fn upgrade(` in {path:?}"));
    let len = text[start..]
        .find("\n}\n")
        .unwrap_or_else(|| panic!("no end of `upgrade` in {path:?}"));
    text[start..start + len + 2].to_owned()
}

/// The axum example attacked above is the README's program: its handler, which carries the
/// recommended configuration, is the same text in both READMEs, in the example, and in the
/// program `make bench` measures (`bench/src/bin/axum-program.rs`).
#[test]
fn axum_example_handler_is_the_readmes() {
    let root = workspace_root();
    let example = upgrade_handler(&root.join("wsclose/examples/axum.rs"));
    assert!(
        example.contains("wsclose::axum::recommended(ws)"),
        "{example}"
    );
    for copy in [
        "README.md",
        "wsclose/README.md",
        "bench/src/bin/axum-program.rs",
    ] {
        assert_eq!(
            upgrade_handler(&root.join(copy)),
            example,
            "{copy}'s `upgrade` differs from examples/axum.rs's"
        );
    }
}
