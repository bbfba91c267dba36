//! Bad input at the command line: the server exits non-zero with exactly one line on stderr
//! (and prints no listening line).

use std::process::Output;
use std::time::Duration;

use wsclose_e2e::run_to_exit;

const EXIT_BOUND: Duration = Duration::from_secs(10);

/// Asserts a failed start: non-zero exit, nothing on stdout, one stderr line containing `needle`.
fn assert_one_line_failure(output: &Output, needle: &str) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("exit {:?}, stderr: {stderr:?}", output.status.code());
    assert!(!output.status.success(), "exited 0; stderr: {stderr:?}");
    assert!(stdout.is_empty(), "printed to stdout: {stdout:?}");
    let lines: Vec<&str> = stderr.trim_end_matches('\n').lines().collect();
    assert_eq!(lines.len(), 1, "want one stderr line, got: {stderr:?}");
    assert!(
        lines[0].contains(needle),
        "stderr line {:?} does not mention {needle:?}",
        lines[0]
    );
}

#[tokio::test]
async fn unknown_flag() {
    let output = run_to_exit(&["--addr", "127.0.0.1:0", "--bogus"], EXIT_BOUND)
        .await
        .unwrap();
    assert_one_line_failure(&output, "--bogus");
}

#[tokio::test]
async fn unparsable_duration() {
    let output = run_to_exit(
        &["--addr", "127.0.0.1:0", "--push-interval", "banana"],
        EXIT_BOUND,
    )
    .await
    .unwrap();
    assert_one_line_failure(&output, "banana");
}

#[tokio::test]
async fn unparsable_size() {
    let output = run_to_exit(
        &["--addr", "127.0.0.1:0", "--max-message-size", "64k"],
        EXIT_BOUND,
    )
    .await
    .unwrap();
    assert_one_line_failure(&output, "64k");
}

#[tokio::test]
async fn ping_interval_not_shorter_than_pong_timeout() {
    let output = run_to_exit(
        &[
            "--addr",
            "127.0.0.1:0",
            "--ping-interval",
            "2s",
            "--pong-timeout",
            "1s",
        ],
        EXIT_BOUND,
    )
    .await
    .unwrap();
    assert_one_line_failure(&output, "--ping-interval");
}

#[tokio::test]
async fn port_already_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = run_to_exit(&["--addr", &addr], EXIT_BOUND).await.unwrap();
    assert_one_line_failure(&output, &addr);
}
