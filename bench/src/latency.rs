//! Sequential close handshakes with tokio-tungstenite, and the loopback TCP round trip that
//! bounds them from below.
//!
//! Both run on a current-thread runtime, one operation at a time, so each sample is one
//! request/response over loopback and nothing else.

use std::time::{Duration, Instant};

use crate::results::CloseHandshake;
use anyhow::{bail, Context};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;

use crate::report::{ms, Figure, Report};
use crate::stats::Samples;
use crate::{Options, TARGET_BROWSER_P50_MS, TARGET_CLOSE_P50_MS, TARGET_CLOSE_RTT_RATIO};

/// Handshakes and round trips run before the measured ones, to warm caches and the allocator.
const WARMUP: usize = 50;

/// The payload of the Ping that proves the server reads before a close handshake is timed.
const READY: &[u8; 5] = b"ready";

/// How long a timed connection idles between the Pong and its Close (`--close-idle-ms`), so the
/// close is timed on an idle connection, as a browser closes one: without it, a server that
/// hands the upgraded connection from its HTTP task to a task of its own may still be busy
/// with that when the Ping arrives, and the Close then lands on its other worker thread.
pub const CLOSE_IDLE: Duration = Duration::from_millis(1);

/// The largest message or frame the timing client takes from a server (it expects a Pong and
/// a Close, 125 bytes at most each, and the echo of nothing).
const MAX_MESSAGE: usize = 64 * 1024;

/// How far the timing client's write buffer may grow beyond one message: the Pong and Close
/// frames it queues beside it.
const WRITE_BUFFER_SLACK: usize = 1024;

/// Bound on one connect-and-close, so a broken server fails the run instead of hanging it.
const ONE_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The timings of one connect-and-close.
#[derive(Debug, Clone, Copy)]
pub struct CloseTiming {
    /// From just before sending Close until the server's Close frame was read.
    pub to_close_frame: Duration,
    /// From just before sending Close until the server closed TCP (read returned 0).
    pub to_eof: Duration,
}

/// Runs `count` sequential close handshakes against `url`, each on a fresh connection that
/// the server has shown it reads (a Ping answered) and that then idled for `idle`, after a
/// warm-up.
pub async fn close_handshakes(
    url: &str,
    count: usize,
    idle: Duration,
) -> anyhow::Result<Vec<CloseTiming>> {
    let mut each = close_handshakes_interleaved(&[url], count, idle).await?;
    Ok(each.pop().unwrap_or_default())
}

/// [`close_handshakes`] against several servers at once, interleaved: one handshake with each
/// in turn, so that whatever the machine does meanwhile falls on all of them alike. Returns
/// each url's timings, in the order of `urls`.
pub async fn close_handshakes_interleaved(
    urls: &[&str],
    count: usize,
    idle: Duration,
) -> anyhow::Result<Vec<Vec<CloseTiming>>> {
    let mut timings = vec![Vec::with_capacity(count); urls.len()];
    for i in 0..WARMUP + count {
        for (url, timings) in urls.iter().zip(&mut timings) {
            let bound = ONE_CLOSE_TIMEOUT + idle;
            let timing = tokio::time::timeout(bound, connect_and_close(url, idle))
                .await
                .with_context(|| {
                    format!("close handshake {i} with {url} took longer than {bound:?}")
                })?
                .with_context(|| format!("close handshake {i} with {url}"))?;
            if i >= WARMUP {
                timings.push(timing);
            }
        }
    }
    Ok(timings)
}

