//! Sequential close handshakes with tokio-tungstenite, and the loopback TCP round trip that
//! bounds them from below.
//!
//! Both run on a current-thread runtime, one operation at a time, so each sample is one
//! request/response over loopback and nothing else.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;

/// Handshakes and round trips run before the measured ones, to warm caches and the allocator.
const WARMUP: usize = 50;

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

/// Runs `count` sequential connect + close handshakes against `url` (after a warm-up).
pub async fn close_handshakes(url: &str, count: usize) -> anyhow::Result<Vec<CloseTiming>> {
    let mut timings = Vec::with_capacity(count);
    for i in 0..WARMUP + count {
        let timing = tokio::time::timeout(ONE_CLOSE_TIMEOUT, connect_and_close(url))
            .await
            .with_context(|| format!("close handshake {i} took longer than {ONE_CLOSE_TIMEOUT:?}"))?
            .with_context(|| format!("close handshake {i}"))?;
        if i >= WARMUP {
            timings.push(timing);
        }
    }
    Ok(timings)
}

async fn connect_and_close(url: &str) -> anyhow::Result<CloseTiming> {
    // tungstenite zero-fills its whole read buffer (128 KiB by default) before every read;
    // with the default the client would time its own memset twice per sample.
    let config = WebSocketConfig::default().read_buffer_size(4 * 1024);
    let (mut ws, _response) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
        .await
        .with_context(|| format!("connect to {url}"))?;
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
