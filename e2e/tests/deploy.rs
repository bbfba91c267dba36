//! `wsclose-check --deploy` through real deploys, each asserting what the check reports against
//! what the test knows happened:
//!
//! 1. the project's cluster (`deploy/serve-cluster.sh`: nginx, two instances) restarted one
//!    instance at a time by `deploy/rolling-restart.sh`: every end a clean 1012, no failed
//!    upgrade, every client back within the backoff's cap, no stampede;
//! 2. `kill -9` of the one instance behind nginx, restarted by a supervisor after
//!    [`RESTART_DELAY`]: every client 1006 (no Close frame), 502s until it is back, the gap
//!    measured;
//! 3. an nginx reload with `worker_shutdown_timeout 2s`: the old worker's sockets end about 2 s
//!    after the reload without a Close, and the check says the proxy cut them;
//! 4. the peers' shutdown: Python `websockets` run as its deployment guide says closes with
//!    1001 on SIGTERM; Node `ws` (no handler) dies on it, 1006 for every client;
//! 5. a deploy that hangs: a server that ignores SIGTERM, stopped by a supervisor that waits
//!    [`STOP_TIMEOUT`] before SIGKILL: no connection ends within `--deploy-hung-after`, and the
//!    report says so.
//!
//! Needs Debian's nginx (`make setup`). `cargo test -p wsclose-e2e --test deploy --
//! --nocapture` prints each report.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::watch;
use wsclose_check::deploy::tally::{CutBy, How};
use wsclose_check::deploy::{self, DeployOptions, DeployRun};
use wsclose_check::Options;
use wsclose_e2e::cluster::Cluster;
use wsclose_e2e::nginx::Nginx;
use wsclose_e2e::peers::{node_ws, python_websockets, Peer};
use wsclose_e2e::server::workspace_root;
use wsclose_e2e::{server_binary, ServerProcess};

/// The connections each rehearsal holds (the default).
const CONNECTIONS: u32 = 100;
/// `--for`: a bound only a broken deploy reaches; each case ends when its CMD is done and every
/// connection is back.
const FOR: Duration = Duration::from_secs(60);
/// `--timeout`: each upgrade's.
const TIMEOUT: Duration = Duration::from_secs(5);
/// How long the supervisor of case 2 waits before it restarts the killed instance.
const RESTART_DELAY: Duration = Duration::from_secs(1);
/// nginx's `worker_shutdown_timeout` in case 3.
const WORKER_SHUTDOWN: Duration = Duration::from_secs(2);
/// `--for` of the cases with no restart (4 and 5): nobody comes back, so the run ends there.
const NO_RESTART_FOR: Duration = Duration::from_secs(8);
/// Case 5: how long the supervisor waits after SIGTERM before SIGKILL (systemd's
/// `TimeoutStopSec`, much shortened), and `--deploy-hung-after`, shorter.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);
const HUNG_AFTER: Duration = Duration::from_secs(2);

/// `--deploy --connections CONNECTIONS --during cmd --for FOR`.
fn flags(cmd: String) -> DeployOptions {
    DeployOptions {
        deploy: true,
        connections: CONNECTIONS,
        during: Some(cmd),
        for_: FOR,
        ..DeployOptions::default()
    }
}

/// Runs the rehearsal in this process against `url` with `flags`, and prints its report.
async fn rehearse(url: &str, flags: DeployOptions) -> DeployRun {
    let options = Options {
        timeout: TIMEOUT,
        deploy: flags,
        ..Options::default()
    };
    let run = deploy::run_until(url, &options, std::future::pending())
        .await
        .unwrap_or_else(|error| panic!("{url}: a report, not an error: {error}"));
    println!("{}\n{}", deploy::text(&run), run.summary);
    run
}

