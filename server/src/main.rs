//! `wsclose-server`: parses flags, binds, and runs the library until SIGINT or SIGTERM.
// warp's filter chain and hyper's service futures nest deeper than the default limit of 128
// when `serve_app` is instantiated here with optimisations on (`cargo build --release`).
#![recursion_limit = "256"]

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use wsclose_server::config::{self, Config};

/// A WebSocket server that closes connections correctly, and one endpoint that does not.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Flags {
    /// Listen address; port 0 picks a free port.
    #[arg(long, env = "WSCLOSE_ADDR", default_value_t = config::DEFAULT_ADDR)]
    addr: SocketAddr,
    /// Everything else is the library's `Config`, with its defaults.
    #[command(flatten)]
    config: Config,
}

fn main() -> ExitCode {
    let flags = match Flags::try_parse() {
        Ok(flags) => flags,
        Err(error) if !error.use_stderr() => error.exit(), // --help, --version
        Err(error) => {
            let message = error.to_string();
            let first_line = message.lines().next().unwrap_or("invalid arguments");
            eprintln!("wsclose-server: {first_line} (see --help)");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colours only for a terminal: a log file or a pipe gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // warp logs each rejected request (a 4xx) at WARN, whole: a peer would choose
                // the log's volume. The server logs its own refusals, bounded (`log`).
                .unwrap_or_else(|_| "info,warp=error".into()),
        )
        .init();
    match serve(flags) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("wsclose-server: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn serve(flags: Flags) -> anyhow::Result<()> {
    let config = flags.config;
    // Installed before the listening line is printed: a SIGTERM sent the moment a supervisor
    // reads that line must already shut down gracefully (and not kill the process, status 143).
    let shutdown = wsclose_server::shutdown_signal().context("install signal handlers")?;
    // Each connection is a file descriptor; allow as many as the hard limit permits.
    if let Err(error) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(%error, "could not raise the open-file limit");
    }
    let listener = tokio::net::TcpListener::bind(flags.addr)
        .await
        .with_context(|| format!("cannot listen on {}", flags.addr))?;
    wsclose_server::run(listener, config, shutdown).await?;
    Ok(())
}
