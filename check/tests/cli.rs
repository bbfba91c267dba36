//! The command line on bad input: each case exits with status 2 and one line that names the
//! cause, before any check runs.

use std::process::{Command, Output};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wsclose-check"))
        .args(args)
        .output()
        .expect("run wsclose-check")
}

/// Exit status 2, nothing on stdout, and exactly one line on stderr that contains `cause`.
fn assert_refused(output: &Output, cause: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(output.stdout.is_empty(), "{output:?}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(cause), "{stderr:?} lacks {cause:?}");
}

#[test]
fn not_a_url() {
    assert_refused(&check(&["not a url"]), "not a WebSocket URL: not a url");
}

#[test]
fn not_a_websocket_scheme() {
    assert_refused(&check(&["http://127.0.0.1:1/"]), "expected ws://");
}

#[test]
fn a_bad_flag() {
    assert_refused(
        &check(&["ws://127.0.0.1:1/", "--close-wait", "soon"]),
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
    assert_refused(&check(&[&url]), "connection refused");
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
    let output = tokio::task::spawn_blocking(move || check(&[&url]))
        .await
        .unwrap();
    server.abort();
    assert_refused(
        &output,
        "is not a WebSocket endpoint: the upgrade got HTTP 200",
    );
}
