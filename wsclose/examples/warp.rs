//! warp with the fix: an echo WebSocket at `/ws` that answers every Close at once, pings and
//! drops silent peers, and closes with 1001 on SIGTERM. Timing from `WSCLOSE_*` variables.
//!
//! `cargo run -p wsclose --features warp,env --example warp -- 127.0.0.1:8080`
use futures::stream;
use tokio::signal::unix::{signal, SignalKind};
use warp::Filter;
use wsclose::{Lifecycle, Timing};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:8080".into());
    let lifecycle = Lifecycle::new().with_timing(Timing::from_env()?);
    let mut sigterm = signal(SignalKind::terminate())?;
    let websocket = warp::path("ws").and(warp::ws()).map({
        let lifecycle = lifecycle.clone();
        move |ws: warp::ws::Ws| {
            let lifecycle = lifecycle.clone();
            // Bounded write buffer, messages (64 KiB) and frames; warp cannot set the read buffer.
            let ws = wsclose::warp::recommended(ws);
            ws.on_upgrade(move |socket| async move {
                // An echo socket: nothing pushed, every message sent back.
                wsclose::warp::serve(socket, &lifecycle, stream::pending(), Some).await;
            })
        }
    });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let stop = async move { sigterm.recv().await.unwrap_or_default() };
    // Stops accepting on SIGTERM; upgraded sockets are not warp's to wait for,
    warp::serve(websocket)
        .incoming(listener)
        .graceful(stop)
        .run()
        .await;
    // so: Close 1001 to every socket, and wait until each has answered or timed out.
    lifecycle.shutdown().await;
    Ok(())
}
