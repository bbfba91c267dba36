//! Runs a browser test command against a freshly started `wsclose-server` on a free port.
//!
//! ```text
//! with-server SERVER_BINARY [server flags...] -- COMMAND [args...]
//! ```
//!
//! The server binds `127.0.0.1:0`; its WebSocket base URL (`ws://127.0.0.1:PORT`) is exported
//! as `WSCLOSE_SERVER_URL` for COMMAND. The server is killed afterwards, whatever happens, and
//! its stderr is written to `$WSCLOSE_SERVER_LOG` (default `target/wsclose-server-test.log`).
//!
//! * `WSCLOSE_FREE_PORT` is a port that was free a moment ago, for the refused-connection test.
//! * wasm-bindgen-test serves its test page from another origin than the server, and the server
//!   refuses foreign browser origins (HTTP 403). So a second free port is picked for that page,
//!   exported as `WASM_BINDGEN_TEST_ADDRESS`, and allowed with `--allowed-origin`.
//!
//! Exits with COMMAND's status (2 on a usage error, 1 when the server does not start).

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use wsclose_e2e::ServerProcess;

/// Where the server's stderr goes unless `WSCLOSE_SERVER_LOG` says otherwise.
const DEFAULT_LOG: &str = "target/wsclose-server-test.log";

/// A port on 127.0.0.1 that the kernel handed out, and that nothing listens on once this
/// returns. Another process may take it meanwhile; the two users (the test page's server and
/// the refused-connection test) start within a second.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("bind 127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("with-server: {error:#}");
            ExitCode::from(1)
        }
    }
}

async fn run() -> anyhow::Result<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(split) = args.iter().position(|arg| arg == "--") else {
        eprintln!("usage: with-server SERVER_BINARY [server flags...] -- COMMAND [args...]");
        return Ok(ExitCode::from(2));
    };
    let (server, command) = (&args[..split], &args[split + 1..]);
    let (Some((binary, flags)), Some((program, program_args))) =
        (server.split_first(), command.split_first())
    else {
        bail!("usage: with-server SERVER_BINARY [server flags...] -- COMMAND [args...]");
    };
    let page_port = free_port()?;
    let page_origin = format!("http://127.0.0.1:{page_port}");
    let mut spawn = tokio::process::Command::new(binary);
    spawn
        .args(["--addr", "127.0.0.1:0"])
        .args(flags)
        .args(["--allowed-origin", &page_origin]);
    let server = ServerProcess::spawn(spawn)
        .await
        .with_context(|| format!("{binary} did not start"))?;
    let url = server.ws_url("");
    let log =
        std::env::var_os("WSCLOSE_SERVER_LOG").map_or_else(|| DEFAULT_LOG.into(), PathBuf::from);
    println!(
        "with-server: wsclose-server at {url}, test page at 127.0.0.1:{page_port} (server log: {})",
        log.display()
    );
    let status = tokio::process::Command::new(program)
        .args(program_args)
        .env("WSCLOSE_SERVER_URL", &url)
        .env(
            "WASM_BINDGEN_TEST_ADDRESS",
            format!("127.0.0.1:{page_port}"),
        )
        .env("WSCLOSE_FREE_PORT", free_port()?.to_string())
        .status()
        .await
        .with_context(|| format!("run {program}"))?;
    std::fs::write(&log, server.stderr_text())
        .with_context(|| format!("write the server log to {}", log.display()))?;
    drop(server);
    Ok(match status.code() {
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::from(1),
    })
}
