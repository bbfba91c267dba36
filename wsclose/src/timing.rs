//! The timing one connection obeys, with its defaults and how they relate.
//!
//! The bounds follow gorilla/websocket's chat example; the ping interval is shorter than its, to
//! fit the proxies in front of servers:
//!
//! ```text
//! ping_interval (25 s)  <  pong_timeout (60 s)   a healthy peer answers two pings before its
//!                                                read deadline expires
//! write_timeout (10 s)                           bounds every single write or flush
//! close_timeout (5 s)                            bounds the wait for the peer's Close after
//!                                                one was sent or received
//! ```
//!
//! Behind a proxy, `ping_interval` must also be shorter than every idle timeout on the path: a
//! browser never pings, so the server's pings (and their pongs) are what keeps a quiet socket
//! alive. 25 s is under the shortest of the common defaults: HAProxy's 50 s in Debian's
//! `haproxy.cfg` (`timeout client`/`timeout server`; it cut a socket pinged every 54 s at
//! 50.0 s), nginx's `proxy_read_timeout` and an AWS ALB's 60 s, and the 30 s that many HAProxy
//! configs set. The crate's README has the table; `wsclose-check URL --idle` measures a path.
//! [`Lifecycle::shutdown`](crate::Lifecycle::shutdown) waits at most `close_timeout` plus
//! [`SHUTDOWN_GRACE`](crate::SHUTDOWN_GRACE) for every socket.

use std::fmt;
use std::time::Duration;

/// How long a peer may stay silent (no frame at all, pongs included) before it is dropped.
pub const DEFAULT_PONG_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the server pings: under the shortest idle timeout of the common proxies (30 s; see
/// the [module docs](self)), and under half of `pong_timeout`.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(25);
/// How long one write or flush may block before the peer counts as too slow and is dropped.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// After a Close frame, how long the connection keeps draining while it waits for the other one.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The environment variables [`Timing::from_env`] reads (and the server's flags, with the
/// `clap` feature), in field order.
pub const ENV_VARS: [&str; 4] = [
    "WSCLOSE_PING_INTERVAL",
    "WSCLOSE_PONG_TIMEOUT",
    "WSCLOSE_WRITE_TIMEOUT",
    "WSCLOSE_CLOSE_TIMEOUT",
];

/// The timing values one connection obeys: the keepalive, the read deadline, and the bounds on
/// writes and on the close handshake. How they relate is in the [module docs](self).
///
/// `Timing::default()` gives the defaults above. With the `clap` feature it derives
/// `clap::Args` (`--ping-interval 25s` and so on, each with its `WSCLOSE_*` variable); with the
/// `env` feature, [`Timing::from_env`] reads the same variables.
///
/// ```
/// use std::time::Duration;
/// use wsclose::Timing;
///
/// let timing = Timing { pong_timeout: Duration::from_secs(30), ping_interval: Duration::from_secs(27), ..Timing::default() };
/// assert!(timing.validate().is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct Timing {
    /// Period of the server's keepalive pings; must be shorter than --pong-timeout.
    #[cfg_attr(feature = "clap", arg(long, env = ENV_VARS[0], value_parser = humantime::parse_duration,
        default_value = text(DEFAULT_PING_INTERVAL)))]
    pub ping_interval: Duration,
    /// A peer that sends no frame for this long is dropped (its read deadline expired).
    #[cfg_attr(feature = "clap", arg(long, env = ENV_VARS[1], value_parser = humantime::parse_duration,
        default_value = text(DEFAULT_PONG_TIMEOUT)))]
    pub pong_timeout: Duration,
    /// Bound on every single write or flush to the peer.
    #[cfg_attr(feature = "clap", arg(long, env = ENV_VARS[2], value_parser = humantime::parse_duration,
        default_value = text(DEFAULT_WRITE_TIMEOUT)))]
    pub write_timeout: Duration,
    /// After a Close frame (sent or received), the longest the connection waits for the other.
    #[cfg_attr(feature = "clap", arg(long, env = ENV_VARS[3], value_parser = humantime::parse_duration,
        default_value = text(DEFAULT_CLOSE_TIMEOUT)))]
    pub close_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            ping_interval: DEFAULT_PING_INTERVAL,
            pong_timeout: DEFAULT_PONG_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
        }
    }
}

