//! End-to-end test harness for `wsclose-server`.
//!
//! Every test in `e2e/tests/` runs the real server binary, the way a user runs it: on
//! `127.0.0.1:0`, reading the port from the one line it prints to stdout. This crate holds what
//! those tests share.
//!
//! # Layout
//! - [`server`]: [`ServerProcess`] builds the binary once per test process, spawns it, parses the
//!   listening line, sends signals, reads RSS, and kills the child in `Drop` so a failing test
//!   never leaves a server behind.
//! - [`raw`]: the raw-frame WebSocket client of `wsclose-check`, re-exported: the HTTP upgrade
//!   with any headers, a frame encoder that can break every rule (unmasked, RSV bits, reserved
//!   opcodes, oversized control frames), and a decoder that reads the server's Close code.
//!   [`connect_stalling`] adds a client socket built to stall.
//! - [`ws`]: helpers around `tokio-tungstenite`, the well-behaved client: connect, close and wait
//!   for the echo, parse ticks, check that a server is still healthy.
//! - [`cluster`]: nginx in front of two servers through `deploy/serve-cluster.sh`, killed as a
//!   process group on drop.
//! - [`nginx`]: nginx alone in front of one address, with a configuration line of the test's
//!   (the deploy cases: one instance behind the proxy, a reload), killed on drop.
//! - [`http`]: `GET` through hyper's HTTP/1.1 client, and `/metrics` parsed with
//!   prometheus-parse.
//! - [`page`]: [`page::DemoPage`], the demo page as a page object driven over WebDriver
//!   (fantoccini), which the page tests (`tests/demo_page.rs`) share.
//! - [`idle`]: `wsclose-check --idle` run as a user runs it, its JSON read into the contract's
//!   types.
//! - [`proxy`]: nginx, HAProxy, Apache (`mod_proxy_wstunnel`) and Caddy, each started in front
//!   of one upstream with a short idle timeout, killed on drop (`tests/idle.rs`).
//! - [`quiet_tab`]: a quiet tab in a real browser: the `close` event of a WebSocket that sends
//!   nothing, or that it was still open.
//! - [`peers`]: the other servers (gorilla/websocket, Node `ws`, Python `websockets`) that the
//!   bench measures and `tests/check_peers.rs` checks, installed by `make setup-peers`.
//!
//! # Running
//! `cargo test -p wsclose-e2e` builds the server (debug; set `WSCLOSE_E2E_RELEASE=1` for
//! `--release`) and runs every test. Set `WSCLOSE_E2E_VERBOSE=1` to stream the servers' stderr
//! live; otherwise it is captured and printed only when a test fails.

pub mod cluster;
pub mod http;
pub mod idle;
pub mod netns;
pub mod nginx;
pub mod page;
pub mod peers;
pub mod proxy;
pub mod quiet_tab;
pub mod server;
pub use wsclose_check::raw;
pub mod ws;

pub use http::{http_get, http_get_from, HttpResponse, MetricsSnapshot};
pub use page::DemoPage;
pub use raw::{Frame, RawClient, UpgradeResponse};
pub use server::{server_binary, ServerProcess};

use std::time::Duration;

/// The bound every read in the harness uses unless a test says otherwise: generous, so that a
/// loaded 2-core CI machine does not turn a slow answer into a failure, yet short enough that a
/// missing answer fails the test instead of hanging it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The workspace README's code (the smallest axum server on `wsclose`), compiled as doc tests:
/// `cargo test -p wsclose-e2e --doc`.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct RootReadme;

static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Serialises the heavy tests (hundreds of sockets, memory measurements) inside one test binary.
///
/// `cargo test` runs the tests of one binary in parallel threads, and the binaries one after the
/// other. A test that opens 1,000 sockets or measures RSS takes this guard first, so at most one
/// such test runs at a time and the figures are not skewed by a neighbour.
pub async fn heavy_test_guard() -> tokio::sync::MutexGuard<'static, ()> {
    HEAVY.lock().await
}

/// Raises this process's open-file limit as far as the hard limit allows, and returns the new soft
/// limit. The server is spawned afterwards, so it inherits the raised limit.
pub fn raise_fd_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).expect("raise RLIMIT_NOFILE")
}

/// Upgrades `path` over a socket built to stall quickly when the test stops reading: the
/// smallest receive buffer the kernel allows, and a 536-byte MSS advertised in the SYN.
///
/// On loopback the MSS is about 64 KiB, and the kernel grows the server's send buffer with
/// the congestion window, up to `tcp_wmem` max (4 MiB): at one 40-byte tick per millisecond
/// that takes minutes to fill. With a tiny receive window few segments are ever acknowledged,
/// the window stays small, and so does the server's send buffer (tens of KiB): its writes
/// block within a second, which is what a slow-reader test needs. (Measured: with these two
/// settings 20 stalled peers on `push_ms=1` are dropped 1.75 s after connecting with
/// `--write-timeout 1s`, run after run; with a 4 KiB receive buffer and an 88-byte MSS it
/// varied from 1.7 s to 8 s.)
pub async fn connect_stalling(addr: std::net::SocketAddr, path: &str) -> RawClient {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .expect("socket");
    // The kernel rounds this up to its minimum (about 2 KiB).
    socket.set_recv_buffer_size(1).expect("SO_RCVBUF");
    nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::TcpMaxSeg, &536)
        .expect("TCP_MAXSEG");
    let stream = socket.connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    match RawClient::upgrade_stream(stream, &addr.to_string(), path, &[]).await {
        Ok((_, Some(client))) => client,
        Ok((response, None)) => panic!("upgrade of {path} refused: {response:?}"),
        Err(err) => panic!("upgrade of {path} failed: {err:#}"),
    }
}
