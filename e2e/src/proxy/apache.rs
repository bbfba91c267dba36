//! Apache httpd in front of one upstream through `mod_proxy_wstunnel` (`ProxyPass / ws://…`),
//! in the foreground with its own configuration: `ServerRoot`, `PidFile`, the runtime
//! directory and the logs in the temporary directory, and only the modules it needs loaded from
//! Debian's `/usr/lib/apache2/modules` (the event MPM, `mod_authz_core`, `mod_proxy`, `mod_proxy_http` for plain
//! requests, `mod_proxy_wstunnel`).
//!
//! The timeout sets both `Timeout` (the client side) and `ProxyTimeout` (the backend side).
//! Measured with Debian's 2.4.71 (`tests/idle.rs`, and by hand): the tunnel is cut after the
//! *larger* of the two with no byte in either direction, without a Close frame; setting only
//! one of them to 3 s (the other at 60 s) does not cut at 3 s. `ProxyWebsocketIdleTimeout` is
//! gone from 2.4.71 ("Invalid command").

use std::path::Path;

use anyhow::Context;
use tokio::process::Command;

use super::{installed, write_config, Setup};

/// Debian's httpd.
const APACHE: &str = "/usr/sbin/apache2";
/// Where Debian installs the modules.
const MODULES: &str = "/usr/lib/apache2/modules";
/// The modules loaded, `(name, file)`. Without an authorization module every request fails
/// with "couldn't check user".
const LOADED: [(&str, &str); 5] = [
    ("mpm_event_module", "mod_mpm_event.so"),
    ("authz_core_module", "mod_authz_core.so"),
    ("proxy_module", "mod_proxy.so"),
    ("proxy_http_module", "mod_proxy_http.so"),
    ("proxy_wstunnel_module", "mod_proxy_wstunnel.so"),
];

/// The command that runs httpd in the foreground with its configuration in `setup.dir`.
pub(super) fn command(setup: &Setup<'_>) -> anyhow::Result<Command> {
    let dir = setup.dir.to_str().context("a UTF-8 temporary directory")?;
    let modules: String = LOADED
        .iter()
        .map(|(name, file)| format!("LoadModule {name} {MODULES}/{file}\n"))
        .collect();
    let timeouts = match setup.timeout {
        Some(timeout) => {
            // Both take whole seconds.
            let secs = timeout.as_secs();
            format!("Timeout {secs}\nProxyTimeout {secs}\n")
        }
        None => String::new(),
    };
    // Run as root (CI), httpd switches its children to `User`; Debian has nobody/nogroup.
    let user = if nix::unistd::geteuid().is_root() {
        "User nobody\nGroup nogroup\n"
    } else {
        ""
    };
    let config = format!(
        "ServerRoot {dir}
DefaultRuntimeDir {dir}
PidFile {dir}/httpd.pid
ErrorLog /dev/stderr
LogLevel warn
ServerName 127.0.0.1
Listen {listen}
{user}{modules}StartServers 1
{timeouts}ProxyPreserveHost On
ProxyPass / ws://{upstream}/
",
        listen = setup.listen,
        upstream = setup.upstream,
    );
    let path = write_config(setup.dir, "httpd.conf", &config)?;
    let mut command = installed(Path::new(APACHE))?;
    command.arg("-f").arg(path).arg("-D").arg("FOREGROUND");
    Ok(command)
}
