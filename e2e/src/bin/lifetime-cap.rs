//! A TCP relay that ends every connection CAP after it accepted it, whatever flows through it:
//! a lifetime cap, as Google Cloud's load balancer puts on a WebSocket (its backend service
//! timeout). None of the four Debian proxies the tests start has such a setting: measured,
//! nginx's, HAProxy's, Apache's and Caddy's timeouts are all reset by traffic (see
//! `e2e/src/proxy/`), so this stands in for the hop that has one.
//!
//! ```text
//! lifetime-cap ADDR UPSTREAM CAP        (port 0 picks a free port; CAP as humantime: 3s)
//! ```
//!
//! Prints `listening on http://IP:PORT` once it listens. At CAP it drops both sockets, so the
//! client and the upstream each see TCP end without a Close frame.

use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, upstream, cap] = &args[..] else {
        anyhow::bail!("usage: lifetime-cap ADDR UPSTREAM CAP");
    };
    let cap = humantime::parse_duration(cap).context("CAP")?;
    let listener = TcpListener::bind(addr.as_str())
        .await
        .with_context(|| format!("listen on {addr}"))?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (client, _) = listener.accept().await?;
        tokio::spawn(relay(client, upstream.clone(), cap));
    }
}

/// Copies both ways between `client` and a new connection to `upstream` until either side
/// ends or `cap` has passed since the accept; then both sockets drop.
async fn relay(mut client: TcpStream, upstream: String, cap: Duration) {
    let _ = tokio::time::timeout(cap, async {
        let mut server = TcpStream::connect(upstream).await?;
        tokio::io::copy_bidirectional(&mut client, &mut server).await
    })
    .await;
}
