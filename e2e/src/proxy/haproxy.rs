//! HAProxy in front of one upstream, in `mode http` (it sees the upgrade and switches the
//! connection to a tunnel), in the foreground (`-db`), logging to stderr.
//!
//! The timeout sets `timeout client`, `timeout server` and `timeout tunnel` alike. HAProxy's
//! documentation: once the connection is a tunnel (after the 101), `timeout tunnel` replaces
//! the other two, and bounds how long it may stay inactive in both directions. Measured
//! (`tests/idle.rs`): it cuts an idle WebSocket after that long, without a Close frame; a byte
//! either way resets it.

use std::path::Path;

use tokio::process::Command;

use super::{installed, write_config, Setup};

/// Debian's HAProxy.
const HAPROXY: &str = "/usr/sbin/haproxy";

/// The command that runs HAProxy in the foreground with its configuration in `setup.dir`.
pub(super) fn command(setup: &Setup<'_>) -> anyhow::Result<Command> {
    let timeouts = match setup.timeout {
        Some(timeout) => {
            let ms = timeout.as_millis();
            format!(
                "    timeout client {ms}ms\n    timeout server {ms}ms\n    timeout tunnel {ms}ms\n"
            )
        }
        None => String::new(),
    };
    let config = format!(
        "global
    log stderr format short local0 warning
defaults
    mode http
    log global
    timeout connect 2s
{timeouts}frontend proxy
    bind {listen}
    default_backend app
backend app
    server app {upstream}
",
        listen = setup.listen,
        upstream = setup.upstream,
    );
    let path = write_config(setup.dir, "haproxy.cfg", &config)?;
    let mut command = installed(Path::new(HAPROXY))?;
    command.arg("-db").arg("-f").arg(path);
    Ok(command)
}