/// Each round's close-handshake p50 (Close sent → Close received, in ms) for every url:
/// `rounds` runs of [`close_handshakes_interleaved`] with `count` handshakes each, the order of
/// the urls rotated by one each round so that no server always goes first. Returns, per url in
/// the order of `urls`, its p50 in each round.
pub async fn p50_rounds(
    urls: &[&str],
    rounds: usize,
    count: usize,
    idle: Duration,
) -> anyhow::Result<Vec<Vec<f64>>> {
    let mut p50s = vec![Vec::with_capacity(rounds); urls.len()];
    for round in 0..rounds {
        let order = rotated(round, urls.len());
        let ordered: Vec<&str> = order.iter().map(|&index| urls[index]).collect();
        let timings = close_handshakes_interleaved(&ordered, count, idle).await?;
        for (&index, timings) in order.iter().zip(timings) {
            let samples = Samples::from_durations(timings.iter().map(|t| t.to_close_frame));
            p50s[index].push(samples.quantile(0.5));
        }
    }
    Ok(p50s)
}

/// The indices `0..count` rotated left by `round`: the order of the servers in that round, so
/// that no server always goes first.
pub fn rotated(round: usize, count: usize) -> Vec<usize> {
    (0..count).map(|offset| (round + offset) % count).collect()
}

async fn connect_and_close(url: &str, idle: Duration) -> anyhow::Result<CloseTiming> {
    // tungstenite zero-fills its whole read buffer (128 KiB by default) before every read;
    // with the default the client would time its own memset twice per sample.
    // A server that sends more than a Close or a Pong is answered with an error, not buffered:
    // `close-handshakes` talks to servers anyone starts.
    // Its writes are bounded as the server's are: a server that floods Pings and reads nothing
    // would otherwise grow the queue of Pongs without limit (880 MB in 5 s); with a bounded
    // write buffer tungstenite keeps only the latest Pong pending.
    let config = WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_MESSAGE + WRITE_BUFFER_SLACK)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let (mut ws, _response) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
        .await
        .with_context(|| format!("connect to {url}"))?;
    // The clock starts once the server is reading this connection and has had `idle` to finish
    // whatever it was doing for it: a Ping answered proves its read loop runs. Without it, a
    // Close sent the moment the 101 arrives also times the server's hand-over from its HTTP
    // code to its socket task, which is the upgrade, not the close handshake.
    ws.send(Message::Ping(READY.as_slice().into())).await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Pong(data))) if data.as_ref() == READY.as_slice() => break,
            Some(Ok(_)) => continue,
            Some(Err(error)) => return Err(error).context("read the Pong before the Close"),
            None => bail!("connection ended before the Pong"),
        }
    }
    tokio::time::sleep(idle).await;
    let close = CloseFrame {
        code: CloseCode::Normal,
        reason: "bench".into(),
    };
    let started = Instant::now();
    ws.send(Message::Close(Some(close))).await?;
    let to_close_frame = loop {
        match ws.next().await {
            Some(Ok(Message::Close(frame))) => {
                let code = frame.map(|frame| u16::from(frame.code));
                if code != Some(1000) {
                    bail!("server answered Close 1000 with {code:?}");
                }
                break started.elapsed();
            }
            Some(Ok(_)) => continue,
            Some(Err(error)) => return Err(error).context("read the server's Close"),
            None => bail!("connection ended before the server's Close"),
        }
    };
    // The handshake is over; what is left is the server dropping the TCP connection.
    let mut tcp = ws.into_inner();
    let mut rest = [0u8; 64];
    let read = tcp.read(&mut rest).await.context("read to EOF")?;
    if read != 0 {
        bail!("{read} bytes after the close handshake");
    }
    Ok(CloseTiming {
        to_close_frame,
        to_eof: started.elapsed(),
    })
}

/// Where the echo side of the TCP ping-pong runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A task on the caller's current-thread runtime: nobody ever sleeps, so each sample is
    /// the kernel's loopback path plus tokio, and nothing else. The physical floor.
    SameThread,
    /// Its own thread and runtime, like a server in another process: each sample also pays
    /// for waking a sleeping peer (and, on an idle VM, its idle vCPU) twice.
    OtherThread,
}

