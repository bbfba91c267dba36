//! `wsclose-server`: parses flags, binds, and runs the library until SIGINT or SIGTERM.
// warp's filter chain and hyper's service futures nest deeper than the default limit of 128
// when `serve_app` is instantiated here with optimisations on (`cargo build --release`).
#![recursion_limit = "256"]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::Parser;
use wsclose_server::config::{self, Config};

/// A WebSocket server that closes connections correctly, and one endpoint that does not.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Flags {
    /// Listen address; port 0 picks a free port.
    #[arg(long, env = "WSCLOSE_ADDR", default_value_t = config::DEFAULT_ADDR)]
    addr: SocketAddr,
    /// Directory with the demo page and the built wasm [default: <workspace>/target/www].
    #[arg(long, env = "WSCLOSE_STATIC_DIR")]
    static_dir: Option<PathBuf>,
    /// How often /ws/drain and /ws/no-drain push a tick.
    #[arg(long, env = "WSCLOSE_PUSH_INTERVAL", value_parser = humantime::parse_duration, default_value = "1s")]
    push_interval: Duration,
    /// Keepalive ping period; must be shorter than --pong-timeout.
    #[arg(long, env = "WSCLOSE_PING_INTERVAL", value_parser = humantime::parse_duration, default_value = "54s")]
    ping_interval: Duration,
    /// A peer that sends no frame for this long is dropped.
    #[arg(long, env = "WSCLOSE_PONG_TIMEOUT", value_parser = humantime::parse_duration, default_value = "60s")]
    pong_timeout: Duration,
    /// Longest a single write or flush may block before the peer is dropped.
    #[arg(long, env = "WSCLOSE_WRITE_TIMEOUT", value_parser = humantime::parse_duration, default_value = "10s")]
    write_timeout: Duration,
    /// After the server sends Close, how long it waits for the peer's Close.
    #[arg(long, env = "WSCLOSE_CLOSE_TIMEOUT", value_parser = humantime::parse_duration, default_value = "5s")]
    close_timeout: Duration,
    /// Largest incoming message in bytes; larger ones get Close 1009.
    #[arg(long, env = "WSCLOSE_MAX_MESSAGE_SIZE", default_value_t = config::DEFAULT_MAX_MESSAGE_SIZE)]
    max_message_size: usize,
    /// Most WebSocket connections at once; more get HTTP 503.
    #[arg(long, env = "WSCLOSE_MAX_CONNECTIONS", default_value_t = config::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// A browser origin allowed to connect (repeatable). With none, Origin must match Host.
    #[arg(
        long = "allowed-origin",
        env = "WSCLOSE_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    allowed_origins: Vec<String>,
    /// A request's headers must arrive within this, or the connection is dropped.
    #[arg(long, env = "WSCLOSE_HEADER_TIMEOUT", value_parser = humantime::parse_duration, default_value = "10s")]
    header_timeout: Duration,
    /// The Close code sockets get on shutdown: 1001 (going away) or 1012 (service restart).
    #[arg(long, env = "WSCLOSE_SHUTDOWN_CODE", default_value_t = 1001, value_parser = shutdown_code())]
    shutdown_code: u16,
    /// A subprotocol the server speaks (repeatable); the first one a client offers is chosen.
    #[arg(
        long = "subprotocol",
        env = "WSCLOSE_SUBPROTOCOLS",
        value_delimiter = ','
    )]
    subprotocols: Vec<String>,
    /// The name ticks carry in their `instance` field [default: the listen address].
    #[arg(long, env = "WSCLOSE_INSTANCE", default_value = "")]
    instance: String,
}

/// `--shutdown-code` takes 1001 or 1012 only; clap lists both when given anything else.
fn shutdown_code() -> impl TypedValueParser<Value = u16> {
    PossibleValuesParser::new(["1001", "1012"]).map(|code| code.parse().expect("a listed code"))
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
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,warp=warn".into()),
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
    let config = Config {
        static_dir: flags.static_dir.unwrap_or_else(config::default_static_dir),
        push_interval: flags.push_interval,
        ping_interval: flags.ping_interval,
        pong_timeout: flags.pong_timeout,
        write_timeout: flags.write_timeout,
        close_timeout: flags.close_timeout,
        max_message_size: flags.max_message_size,
        max_connections: flags.max_connections,
        allowed_origins: flags.allowed_origins,
        header_timeout: flags.header_timeout,
        shutdown_code: flags.shutdown_code,
        instance: flags.instance,
        subprotocols: flags.subprotocols,
    };
    config.validate()?;
    // Installed before the listening line is printed: a SIGTERM sent the moment a supervisor
    // reads that line must already shut down gracefully (and not kill the process, status 143).
    let shutdown = shutdown_signal().context("install signal handlers")?;
    // Each connection is a file descriptor; allow as many as the hard limit permits.
    if let Err(error) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(%error, "could not raise the open-file limit");
    }
    let listener = tokio::net::TcpListener::bind(flags.addr)
        .await
        .with_context(|| format!("cannot listen on {}", flags.addr))?;
    let addr = listener.local_addr()?;
    let config = Config {
        instance: if config.instance.is_empty() {
            addr.to_string()
        } else {
            config.instance
        },
        ..config
    };
    println!("wsclose-server listening on http://{addr}");
    wsclose_server::run(listener, config, shutdown).await?;
    Ok(())
}

/// Installs the SIGINT and SIGTERM handlers now, and returns a future that resolves on the
/// first of them.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}
