//! Caddy in front of one upstream: `caddy run --config caddy.json`, the JSON its Caddyfile
//! `reverse_proxy UPSTREAM` adapts to, listening on 127.0.0.1 only, with the admin endpoint
//! off, automatic HTTPS off, and its storage and autosaved configuration in the temporary
//! directory.
//!
//! Caddy 2.6 has no setting for an idle or a streaming WebSocket (`stream_timeout` came with
//! 2.7: 2.6's Caddyfile parser says "unrecognized subdirective"). With `timeout` set, the HTTP
//! transport's `read_timeout` gets it: measured by hand, a deadline on each read from the
//! upstream, so only bytes from the upstream reset it (a client's text message to a server
//! that does not answer is cut with the quiet one).

use std::path::Path;

use anyhow::Context;
use serde_json::json;
use tokio::process::Command;

use super::{installed, write_config, Setup};

/// Debian's Caddy.
const CADDY: &str = "/usr/bin/caddy";

/// The command that runs Caddy in the foreground with its configuration in `setup.dir`.
pub(super) fn command(setup: &Setup<'_>) -> anyhow::Result<Command> {
    let mut proxy = json!({
        "handler": "reverse_proxy",
        "upstreams": [{ "dial": setup.upstream.to_string() }],
    });
    if let Some(timeout) = setup.timeout {
        proxy["transport"] = json!({
            "protocol": "http",
            "read_timeout": format!("{}ms", timeout.as_millis()),
        });
    }
    let config = json!({
        "admin": { "disabled": true },
        "storage": { "module": "file_system", "root": setup.dir.join("data") },
        "apps": { "http": { "servers": { "proxy": {
            "listen": [setup.listen.to_string()],
            "automatic_https": { "disable": true },
            "routes": [{ "handle": [proxy] }],
        }}}},
    });
    let text = serde_json::to_string_pretty(&config).context("Caddy's JSON")?;
    let path = write_config(setup.dir, "caddy.json", &text)?;
    let mut command = installed(Path::new(CADDY))?;
    command
        .arg("run")
        .arg("--config")
        .arg(path)
        // Caddy autosaves its configuration under XDG_CONFIG_HOME and keeps state under
        // XDG_DATA_HOME (default: under HOME): both in the temporary directory.
        .env("XDG_CONFIG_HOME", setup.dir)
        .env("XDG_DATA_HOME", setup.dir)
        .env("HOME", setup.dir);
    Ok(command)
}
