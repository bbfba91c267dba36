//! The honest floor for "what the fix costs": a bare tokio-tungstenite echo server that reads
//! until the stream ends, with nothing else (no pings, no deadlines, no shutdown), for
//! `make bench`. Usage: `bare-peer ADDR` (port 0 picks one); prints `listening on http://IP:PORT`.

use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// The same read buffer as wsclose's recommended one (`wsclose::config::READ_BUFFER_SIZE`),
/// written out so that the floor depends on nothing of the code it measures: the RSS figures
/// then compare the lifecycle and not tungstenite's 128 KiB default buffer.
const READ_BUFFER_SIZE: usize = 2 * 1024;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: bare-peer ADDR"))?;
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        tokio::spawn(async move {
            let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER_SIZE);
            let accepted = tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await;
            let Ok(mut socket) = accepted else {
                return;
            };
            // Reading answers Ping and Close; the stream ends after the close handshake.
            while let Some(Ok(message)) = socket.next().await {
                if (message.is_text() || message.is_binary()) && socket.send(message).await.is_err()
                {
                    return;
                }
            }
        });
    }
}
