//! Server configuration: every timing value and limit, with documented defaults.
//!
//! The lifecycle's timing ([`Timing`], from the `wsclose` crate, with its four defaults and
//! how they relate) is flattened into these flags, next to the demo's own values:
//!
//! ```text
//! push_interval (1 s)     how often /ws/drain and /ws/no-drain push a tick
//! header_timeout (10 s)   an HTTP request's headers must arrive within this, or the
//!                         connection is dropped (slowloris)
//! message_timeout (10 s)  an incoming message must arrive within this, from its first byte
//!                         to its last, whatever Pongs come meanwhile (Close 1008); the
//!                         keepalive (pong_timeout, 60 s) cannot drop a peer that keeps
//!                         sending Pongs, so this is what ends an unfinished message
//! ```
//!
//! Totals, across every connection: `message_budget` (64 MiB) for the bytes of messages still
//! arriving (a frame it cannot cover gets Close 1008), and `max_push_rate` (2,000 ticks a
//! second), shared equally by the pushing connections. So at the defaults the server holds at
//! most `message_budget` for arriving messages, whatever `max_connections` ×
//! `max_message_size` would allow.
//!
//! All sockets close in parallel on shutdown, and [`crate::run`] waits at most
//! `close_timeout +` [`wsclose::SHUTDOWN_GRACE`] for them before it returns; a socket whose
//! Close write is still stuck then (a peer that does not read) is dropped with the runtime.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use wsclose::timing::{Timing, TimingError};
use wsclose::CloseCode;

/// How often the server pushes a tick on `/ws/drain` and `/ws/no-drain`.
pub(crate) const DEFAULT_PUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Largest incoming message, in bytes. Larger ones get Close 1009. The crate's recommended
/// default ([`wsclose::config::DEFAULT_MAX_MESSAGE_SIZE`]).
pub(crate) const DEFAULT_MAX_MESSAGE_SIZE: usize = wsclose::config::DEFAULT_MAX_MESSAGE_SIZE;
/// Most WebSocket connections open at once. Upgrades beyond this get HTTP 503.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// The smallest push interval a client may ask for with `push_ms` (a floor against clients
/// that would make the server write a thousand messages a second).
pub(crate) const DEFAULT_MIN_PUSH_INTERVAL: Duration = Duration::from_millis(10);
/// How long a client may take to send a request's headers before the connection is dropped.
pub(crate) const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one incoming message may take to arrive, from its first byte to its last. Browsers
/// send each message as one frame, at once.
pub(crate) const DEFAULT_MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// The bytes all connections together may hold for messages still arriving: 512 messages of
/// [`DEFAULT_MAX_MESSAGE_SIZE`] at once, each held twice
/// ([`wsclose::assembly::HELD_PER_BYTE`]).
pub(crate) const DEFAULT_MESSAGE_BUDGET: usize = 64 * 1024 * 1024;
/// The most ticks per second the server pushes across all connections. Each pushing connection
/// gets an equal share: with N of them, none ticks more often than every N / this seconds. At
/// the default push interval, up to 2,000 connections are not held back; past that, every
/// connection's ticks slow alike. A tick costs tens of µs of CPU (87 µs in a debug build), so
/// the default keeps the ticks to a fraction of one core whatever clients ask for.
pub(crate) const DEFAULT_MAX_PUSH_RATE: u32 = 2_000;

