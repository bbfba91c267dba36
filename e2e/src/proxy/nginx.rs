//! nginx in front of one upstream: the WebSocket part of `deploy/nginx.conf` (HTTP/1.1 to the
//! upstream, `Upgrade` and `Connection` forwarded, the browser's `Host` kept), one worker,
//! everything under the temporary prefix.
//!
//! `proxy_read_timeout` and `proxy_send_timeout` both get the timeout, as in
//! `deploy/nginx.conf`. Measured on an upgraded connection (`tests/idle.rs`): nginx cuts it
//! after that long with no byte in *either* direction, without a Close frame; bytes from the
//! client reset it as well as bytes from the upstream.

use std::fmt::Write;

use anyhow::Context;
use tokio::process::Command;

use super::{installed, write_config, Setup};
use crate::cluster::nginx_binary;

/// The command that runs nginx in the foreground with its configuration in `setup.dir`.
pub(super) fn command(setup: &Setup<'_>) -> anyhow::Result<Command> {
    let dir = setup.dir.to_str().context("a UTF-8 temporary directory")?;
    let mut timeouts = String::new();
    if let Some(timeout) = setup.timeout {
        let ms = timeout.as_millis();
        writeln!(timeouts, "            proxy_read_timeout {ms}ms;")?;
        writeln!(timeouts, "            proxy_send_timeout {ms}ms;")?;
    }
    let config = format!(
        "daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log stderr warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen {listen};
        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection upgrade;
            proxy_set_header Host $http_host;
            proxy_buffering off;
{timeouts}        }}
    }}
}}
",
        listen = setup.listen,
        upstream = setup.upstream,
    );
    let path = write_config(setup.dir, "nginx.conf", &config)?;
    let mut command = installed(&nginx_binary())?;
    // `-e`: the error log before the configuration is read (nginx's default is under /var/log).
    command
        .arg("-p")
        .arg(setup.dir)
        .arg("-e")
        .arg("stderr")
        .arg("-c")
        .arg(path);
    Ok(command)
}