/// Measures `count` loopback round trips of a 2-byte message between two tokio `TcpStream`s
/// with `TCP_NODELAY`, the echo side running as `peer` says. Call it inside a current-thread
/// runtime.
pub async fn tcp_round_trips(count: usize, peer: Peer) -> anyhow::Result<Vec<Duration>> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("bind echo listener")?;
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let echo = match peer {
        Peer::SameThread => {
            let listener = TcpListener::from_std(listener)?;
            Echo::Task(tokio::spawn(echo(listener)))
        }
        Peer::OtherThread => Echo::Thread(std::thread::spawn(move || -> anyhow::Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move { echo(TcpListener::from_std(listener)?).await })
        })),
    };

    let mut stream = TcpStream::connect(addr).await.context("connect to echo")?;
    stream.set_nodelay(true)?;
    let mut buf = [0u8; 2];
    let warmup = WARMUP * 20;
    let mut rtts = Vec::with_capacity(count);
    for i in 0..warmup + count {
        let started = Instant::now();
        stream.write_all(b"hi").await?;
        stream.read_exact(&mut buf).await?;
        if i >= warmup {
            rtts.push(started.elapsed());
        }
    }
    drop(stream);
    match echo {
        Echo::Task(task) => task.await??,
        Echo::Thread(thread) => thread
            .join()
            .map_err(|_| anyhow::anyhow!("echo thread panicked"))??,
    }
    Ok(rtts)
}

enum Echo {
    Task(tokio::task::JoinHandle<anyhow::Result<()>>),
    Thread(std::thread::JoinHandle<anyhow::Result<()>>),
}

/// Accepts one connection and echoes 2-byte messages until EOF.
async fn echo(listener: TcpListener) -> anyhow::Result<()> {
    let (mut stream, _) = listener.accept().await?;
    stream.set_nodelay(true)?;
    let mut buf = [0u8; 2];
    loop {
        match stream.read_exact(&mut buf).await {
            Ok(_) => stream.write_all(&buf).await?,
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(error) => return Err(error.into()),
        }
    }
}

