//! `--deploy` against servers that try to hold it: each run ends within `--for` plus
//! [`DEPLOY_MARGIN`], under [`RSS_BOUND_KIB`], with the report of what the connections saw.

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinHandle;

use super::*;

/// How far past `--for` a run may end (the bound).
const DEPLOY_MARGIN: Duration = Duration::from_secs(10);
/// `--for` in these tests.
const FOR: Duration = Duration::from_secs(5);
/// `--for` as the flag takes it.
const FOR_FLAG: &str = "5s";

/// The binary with `--deploy --connections N --for 5s --timeout 2s --json` and `extra`,
/// against `ws://ADDR/`.
async fn rehearse(addr: SocketAddr, connections: u32, extra: &[&str]) -> Run {
    let connections = connections.to_string();
    let flags = [
        "--deploy",
        "--connections",
        &connections,
        "--for",
        FOR_FLAG,
        "--timeout",
        "2s",
        "--json",
    ];
    check(args(
        &format!("ws://{addr}/"),
        &[&flags[..], extra].concat(),
    ))
    .await
}

impl Run {
    /// Ended within `--for` + [`DEPLOY_MARGIN`] and under the RSS bound, with one stderr line.
    fn assert_bounded(&self, status: i32) {
        assert_eq!(self.status, Some(status), "{self:#?}");
        assert!(self.elapsed < FOR + DEPLOY_MARGIN, "{self:#?}");
        assert!(self.peak_rss_kib < RSS_BOUND_KIB, "{self:#?}");
        assert!(self.peak_rss_kib > 0, "no RSS read: {self:#?}");
        assert_eq!(self.stderr.lines().count(), 1, "{self:#?}");
    }
}

/// A server that upgrades the first `held` connections, holds them until all are upgraded and
/// `after` more has passed, then resets them; every later connection goes to `later`.
async fn cut_then<F, Fut>(held: usize, after: Duration, later: F) -> (SocketAddr, JoinHandle<()>)
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let seen = Arc::new(AtomicUsize::new(0));
    let (upgraded, all_up) = tokio::sync::watch::channel(0usize);
    let upgraded = Arc::new(upgraded);
    let later = Arc::new(later);
    serve(move |mut stream| {
        let (seen, upgraded, mut all_up, later) = (
            seen.clone(),
            upgraded.clone(),
            all_up.clone(),
            later.clone(),
        );
        async move {
            // A connection that sends nothing (the check's reachability probe) is no client.
            if stream.peek(&mut [0u8; 1]).await.unwrap_or(0) == 0 {
                return;
            }
            if seen.fetch_add(1, Ordering::SeqCst) >= held {
                return later(stream).await;
            }
            if accept_upgrade(&mut stream).await.is_none() {
                return;
            }
            upgraded.send_modify(|n| *n += 1);
            let _ = all_up.wait_for(|n| *n >= held).await;
            tokio::time::sleep(after).await;
            // RST: linger 0, then drop.
            let _ = stream.set_zero_linger();
        }
    })
    .await
}

#[tokio::test]
async fn deploy_a_flood_of_frames_on_every_connection_is_skipped_not_kept() {
    // 20 connections, each sent 60 MiB frame headers with their payload, back to back, and
    // empty frames between: nothing ends, the run ends at --for.
    let (addr, server) = serve(|mut stream| async move {
        if accept_upgrade(&mut stream).await.is_none() {
            return;
        }
        let tiny = [OP_BINARY | 0x80, 0].repeat(16 * 1024);
        while write_huge_frame(&mut stream).await && stream.write_all(&tiny).await.is_ok() {}
    })
    .await;
    let run = rehearse(addr, 20, &[]).await;
    server.abort();
    run.assert_bounded(0);
    assert!(run.stderr.contains("--for 5s reached"), "{run:#?}");
    let deploy = &json(&run)["deploy"];
    assert_eq!(deploy["connections"], 20, "{deploy}");
    assert_eq!(deploy["endings"], serde_json::json!([]), "{deploy}");
    assert_eq!(deploy["not_back"], 0, "{deploy}");
}

