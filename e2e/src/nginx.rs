//! nginx alone in front of one upstream address, for the deploy cases the cluster does not
//! cover (`tests/deploy.rs`): a single instance behind the proxy, and a reload with
//! `worker_shutdown_timeout`.
//!
//! [`Nginx::start`] writes a minimal WebSocket proxy configuration under a temporary prefix,
//! runs `nginx -g 'daemon off;'` in a process group of its own on a free port, and returns once
//! its master has written its pid file and the port accepts connections. Dropping an [`Nginx`]
//! kills its process group (master and workers).

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// How long nginx may take to listen.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a start polls for the pid file.
const POLL: Duration = Duration::from_millis(20);
/// How many free ports a start tries when another process takes the one it picked first.
const PORT_TRIES: usize = 5;

/// A running nginx; its process group is killed on drop.
pub struct Nginx {
    child: Child,
    master: i32,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx proxying every request (WebSocket upgrades included) to `upstream`, with
    /// `main` added at the top level of the configuration (for example
    /// `worker_shutdown_timeout 2s;`). The upstream is never marked down (`max_fails=0`), so
    /// an instance that comes back is used again at once.
    pub async fn start(upstream: SocketAddr, main: &str) -> Nginx {
        let mut last = None;
        for _ in 0..PORT_TRIES {
            match Self::try_start(upstream, main).await {
                Ok(nginx) => return nginx,
                Err(error) => last = Some(error),
            }
        }
        panic!("nginx did not start: {:#}", last.expect("tried"));
    }

    async fn try_start(upstream: SocketAddr, main: &str) -> anyhow::Result<Nginx> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join("tmp"))?;
        let config = format!(
            "worker_processes 1;\npid nginx.pid;\nerror_log error.log warn;\n{main}\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path tmp/client_body;\n  \
             proxy_temp_path tmp/proxy;\n  fastcgi_temp_path tmp/fastcgi;\n  \
             uwsgi_temp_path tmp/uwsgi;\n  scgi_temp_path tmp/scgi;\n  \
             upstream backend {{ server {upstream} max_fails=0; }}\n  \
             server {{\n    listen {addr};\n    location / {{\n      \
             proxy_pass http://backend;\n      proxy_http_version 1.1;\n      \
             proxy_set_header Upgrade $http_upgrade;\n      \
             proxy_set_header Connection \"upgrade\";\n      \
             proxy_set_header Host $http_host;\n      proxy_read_timeout 60s;\n    }}\n  }}\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), config)?;
        let child = Command::new(crate::cluster::nginx_binary())
            .arg("-p")
            .arg(dir.path())
            .args(["-c", "nginx.conf", "-e", "error.log", "-g", "daemon off;"])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("spawn nginx")?;
        let master = i32::try_from(child.id().context("nginx has a pid")?)?;
        let mut nginx = Nginx {
            child,
            master,
            addr,
            dir,
        };
        let pid_file = nginx.dir.path().join("nginx.pid");
        let started = tokio::time::Instant::now();
        loop {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                bail!("nginx exited ({status}): {}", nginx.error_log());
            }
            let written = std::fs::read_to_string(&pid_file).unwrap_or_default();
            if written.trim() == master.to_string() {
                return Ok(nginx);
            }
            if started.elapsed() > STARTUP_TIMEOUT {
                bail!("nginx wrote no pid file in time: {}", nginx.error_log());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Where nginx listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://ADDR{path}`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// The master's process id (SIGHUP to it reloads).
    pub fn master_pid(&self) -> i32 {
        self.master
    }

    /// The process ids of the master's workers now.
    pub fn workers(&self) -> Vec<i32> {
        let Ok(processes) = procfs::process::all_processes() else {
            return Vec::new();
        };
        processes
            .filter_map(|process| process.ok()?.stat().ok())
            .filter(|stat| stat.ppid == self.master)
            .map(|stat| stat.pid)
            .collect()
    }

    /// nginx's error log, for failure messages.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.master), Signal::SIGKILL);
    }
}