/// Phases 1–3: TCP RTT, close handshakes and the browser, on one current-thread runtime and
/// one server (these connections turn pushing off with `push_ms=0`).
pub fn phase(options: &Options, report: &mut Report) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return report.error("runtime", "tokio runtime", &error.into(), ""),
    };

    // 1. The physical limit.
    eprintln!(
        "bench: [1/4] loopback TCP RTT, {} round trips, echo on the same thread and on another",
        options.rtt_iterations
    );
    let rtt_p50 = match runtime.block_on(tcp_round_trips(options.rtt_iterations, Peer::SameThread))
    {
        Ok(rtt) => {
            report.rtt = Samples::from_durations(rtt);
            let summary = report.rtt.summary();
            report.figures.push(Figure::info(
                "tcp_rtt_p50",
                "loopback TCP RTT p50 (2-byte ping-pong, nodelay)",
                Some(summary.p50_ms),
                "ms",
                ms(summary.p50_ms),
            ));
            report.figures.push(Figure::info(
                "tcp_rtt_p99",
                "loopback TCP RTT p99",
                Some(summary.p99_ms),
                "ms",
                ms(summary.p99_ms),
            ));
            let p50_ms = summary.p50_ms;
            report.details.tcp_rtt = Some(summary);
            Some(p50_ms)
        }
        Err(error) => {
            report.error("tcp_rtt_p50", "loopback TCP RTT p50", &error, "");
            None
        }
    };
    match runtime.block_on(tcp_round_trips(options.rtt_iterations, Peer::OtherThread)) {
        Ok(rtt) => {
            report.rtt_threads = Samples::from_durations(rtt);
            let summary = report.rtt_threads.summary();
            report.figures.push(Figure::info(
                "tcp_rtt_threads_p50",
                "loopback TCP RTT p50, echo on another thread",
                Some(summary.p50_ms),
                "ms",
                format!("{} (p99 {})", ms(summary.p50_ms), ms(summary.p99_ms)),
            ));
            report.details.tcp_rtt_other_thread = Some(summary);
        }
        Err(error) => report.error(
            "tcp_rtt_threads_p50",
            "loopback TCP RTT p50, echo on another thread",
            &error,
            "",
        ),
    }

    let close_target = format!("≤ {TARGET_CLOSE_P50_MS} ms");
    let server = match runtime.block_on(crate::start_server(&options.server, &crate::server_args()))
    {
        Ok(server) => server,
        Err(error) => {
            let error = error.context("start the server");
            report.error(
                "close_handshake_p50",
                "close handshake p50",
                &error,
                &close_target,
            );
            let target = format!("≤ {TARGET_BROWSER_P50_MS} ms");
            report.error("browser_close_p50", "browser close p50", &error, &target);
            return;
        }
    };

    // 2. Native close handshakes.
    eprintln!(
        "bench: [2/4] close handshake, {} sequential on /ws/drain?push_ms=0",
        options.handshakes
    );
    let url = server.ws_url("/ws/drain?push_ms=0");
    match runtime.block_on(close_handshakes(
        &url,
        options.handshakes,
        options.close_idle,
    )) {
        Ok(timings) => {
            report.close = Samples::from_durations(timings.iter().map(|t| t.to_close_frame));
            report.close_to_fin = Samples::from_durations(timings.iter().map(|t| t.to_eof));
            let close = report.close.summary();
            let fin = report.close_to_fin.summary();
            report.figures.push(Figure::checked(
                "close_handshake_p50",
                format!(
                    "close handshake p50 ({} sequential, Close → Close)",
                    close.count
                ),
                close.p50_ms,
                "ms",
                ms(close.p50_ms),
                close_target,
                close.p50_ms <= TARGET_CLOSE_P50_MS,
            ));
            if let Some(rtt_p50) = rtt_p50 {
                let ratio = close.p50_ms / rtt_p50;
                report.figures.push(Figure::checked(
                    "close_to_rtt_ratio",
                    "close handshake p50 / TCP RTT p50",
                    ratio,
                    "x",
                    format!("{ratio:.2}×"),
                    format!("≤ {TARGET_CLOSE_RTT_RATIO}×"),
                    ratio <= TARGET_CLOSE_RTT_RATIO,
                ));
            }
            if !report.rtt_threads.is_empty() {
                // The same exchange with the peer's wake-up included, as the server's is.
                let ratio = close.p50_ms / report.rtt_threads.quantile(0.5);
                report.figures.push(Figure::info(
                    "close_to_rtt_threads_ratio",
                    "close handshake p50 / TCP RTT p50 across threads",
                    Some(ratio),
                    "x",
                    format!("{ratio:.2}×"),
                ));
            }
            for (key, name, value) in [
                ("close_handshake_p90", "close handshake p90", close.p90_ms),
                ("close_handshake_p99", "close handshake p99", close.p99_ms),
                ("close_handshake_max", "close handshake max", close.max_ms),
                (
                    "close_to_fin_p50",
                    "Close sent → server's TCP FIN, p50",
                    fin.p50_ms,
                ),
                (
                    "close_to_fin_p99",
                    "Close sent → server's TCP FIN, p99",
                    fin.p99_ms,
                ),
            ] {
                report
                    .figures
                    .push(Figure::info(key, name, Some(value), "ms", ms(value)));
            }
            report.details.close_handshake = Some(CloseHandshake {
                to_close_frame: close,
                to_fin: fin,
                samples_ms: report.close.sorted_ms().to_vec(),
            });
        }
        Err(error) => report.error(
            "close_handshake_p50",
            "close handshake p50",
            &error,
            &close_target,
        ),
    }

    // 3. The browser.
    crate::browser::phase(options, &runtime, &server, &url, report);
    crate::save_log(&server, &options.out.join("server-latency.log"));
}
