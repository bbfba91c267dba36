//! The `wsclose-server` command line: bad input exits non-zero with exactly one line on stderr
//! (and prints no listening line); `--help` lists the flags. Each run has every `WSCLOSE_*`
//! variable and `RUST_LOG` removed, so a developer's shell cannot change what it prints.

use std::time::Duration;

use assert_cmd::Command;
use predicates::prelude::*;

/// Every run must end within this; assert_cmd kills it then and the test fails.
const EXIT_BOUND: Duration = Duration::from_secs(10);

/// `wsclose-server` with exactly `args` (no `--addr` added), in a clean environment, bounded by
/// [`EXIT_BOUND`].
fn server(args: &[&str]) -> Command {
    let mut command = Command::cargo_bin("wsclose-server").expect("the wsclose-server binary");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("WSCLOSE_") {
            command.env_remove(name);
        }
    }
    command
        .env_remove("RUST_LOG")
        .args(args)
        .timeout(EXIT_BOUND);
    command
}

/// Asserts a failed start: non-zero exit, nothing on stdout, one stderr line containing
/// `needle`.
fn assert_one_line_failure(args: &[&str], needle: &str) {
    let one_line =
        predicate::function(|stderr: &str| stderr.lines().count() == 1).fn_name("one stderr line");
    server(args)
        .assert()
        .failure()
        .stdout(predicate::str::is_empty())
        .stderr(one_line.and(predicate::str::contains(needle)));
}

#[test]
fn unknown_flag() {
    assert_one_line_failure(&["--addr", "127.0.0.1:0", "--bogus"], "--bogus");
}

#[test]
fn unparsable_duration() {
    let args = ["--addr", "127.0.0.1:0", "--push-interval", "banana"];
    assert_one_line_failure(&args, "banana");
}

#[test]
fn unparsable_size() {
    let args = ["--addr", "127.0.0.1:0", "--max-message-size", "64k"];
    assert_one_line_failure(&args, "64k");
}

#[test]
fn ping_interval_not_shorter_than_pong_timeout() {
    let args = [
        "--addr",
        "127.0.0.1:0",
        "--ping-interval",
        "2s",
        "--pong-timeout",
        "1s",
    ];
    assert_one_line_failure(&args, "--ping-interval");
}

#[test]
fn port_already_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    assert_one_line_failure(&["--addr", &addr], &addr);
}

#[test]
fn help_lists_the_flags() {
    server(&["--help"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("Usage: wsclose-server")
                .and(predicate::str::contains("--addr"))
                .and(predicate::str::contains("--max-message-size")),
        )
        .stderr(predicate::str::is_empty());
}