impl Timing {
    /// Checks that no value is zero and that a ping comes before the pong deadline.
    pub fn validate(&self) -> Result<(), TimingError> {
        let non_zero = [
            ("--ping-interval", self.ping_interval),
            ("--pong-timeout", self.pong_timeout),
            ("--write-timeout", self.write_timeout),
            ("--close-timeout", self.close_timeout),
        ];
        if let Some((flag, _)) = non_zero.iter().find(|(_, value)| value.is_zero()) {
            return Err(TimingError::Zero { flag });
        }
        if self.ping_interval >= self.pong_timeout {
            return Err(TimingError::PingNotBeforePongDeadline {
                ping: self.ping_interval,
                pong: self.pong_timeout,
            });
        }
        Ok(())
    }

    /// The defaults, with each value the environment sets replaced: `WSCLOSE_PING_INTERVAL`,
    /// `WSCLOSE_PONG_TIMEOUT`, `WSCLOSE_WRITE_TIMEOUT`, `WSCLOSE_CLOSE_TIMEOUT` (durations such
    /// as `25s` or `250ms`). Validated. Needs the `env` feature.
    ///
    /// ```
    /// // With none of the variables set, the defaults.
    /// assert_eq!(wsclose::Timing::from_env(), Ok(wsclose::Timing::default()));
    /// ```
    #[cfg(feature = "env")]
    pub fn from_env() -> Result<Timing, TimingError> {
        let mut timing = Timing::default();
        let fields = [
            &mut timing.ping_interval,
            &mut timing.pong_timeout,
            &mut timing.write_timeout,
            &mut timing.close_timeout,
        ];
        for (name, field) in ENV_VARS.into_iter().zip(fields) {
            let Ok(value) = std::env::var(name) else {
                continue;
            };
            *field = humantime::parse_duration(&value).map_err(|error| {
                TimingError::Env(format!("{name}: invalid value '{value}': {error}"))
            })?;
        }
        timing.validate()?;
        Ok(timing)
    }
}

/// A duration as the flags take it (`25s`, `250ms`), for the CLI's defaults.
#[cfg(feature = "clap")]
fn text(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// Timing values that cannot work.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimingError {
    /// A peer would be dropped before it ever saw a ping.
    PingNotBeforePongDeadline {
        /// The configured ping interval.
        ping: Duration,
        /// The configured pong timeout.
        pong: Duration,
    },
    /// A duration of zero would turn the timer into a busy loop or drop every peer at once.
    Zero {
        /// The flag of the value that was zero.
        flag: &'static str,
    },
    /// A `WSCLOSE_*` variable that [`Timing::from_env`] could not read.
    Env(String),
}

// By hand, not thiserror: the crate depends on futures, tokio, tokio-util and tungstenite only.
impl fmt::Display for TimingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimingError::PingNotBeforePongDeadline { ping, pong } => write!(
                f,
                "--ping-interval ({ping:?}) must be shorter than --pong-timeout ({pong:?})"
            ),
            TimingError::Zero { flag } => write!(f, "{flag} must be greater than zero"),
            TimingError::Env(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for TimingError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_ping_fits_the_usual_proxies() {
        // The shortest idle timeout in the module docs' list (HAProxy configs that set 30 s).
        const SHORTEST_PROXY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
        let timing = Timing::default();
        assert_eq!(timing.validate(), Ok(()));
        assert!(timing.ping_interval * 2 <= timing.pong_timeout);
        assert!(timing.ping_interval < SHORTEST_PROXY_IDLE_TIMEOUT);
    }

    #[test]
    fn ping_must_come_before_the_pong_deadline_and_nothing_is_zero() {
        let equal = Timing {
            ping_interval: Duration::from_secs(5),
            pong_timeout: Duration::from_secs(5),
            ..Timing::default()
        };
        assert!(matches!(
            equal.validate(),
            Err(TimingError::PingNotBeforePongDeadline { .. })
        ));
        let zero = Timing {
            write_timeout: Duration::ZERO,
            ..Timing::default()
        };
        assert_eq!(
            zero.validate(),
            Err(TimingError::Zero {
                flag: "--write-timeout"
            })
        );
    }
}
