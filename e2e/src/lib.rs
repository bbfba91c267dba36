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
//! - [`raw`]: a hand-written WebSocket client over a plain `TcpStream`: the HTTP upgrade with any
//!   headers, a frame encoder that can break every rule (unmasked, RSV bits, reserved opcodes,
//!   oversized control frames), and a decoder that reads the server's Close code.
//! - [`ws`]: helpers around `tokio-tungstenite`, the well-behaved client: connect, close and wait
//!   for the echo, parse ticks, check that a server is still healthy.
//! - [`cluster`]: nginx in front of two servers through `deploy/serve-cluster.sh`, killed as a
//!   process group on drop.
//! - [`http`]: a tiny HTTP/1.1 GET over `TcpStream` and a Prometheus text parser for `/metrics`.
//!
//! # Running
//! `cargo test -p wsclose-e2e` builds the server (debug; set `WSCLOSE_E2E_RELEASE=1` for
//! `--release`) and runs every test. Set `WSCLOSE_E2E_VERBOSE=1` to stream the servers' stderr
//! live; otherwise it is captured and printed only when a test fails.

pub mod cluster;
pub mod http;
pub mod raw;
pub mod server;
pub mod ws;

pub use http::{http_get, HttpResponse, MetricsSnapshot};
pub use raw::{Frame, RawClient, RawCloseOutcome, UpgradeResponse};
pub use server::{run_to_exit, server_binary, ServerProcess};

use std::time::Duration;

/// The bound every read in the harness uses unless a test says otherwise: generous, so that a
/// loaded 2-core CI machine does not turn a slow answer into a failure, yet short enough that a
/// missing answer fails the test instead of hanging it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

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