/// Everything the server can be tuned with. `Config::default()` gives the documented defaults.
///
/// It is also the command line: `wsclose-server` flattens it into its flags
/// (`#[derive(clap::Args)]`), each with a `WSCLOSE_*` environment variable, and each default is
/// one of the constants above, written nowhere else.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct Config {
    /// Directory served at `/`: the demo page and the built wasm.
    #[arg(long, env = "WSCLOSE_STATIC_DIR", default_value_os_t = default_static_dir())]
    pub static_dir: PathBuf,
    /// Tick period on /ws/drain and /ws/no-drain, unless a connection asks for `push_ms`.
    #[arg(long, env = "WSCLOSE_PUSH_INTERVAL", value_parser = humantime::parse_duration,
          default_value = text(DEFAULT_PUSH_INTERVAL))]
    pub push_interval: Duration,
    /// The smallest `push_ms` a client may ask for; smaller values get HTTP 400.
    #[arg(long, env = "WSCLOSE_MIN_PUSH_INTERVAL", value_parser = humantime::parse_duration,
          default_value = text(DEFAULT_MIN_PUSH_INTERVAL))]
    pub min_push_interval: Duration,
    /// The lifecycle's timing: pings, the pong deadline, write and close bounds.
    #[command(flatten)]
    pub timing: Timing,
    /// Largest incoming message (and frame), in bytes; larger ones get Close 1009.
    #[arg(long, env = "WSCLOSE_MAX_MESSAGE_SIZE", default_value_t = DEFAULT_MAX_MESSAGE_SIZE)]
    pub max_message_size: usize,
    /// Most TCP connections open at once, upgraded or not (plain HTTP, WebSockets, and sockets
    /// still in their lingering close); more get HTTP 503.
    #[arg(long, env = "WSCLOSE_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// A browser origin allowed to connect (repeatable). With none, Origin must match Host.
    #[arg(
        long = "allowed-origin",
        env = "WSCLOSE_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,
    /// A request's headers must arrive within this, or the connection is dropped.
    #[arg(long, env = "WSCLOSE_HEADER_TIMEOUT", value_parser = humantime::parse_duration,
          default_value = text(DEFAULT_HEADER_TIMEOUT))]
    pub header_timeout: Duration,
    /// The Close code sockets get on shutdown: 1001 (going away) or 1012 (service restart).
    #[arg(long, env = "WSCLOSE_SHUTDOWN_CODE", default_value_t = CloseCode::Away,
          value_parser = shutdown_code())]
    pub shutdown_code: CloseCode,
    /// How long one incoming message may take to arrive, first byte to last; a slower one
    /// gets Close 1008.
    #[arg(long, env = "WSCLOSE_MESSAGE_TIMEOUT", value_parser = humantime::parse_duration,
          default_value = text(DEFAULT_MESSAGE_TIMEOUT))]
    pub message_timeout: Duration,
    /// Bytes all connections together may hold for messages still arriving; a frame beyond it
    /// gets Close 1008. Each frame takes twice its length. At least twice --max-message-size.
    #[arg(long, env = "WSCLOSE_MESSAGE_BUDGET", default_value_t = DEFAULT_MESSAGE_BUDGET)]
    pub message_budget: usize,
    /// Most ticks a second across all connections, shared equally by the pushing ones.
    #[arg(long, env = "WSCLOSE_MAX_PUSH_RATE", default_value_t = DEFAULT_MAX_PUSH_RATE)]
    pub max_push_rate: u32,
    /// The name ticks carry in their `instance` field. Empty: the listen address (filled in by
    /// `run`).
    #[arg(long, env = "WSCLOSE_INSTANCE", default_value = "")]
    pub instance: String,
    /// A subprotocol the server speaks (repeatable): the 101 names the first one the client
    /// offers that is listed, and none when nothing matches.
    #[arg(
        long = "subprotocol",
        env = "WSCLOSE_SUBPROTOCOLS",
        value_delimiter = ','
    )]
    pub subprotocols: Vec<String>,
}

/// A duration as the flags take it (`25s`, `250ms`), for the CLI's defaults.
fn text(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// `--shutdown-code` takes 1001 or 1012 only; clap lists both when given anything else.
fn shutdown_code() -> impl clap::builder::TypedValueParser<Value = CloseCode> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(SHUTDOWN_CODES.map(|code| code.to_string()))
        .map(|code| CloseCode::from(code.parse::<u16>().expect("a listed code")))
}

/// The Close codes that tell a client why its socket closes on shutdown.
const SHUTDOWN_CODES: [CloseCode; 2] = [CloseCode::Away, CloseCode::Restart];