/// `(how, code, clean, count)` of every ending group.
fn endings(run: &DeployRun) -> Vec<(How, Option<u16>, bool, u32)> {
    run.deploy
        .endings
        .iter()
        .map(|ending| (ending.how, ending.code, ending.clean, ending.count))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clusters_rolling_restart_is_clean_for_every_client() {
    wsclose_e2e::raise_fd_limit();
    let _heavy = wsclose_e2e::heavy_test_guard().await;
    let mut cluster = Cluster::start("60s", &["--shutdown-code", "1012"]).await;
    let old = [cluster.instance(1).pid, cluster.instance(2).pid];
    let cmd = format!(
        "{} {}",
        workspace_root().join("deploy/rolling-restart.sh").display(),
        cluster.dir().display()
    );
    let run = rehearse(&cluster.ws_url("/ws/drain"), flags(cmd)).await;
    let report = &run.deploy;
    // CMD ended and every connection came back: the run did not need --for.
    assert_eq!(run.stopped, None, "{}", cluster.logs());
    assert_eq!(run.observed.cmd_status, Some(0), "{}", cluster.logs());
    // Both instances restarted: every client ended at least once, each time with a clean 1012.
    for k in [1, 2] {
        cluster.next_start(Duration::from_secs(5)).await.unwrap();
        assert_ne!(cluster.instance(k).pid, old[k as usize - 1]);
    }
    let ended = report.ended();
    assert!(ended >= CONNECTIONS, "{:?}", endings(&run));
    assert_eq!(
        endings(&run),
        [(How::Close, Some(1012), true, ended)],
        "{}",
        cluster.logs()
    );
    assert_eq!(report.cut_by, CutBy::Server);
    assert!(
        report.failed_upgrades.is_empty(),
        "{:?}",
        report.failed_upgrades
    );
    assert_eq!(report.not_back, 0);
    assert!(!report.deploy_hung);
    // Back within the backoff's cap; the jitter keeps the stampede under a quarter.
    let max_gap = report.reconnect_gap_ms.max.expect("gaps measured");
    assert!(max_gap <= run.backoff.cap_ms, "{max_gap} ms");
    assert!(
        report.stampede_peak_per_100ms < CONNECTIONS / 4,
        "stampede {} per 100 ms",
        report.stampede_peak_per_100ms
    );
    assert_eq!(run.exit_status(), 0, "{}", run.summary);
}

/// One instance on `addr` (port 0: a free one), started again [`RESTART_DELAY`] after each
/// exit, as systemd's `Restart=always` with `RestartSec=1` would. Each start's pid goes to
/// the returned receiver, its address too; the task (and the instance, killed on drop) ends
/// when the handle is aborted.
async fn supervised() -> (
    SocketAddr,
    watch::Receiver<u32>,
    tokio::task::JoinHandle<()>,
) {
    let start = |addr: SocketAddr| async move {
        let mut command = tokio::process::Command::new(server_binary());
        command.args(["--addr", &addr.to_string()]);
        ServerProcess::spawn(command)
            .await
            .expect("the instance starts")
    };
    let first = start(([127, 0, 0, 1], 0).into()).await;
    let addr = first.addr();
    let (pid_tx, pid) = watch::channel(first.pid());
    let task = tokio::spawn(async move {
        let mut server = first;
        loop {
            let _ = server.wait_exit(Duration::from_secs(3600)).await;
            tokio::time::sleep(RESTART_DELAY).await;
            server = start(addr).await;
            pid_tx.send_replace(server.pid());
        }
    });
    (addr, pid, task)
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_behind_nginx_is_1006_for_every_client_and_502_until_it_is_back() {
    wsclose_e2e::raise_fd_limit();
    let _heavy = wsclose_e2e::heavy_test_guard().await;
    let (addr, mut pid, supervisor) = supervised().await;
    let _supervisor = AbortOnDrop(supervisor);
    let nginx = Nginx::start(addr, "").await;
    let killed = *pid.borrow();
    // The supervisor reaps the killed process at once, so `kill -0` fails as soon as it died.
    let cmd = format!("kill -9 {killed}; while kill -0 {killed} 2>/dev/null; do sleep 0.02; done");
    let run = rehearse(&nginx.ws_url("/ws/drain"), flags(cmd)).await;
    let report = &run.deploy;
    assert_eq!(run.stopped, None, "{}", nginx.error_log());
    // It came back, as a new process.
    let _ = pid.wait_for(|now| *now != killed).await;
    // Every client saw its connection end without a Close frame (1006), once.
    let abnormal: u32 = endings(&run)
        .iter()
        .filter(|(how, code, clean, _)| *how != How::Close && code.is_none() && !clean)
        .map(|(.., count)| count)
        .sum();
    assert_eq!(abnormal, CONNECTIONS, "{:?}", endings(&run));
    assert_eq!(report.ended(), CONNECTIONS, "{:?}", endings(&run));
    assert_eq!(report.cut_by, CutBy::Server);
    // nginx answered 502 while nothing listened, and only that.
    assert!(!report.failed_upgrades.is_empty());
    for failed in &report.failed_upgrades {
        assert_eq!(failed.status, Some(502), "{:?}", report.failed_upgrades);
    }
    // Everyone came back, and none before the instance: it starts RESTART_DELAY after the
    // killed process was reaped, which is after the deploy began (the times are from there).
    // Not the gap from each client's end: the check may see an end some ms after the kill.
    assert_eq!(report.not_back, 0);
    let first_back = run
        .observed
        .outages
        .iter()
        .filter_map(|outage| outage.back_ms)
        .fold(f64::MAX, f64::min);
    assert!(
        first_back >= RESTART_DELAY.as_secs_f64() * 1000.0,
        "a client was back {first_back} ms after the deploy began, before the instance"
    );
    assert!(
        run.verdicts[0].contains("the process was killed"),
        "{:?}",
        run.verdicts
    );
    assert_eq!(run.exit_status(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_nginx_reload_cuts_the_old_workers_sockets_at_worker_shutdown_timeout() {
    wsclose_e2e::raise_fd_limit();
    let _heavy = wsclose_e2e::heavy_test_guard().await;
    let server = ServerProcess::start(&[]).await;
    let nginx = Nginx::start(
        server.addr(),
        &format!("worker_shutdown_timeout {}s;", WORKER_SHUTDOWN.as_secs()),
    )
    .await;
    let old_workers = nginx.workers();
    assert_eq!(old_workers.len(), 1, "worker_processes 1");
    let old = old_workers[0];
    // The reload, then the wait for the old worker to be gone, as a deploy script does.
    let cmd = format!(
        "kill -HUP {}; while kill -0 {old} 2>/dev/null; do sleep 0.02; done",
        nginx.master_pid()
    );
    let run = rehearse(&nginx.ws_url("/ws/drain"), flags(cmd)).await;
    let report = &run.deploy;
    assert_eq!(run.stopped, None, "{}", nginx.error_log());
    // Every socket of the old worker ended without a Close frame, about worker_shutdown_timeout
    // after the reload (never before it; within the 1 s after it).
    assert_eq!(report.ended(), CONNECTIONS, "{:?}", endings(&run));
    assert_eq!(report.abnormal(), CONNECTIONS, "{:?}", endings(&run));
    let shutdown_ms = WORKER_SHUTDOWN.as_secs_f64() * 1000.0;
    for ending in &report.endings {
        assert_ne!(ending.how, How::Close, "{:?}", endings(&run));
        assert!(
            ending.after_ms.min >= shutdown_ms - 100.0
                && ending.after_ms.max <= shutdown_ms + 1000.0,
            "ended {:?} ms after the reload",
            ending.after_ms
        );
    }
    // The new worker took every reconnect at once: the proxy cut them, not the server.
    assert!(
        report.failed_upgrades.is_empty(),
        "{:?}",
        report.failed_upgrades
    );
    assert_eq!(report.not_back, 0);
    assert_eq!(report.cut_by, CutBy::Proxy);
    assert!(
        run.verdicts[0].contains("the proxy cut them"),
        "{:?}",
        run.verdicts
    );
    // The instance itself never went away.
    assert!(
        server.try_rss_kib().is_ok(),
        "the instance is still running"
    );
}

/// Starts `command` (a peer), says how to install it when it is missing.
async fn start_peer(peer: &Peer, command: tokio::process::Command) -> ServerProcess {
    assert!(
        peer.installed(),
        "{} is not installed ({} is missing): run `make setup-peers`",
        peer.name,
        peer.needs.display()
    );
    ServerProcess::spawn(command)
        .await
        .unwrap_or_else(|error| panic!("{} did not start: {error:#}", peer.name))
}

/// Python `websockets` with the SIGTERM handler of its deployment guide
/// (`e2e/peers/websockets_sigterm.py`).
fn python_with_sigterm_handler() -> (Peer, tokio::process::Command) {
    let peer = python_websockets();
    let mut command = tokio::process::Command::new(&peer.command[0]);
    command
        .arg(workspace_root().join("e2e/peers/websockets_sigterm.py"))
        .arg("127.0.0.1:0");
    (peer, command)
}

/// `(how, code, clean)` of every ending, each once.
fn kinds(run: &DeployRun) -> Vec<(How, Option<u16>, bool)> {
    endings(run)
        .into_iter()
        .map(|(how, code, clean, _)| (how, code, clean))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_closes_with_1001_on_sigterm_and_node_ws_dies_with_1006() {
    wsclose_e2e::raise_fd_limit();
    let _heavy = wsclose_e2e::heavy_test_guard().await;
    let (python, command) = python_with_sigterm_handler();
    let node = node_ws();
    let node_command = node.command("127.0.0.1:0");
    for (peer, command) in [(python, command), (node, node_command)] {
        let server = start_peer(&peer, command).await;
        let cmd = format!("kill -TERM {}", server.pid());
        let run = rehearse(
            &server.ws_url(peer.path),
            DeployOptions {
                for_: NO_RESTART_FOR,
                ..flags(cmd)
            },
        )
        .await;
        let report = &run.deploy;
        println!("{}: {:?}", peer.name, endings(&run));
        // One end each; nothing restarts it, so nobody comes back, and the upgrades after it
        // find nothing listening.
        assert_eq!(
            report.ended(),
            CONNECTIONS,
            "{}: {:?}",
            peer.name,
            endings(&run)
        );
        assert_eq!(report.not_back, CONNECTIONS, "{}", peer.name);
        assert_eq!(report.cut_by, CutBy::Server, "{}", peer.name);
        assert!(
            report
                .failed_upgrades
                .iter()
                .all(|failed| failed.status.is_none()),
            "{}: {:?}",
            peer.name,
            report.failed_upgrades
        );
        if peer.name == "Node ws" {
            assert!(
                kinds(&run)
                    .iter()
                    .all(|(how, code, clean)| *how != How::Close && code.is_none() && !clean),
                "Node ws: {:?}",
                endings(&run)
            );
            assert!(
                run.verdicts[0].contains("the process was killed"),
                "{:?}",
                run.verdicts
            );
        } else {
            assert_eq!(
                kinds(&run),
                [(How::Close, Some(1001), true)],
                "{}",
                peer.name
            );
        }
        assert_eq!(run.exit_status(), 1, "{}: not back", peer.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_ignores_sigterm_makes_a_hung_deploy() {
    wsclose_e2e::raise_fd_limit();
    let _heavy = wsclose_e2e::heavy_test_guard().await;
    // The bench's Python peer with SIGTERM ignored (Python keeps an inherited SIG_IGN): it
    // neither closes nor exits on it.
    let peer = python_websockets();
    let mut command = tokio::process::Command::new("sh");
    command
        .args(["-c", "trap '' TERM; exec \"$0\" \"$@\""])
        .args(&peer.command)
        .arg("127.0.0.1:0");
    let server = start_peer(&peer, command).await;
    let pid = server.pid();
    // The supervisor: SIGTERM, STOP_TIMEOUT for an exit that does not come, then SIGKILL.
    let cmd = format!(
        "kill -TERM {pid}; sleep {}; kill -KILL {pid}",
        STOP_TIMEOUT.as_secs()
    );
    let run = rehearse(
        &server.ws_url(peer.path),
        DeployOptions {
            for_: NO_RESTART_FOR,
            deploy_hung_after: HUNG_AFTER,
            ..flags(cmd)
        },
    )
    .await;
    let report = &run.deploy;
    assert!(report.deploy_hung, "{:?}", endings(&run));
    // Every connection ended only at the SIGKILL, without a Close frame.
    assert_eq!(report.ended(), CONNECTIONS, "{:?}", endings(&run));
    for ending in &report.endings {
        assert_ne!(ending.how, How::Close, "{:?}", endings(&run));
        assert!(
            ending.after_ms.min >= STOP_TIMEOUT.as_secs_f64() * 1000.0,
            "ended {:?} ms after CMD started, before the SIGKILL",
            ending.after_ms
        );
    }
    assert!(
        run.verdicts
            .iter()
            .any(|line| line.starts_with("no connection ended within 2.0 s after CMD started")),
        "{:?}",
        run.verdicts
    );
}
