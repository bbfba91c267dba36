//! The bench's command lines: bad flags get exit status 2 and one line naming the flag, before
//! anything is measured; `close-handshakes` against a real server, and one that is not there.
//! Every run is bounded by [`RUN_TIMEOUT`] (assert_cmd kills the binary past it).

use std::time::Duration;

use assert_cmd::Command;
use wsclose_e2e::ServerProcess;

/// The longest one run of a bench binary may take in these tests: flag errors answer at once,
/// and the measuring run makes ten close handshakes on loopback.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

fn run(binary: &str, args: &[&str]) -> std::process::Output {
    Command::cargo_bin(binary)
        .unwrap_or_else(|error| panic!("{binary}: {error}"))
        .args(args)
        .timeout(RUN_TIMEOUT)
        .output()
        .unwrap_or_else(|error| panic!("run {binary}: {error}"))
}

fn bench(args: &[&str]) -> std::process::Output {
    run("wsclose-bench", args)
}

#[test]
fn bad_flags_exit_2_with_one_line() {
    for (args, needle) in [
        (&["--connections", "0"][..], "--connections"),
        (&["--rounds", "many"][..], "--rounds"),
        (&["--peer-idle"][..], "--peer-idle"),
        (&["--frobnicate"][..], "--frobnicate"),
    ] {
        let output = bench(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("wsclose-bench: ") && stderr.contains(needle),
            "{args:?}: {stderr}"
        );
        assert!(output.stdout.is_empty(), "{args:?} measured something");
    }
}

#[test]
fn help_lists_every_flag_with_its_defaults() {
    let output = bench(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--quick",
        "--connections",
        "--handshakes",
        "--rtt-iterations",
        "--no-browser",
        "--browser-probes",
        "--out",
        "--server",
        "--no-peers",
        "--rounds",
        "--peer-handshakes",
        "--peer-idle",
        "--close-idle-ms",
    ] {
        assert!(help.contains(flag), "--help has no {flag}:\n{help}");
    }
    assert!(help.contains("less 1000"), "{help}");
    assert!(!help.contains("--scale-client"), "{help}");
}

fn close_handshakes(args: &[&str]) -> std::process::Output {
    run("close-handshakes", args)
}

/// The bench's bare tokio-tungstenite server on a free port, killed when dropped.
async fn bare_peer() -> (ServerProcess, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_bare-peer"));
    command.arg("127.0.0.1:0");
    let peer = ServerProcess::spawn(command)
        .await
        .expect("start bare-peer");
    let url = peer.ws_url("/ws");
    (peer, url)
}

#[tokio::test(flavor = "multi_thread")]
async fn close_handshakes_times_each_server_and_its_ratio_to_the_first() {
    let ((_first, first), (_second, second)) = (bare_peer().await, bare_peer().await);
    let output = close_handshakes(&["--rounds", "2", "--handshakes", "5", &first, &second]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|line| line.contains("ws://"))
        .collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    assert!(
        rows[0].contains(&first) && rows[0].contains("1.00×"),
        "{stdout}"
    );
    assert!(rows[1].contains(&second), "{stdout}");
}

#[test]
fn close_handshakes_says_in_one_line_what_is_wrong() {
    // Bad flags: status 2. A server that is not there: status 1, naming the url.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("ws://{}/ws", listener.local_addr().unwrap())
    };
    for (args, status, needle) in [
        (vec!["--rounds", "0", "ws://127.0.0.1:1/ws"], 2, "--rounds"),
        (vec![], 2, "URL"),
        (vec![closed.as_str()], 1, closed.as_str()),
    ] {
        let output = close_handshakes(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(status), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("close-handshakes: ") && stderr.contains(needle),
            "{args:?}: {stderr}"
        );
        assert!(output.stdout.is_empty(), "{args:?} measured something");
    }
}