impl Default for Config {
    fn default() -> Self {
        Config {
            static_dir: default_static_dir(),
            push_interval: DEFAULT_PUSH_INTERVAL,
            min_push_interval: DEFAULT_MIN_PUSH_INTERVAL,
            timing: Timing::default(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            allowed_origins: Vec::new(),
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            message_timeout: DEFAULT_MESSAGE_TIMEOUT,
            message_budget: DEFAULT_MESSAGE_BUDGET,
            max_push_rate: DEFAULT_MAX_PUSH_RATE,
            shutdown_code: CloseCode::Away,
            instance: String::new(),
            subprotocols: Vec::new(),
        }
    }
}

/// A configuration that cannot work, found before the server starts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The lifecycle's timing values cannot work.
    #[error(transparent)]
    Timing(#[from] TimingError),
    /// Only 1001 and 1012 tell a client why the socket closes on shutdown.
    #[error("--shutdown-code must be 1001 (going away) or 1012 (service restart), not {0}")]
    ShutdownCode(CloseCode),
    /// A budget smaller than one message would refuse the largest messages always.
    #[error(
        "--message-budget ({budget}) must be at least --max-message-size ({max_message_size})"
    )]
    BudgetBelowMessage {
        /// `--message-budget`.
        budget: usize,
        /// `--max-message-size`.
        max_message_size: usize,
    },
    /// A value of zero would refuse every message or connection, or drop every request.
    #[error("{flag} must be greater than zero")]
    Zero {
        /// The flag that was zero.
        flag: &'static str,
    },
}

impl Config {
    /// Checks the relations between the values; the server refuses to start otherwise.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.timing.validate()?;
        let non_zero = [
            ("--max-message-size", self.max_message_size == 0),
            ("--max-connections", self.max_connections == 0),
            ("--header-timeout", self.header_timeout.is_zero()),
            ("--message-timeout", self.message_timeout.is_zero()),
            ("--max-push-rate", self.max_push_rate == 0),
        ];
        if let Some((flag, _)) = non_zero.iter().find(|(_, zero)| *zero) {
            return Err(ConfigError::Zero { flag });
        }
        if !SHUTDOWN_CODES.contains(&self.shutdown_code) {
            return Err(ConfigError::ShutdownCode(self.shutdown_code));
        }
        let largest = self.max_message_size as u64 * wsclose::assembly::HELD_PER_BYTE;
        if (self.message_budget as u64) < largest {
            return Err(ConfigError::BudgetBelowMessage {
                budget: self.message_budget,
                max_message_size: self.max_message_size,
            });
        }
        Ok(())
    }
}

/// Where `make build` puts the demo page: `<workspace>/target/www`.
pub(crate) fn default_static_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/www"))
}

/// The address `make serve` listens on.
pub const DEFAULT_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 3030);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    /// The command line's defaults are `Config::default()`: one source of truth.
    #[test]
    fn the_cli_defaults_are_the_defaults() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            config: Config,
        }
        let parsed = Cli::try_parse_from(["wsclose-server"])
            .expect("no flags parse")
            .config;
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn shutdown_code_is_going_away_or_service_restart() {
        for (code, ok) in [(1001, true), (1012, true), (1000, false), (4000, false)] {
            let config = Config {
                shutdown_code: CloseCode::from(code),
                ..Config::default()
            };
            assert_eq!(config.validate().is_ok(), ok, "{code}");
        }
    }

    /// The server's own values, and the lifecycle's through `Timing::validate`.
    #[test]
    fn zero_values_are_refused() {
        let no_messages = Config {
            max_message_size: 0,
            ..Config::default()
        };
        assert_eq!(
            no_messages.validate(),
            Err(ConfigError::Zero {
                flag: "--max-message-size"
            })
        );
        let no_writes = Config {
            timing: Timing {
                write_timeout: Duration::ZERO,
                ..Timing::default()
            },
            ..Config::default()
        };
        assert_eq!(
            no_writes.validate(),
            Err(ConfigError::Timing(TimingError::Zero {
                flag: "--write-timeout"
            }))
        );
    }
}
