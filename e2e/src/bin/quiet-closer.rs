//! A WebSocket server that drops quiet clients with a Close frame, as some applications do: a
//! client that sends nothing (no message, no Ping, no Pong) for IDLE gets Close(4000, "idle")
//! and, once it answers (or after IDLE more), the end of TCP. It never pings, and echoes
//! nothing.
//!
//! ```text
//! quiet-closer ADDR IDLE        (port 0 picks a free port; IDLE as humantime: 3s)
//! ```
//!
//! Prints `listening on http://IP:PORT` once it listens; serves every path
//! (`tests/idle.rs`: the `server-drops-quiet` case).

use std::time::Duration;

use anyhow::Context;
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// The Close code a quiet client gets: one of the private range, so a test can tell it from
/// any code a library sends on its own.
const IDLE_CODE: u16 = 4000;
/// Its reason.
const IDLE_REASON: &str = "idle";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, idle] = &args[..] else {
        anyhow::bail!("usage: quiet-closer ADDR IDLE");
    };
    let idle = humantime::parse_duration(idle).context("IDLE")?;
    let listener = TcpListener::bind(addr.as_str())
        .await
        .with_context(|| format!("listen on {addr}"))?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(serve(stream, idle));
    }
}

/// One connection: reads until the peer is quiet for `idle`, then closes it.
async fn serve(stream: TcpStream, idle: Duration) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    loop {
        match tokio::time::timeout(idle, ws.next()).await {
            // Any frame from the peer counts as activity (tungstenite answers its Pings).
            Ok(Some(Ok(message))) if !message.is_close() => {}
            // The peer closed, or the connection failed: tungstenite has answered the Close.
            Ok(_) => return,
            Err(_) => break,
        }
    }
    let close = CloseFrame {
        code: CloseCode::from(IDLE_CODE),
        reason: IDLE_REASON.into(),
    };
    if ws.send(Message::Close(Some(close))).await.is_err() {
        return;
    }
    // The closing handshake: wait for the peer's Close, at most `idle` more.
    let _ = tokio::time::timeout(idle, async { while ws.next().await.is_some() {} }).await;
}
