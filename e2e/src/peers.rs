//! The other WebSocket servers wsclose is measured and checked against, as their users run
//! them: gorilla/websocket (Go), Node `ws` and Python `websockets`, each an echo server from
//! `bench/peers/`, installed by `make setup-peers` under `target/peers/`.
//!
//! Each prints `listening on http://IP:PORT` and serves `/ws`, so [`crate::ServerProcess::spawn`]
//! runs it. The bench compares them with wsclose; `tests/check_peers.rs` points
//! `wsclose-check` at them.

use std::path::PathBuf;

use crate::server::workspace_root;

/// How to start one peer server.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The name in tables and logs.
    pub name: &'static str,
    /// The file that exists once `make setup-peers` has installed it.
    pub needs: PathBuf,
    /// The program and its arguments; the listen address comes last.
    pub command: Vec<String>,
    /// Environment variables it needs.
    pub env: Vec<(String, String)>,
    /// The WebSocket path it serves.
    pub path: &'static str,
}

impl Peer {
    /// Whether it is installed.
    pub fn installed(&self) -> bool {
        self.needs.is_file()
    }

    /// Starts it on a free port of 127.0.0.1 and waits for its listening line; panics, saying
    /// how to install it, when it is missing.
    pub async fn start(&self) -> crate::ServerProcess {
        assert!(
            self.installed(),
            "{} is not installed ({} is missing): run `make setup-peers`",
            self.name,
            self.needs.display()
        );
        crate::ServerProcess::spawn(self.command("127.0.0.1:0"))
            .await
            .unwrap_or_else(|error| panic!("{} did not start: {error:#}", self.name))
    }

    /// The command that starts it on `addr` (`127.0.0.1:0` picks a free port).
    pub fn command(&self, addr: &str) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.command[0]);
        command
            .args(&self.command[1..])
            .arg(addr)
            .envs(self.env.iter().map(|(key, value)| (key, value)));
        command
    }
}

/// gorilla/websocket's documented read loop: `ReadMessage` answers Close, an echo.
pub fn gorilla() -> Peer {
    let binary = peers_dir().join("gorilla");
    Peer {
        name: "gorilla/websocket",
        needs: binary.clone(),
        command: vec![text(binary)],
        env: Vec::new(),
        path: "/ws",
    }
}

/// Node `ws`, with no `'error'` listener on the socket, as in the express-ws README: a
/// malformed frame makes the socket emit `'error'`, and the process dies of it.
pub fn node_ws() -> Peer {
    let modules = peers_dir().join("node/node_modules");
    Peer {
        name: "Node ws",
        needs: modules.join("ws/package.json"),
        command: vec!["node".into(), text(sources().join("node.js"))],
        env: vec![("NODE_PATH".into(), text(modules))],
        path: "/ws",
    }
}

/// Python `websockets`, its asyncio server.
pub fn python_websockets() -> Peer {
    let python = peers_dir().join("venv/bin/python");
    Peer {
        name: "Python websockets",
        needs: python.clone(),
        command: vec![text(python), text(sources().join("python.py"))],
        env: Vec::new(),
        path: "/ws",
    }
}

/// `target/peers`, where `make setup-peers` installs them.
fn peers_dir() -> PathBuf {
    workspace_root().join("target/peers")
}

/// `bench/peers`, their sources.
fn sources() -> PathBuf {
    workspace_root().join("bench/peers")
}

fn text(path: PathBuf) -> String {
    path.display().to_string()
}