#[tokio::test]
async fn deploy_upgrades_that_never_finish_cannot_hold_the_run_past_for() {
    // 10 connections held, then reset; every upgrade after that is answered one byte every
    // 200 ms, forever.
    let (addr, server) = cut_then(10, Duration::from_millis(300), |mut stream| async move {
        let _ = stream.read(&mut [0u8; 4096]).await;
        for byte in b"HTTP/1.1 101 Switching Protocols\r\nX-Pad: "
            .iter()
            .cycle()
        {
            if stream.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    let run = rehearse(addr, 10, &[]).await;
    server.abort();
    run.assert_bounded(1);
    let deploy = &json(&run)["deploy"];
    assert_eq!(deploy["endings"][0]["how"], "rst", "{deploy}");
    assert_eq!(deploy["endings"][0]["count"], 10, "{deploy}");
    assert_eq!(deploy["not_back"], 10, "{deploy}");
    assert_eq!(deploy["cut_by"], "server", "{deploy}");
    // The upgrades got no HTTP answer within --timeout.
    assert_eq!(
        deploy["failed_upgrades"][0]["status"],
        serde_json::Value::Null,
        "{deploy}"
    );
    assert!(
        run.stderr.contains("fail: 10 ended with no Close frame"),
        "{run:#?}"
    );
}

/// The process ids whose process group is `group`, zombies left out (a process killed and not
/// yet reaped by its new parent runs no more).
fn group_members(group: u32) -> Vec<u32> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...: the fields after the last ')'.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        if fields[2].parse::<u32>() == Ok(group) && fields[0] != "Z" {
            members.push(pid);
        }
    }
    members
}

#[tokio::test]
async fn deploy_a_reset_storm_and_a_cmd_that_ignores_sigterm_end_at_for() {
    // 50 connections held, then reset; every later upgrade is accepted and reset at once. CMD
    // ignores SIGTERM and leaves a child behind: both must be gone when the check is. (Its output
    // goes to /dev/null, so that a group left behind cannot hold the check's stderr open.)
    let (addr, server) = cut_then(50, Duration::from_millis(200), |mut stream| async move {
        if accept_upgrade(&mut stream).await.is_some() {
            let _ = stream.set_zero_linger();
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("cmd.pid");
    let cmd = format!(
        "exec >/dev/null 2>&1; echo $$ > {}; trap '' TERM; sleep 600 & sleep 600",
        pid_file.display()
    );
    let run = rehearse(addr, 50, &["--during", &cmd]).await;
    server.abort();
    run.assert_bounded(1);
    let group: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let left = group_members(group);
    if !left.is_empty() {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(i32::try_from(group).unwrap()),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert_eq!(left, Vec::<u32>::new(), "CMD's group outlived the check");
    let deploy = &json(&run)["deploy"];
    let rst: u64 = deploy["endings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|ending| ending["how"] == "rst")
        .map(|ending| ending["count"].as_u64().unwrap())
        .sum();
    // The 50 first ends, and the reconnects reset since (accepted, then reset: who did it, the
    // server or a proxy, the check cannot tell, so cut_by is not asserted).
    assert!(rst >= 50, "{deploy}");
    assert_eq!(deploy["during"], cmd.as_str(), "{deploy}");
    assert!(!deploy["deploy_hung"].as_bool().unwrap(), "{deploy}");
}

#[tokio::test]
async fn deploy_ctrl_c_prints_the_report_so_far_and_exits_130() {
    // A server that holds every connection: the run would last --for (1 min). It pings each
    // connection once: a Pong means the check holds it open.
    let (ponged, mut pongs) = tokio::sync::watch::channel(0u32);
    let ponged = Arc::new(ponged);
    let (addr, server) = serve(move |mut stream| {
        let ponged = ponged.clone();
        async move {
            if accept_upgrade(&mut stream).await.is_none() {
                return;
            }
            let ping = Frame::new(OP_PING, b"open?".to_vec()).unmasked().encode();
            if stream.write_all(&ping).await.is_err() {
                return;
            }
            let mut buf = BytesMut::new();
            loop {
                match next_frame(&mut stream, &mut buf).await {
                    Ok(Some(frame)) if frame.opcode == OP_PONG => break,
                    Ok(Some(_)) => {}
                    _ => return,
                }
            }
            ponged.send_modify(|n| *n += 1);
            silent(stream).await;
        }
    })
    .await;
    let url = format!("ws://{addr}/");
    let started = Instant::now();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_wsclose-check"))
        .args([
            &url,
            "--deploy",
            "--connections",
            "10",
            "--for",
            "1m",
            "--json",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wsclose-check");
    // Every connection is held (all ten answered the Ping), then Ctrl-C.
    let _ = tokio::time::timeout(TIME_BOUND, pongs.wait_for(|n| *n >= 10)).await;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    server.abort();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stdout}\n{stderr}");
    assert!(started.elapsed() < TIME_BOUND, "{:?}", started.elapsed());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("interrupted by SIGINT"), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("the JSON report");
    assert_eq!(report["deploy"]["connections"], 10, "{report}");
    assert_eq!(report["deploy"]["not_back"], 0, "{report}");
}
