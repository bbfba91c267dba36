//! The command line on bad input: each case exits with status 2 and one line that names the
//! cause, before any check runs. Run with assert_cmd, matched with predicates.

use std::time::Duration;

use assert_cmd::Command;
use predicates::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every run must end within this; assert_cmd kills it then and the test fails.
const EXIT_BOUND: Duration = Duration::from_secs(30);

/// `wsclose-check` with `args`, bounded by [`EXIT_BOUND`].
fn check(args: &[&str]) -> Command {
    let mut command = Command::cargo_bin("wsclose-check").expect("the wsclose-check binary");
    command.args(args).timeout(EXIT_BOUND);
    command
}

/// Exactly one line (with or without its newline) that contains `needle`.
fn one_line_containing(needle: &str) -> impl Predicate<str> {
    predicate::str::contains(needle)
        .and(predicate::function(|text: &str| text.lines().count() == 1).fn_name("one line"))
}

/// Exit status 2, nothing on stdout, and exactly one line on stderr that contains `cause`.
fn assert_refused(args: &[&str], cause: &str) {
    check(args)
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(one_line_containing(cause));
}

#[test]
fn not_a_url() {
    assert_refused(&["not a url"], "not a WebSocket URL: not a url");
}

#[test]
fn not_a_websocket_scheme() {
    assert_refused(&["http://127.0.0.1:1/"], "expected ws://");
}

#[test]
fn a_bad_flag() {
    assert_refused(
        &["ws://127.0.0.1:1/", "--close-wait", "soon"],
        "invalid value 'soon' for '--close-wait",
    );
}

#[test]
fn an_unreachable_port() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }; // closed again: nothing listens there now
    let url = format!("ws://127.0.0.1:{port}/ws");
    assert_refused(&[&url], "connection refused");
}

#[test]
fn help_names_the_exit_statuses() {
    check(&["--help"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("Usage: wsclose-check").and(
                predicate::str::contains("Exit status:").and(predicate::str::contains("--skip")),
            ),
        )
        .stderr(predicate::str::is_empty());
}

#[tokio::test]
async fn a_server_that_is_not_websocket() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    // A plain HTTP server: 200 and a body for every request.
    let server = tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
                    .await;
            });
        }
    });
    let asserted = tokio::task::spawn_blocking(move || {
        assert_refused(
            &[&url],
            "is not a WebSocket endpoint: the upgrade got HTTP 200",
        )
    })
    .await;
    server.abort();
    asserted.unwrap();
}

#[test]
fn deploy_flags_need_deploy_and_sane_values() {
    assert_refused(
        &["ws://127.0.0.1:1/", "--during", "true"],
        "the following required arguments were not provided",
    );
    assert_refused(
        &["ws://127.0.0.1:1/", "--deploy", "--connections", "0"],
        "invalid value '0' for '--connections",
    );
    assert_refused(
        &["ws://127.0.0.1:1/", "--deploy", "--for", "soon"],
        "invalid value 'soon' for '--for",
    );
}
