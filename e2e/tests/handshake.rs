//! The edges of the HTTP handshake, as raw requests against the real binary: each
//! refusal has the right status and one readable line, and the server keeps serving.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use wsclose_e2e::http::{read_response, HttpResponse};
use wsclose_e2e::raw::RawClient;
use wsclose_e2e::ws::assert_healthy;
use wsclose_e2e::ServerProcess;

/// Asserts a plain one-line refusal, with no Rust `Debug` dump in it.
fn assert_one_line(response: &HttpResponse, status: u16, needle: &str) {
    assert_eq!(response.status, status, "body: {:?}", response.body);
    assert_eq!(
        response.body.lines().count(),
        1,
        "body: {:?}",
        response.body
    );
    assert!(response.body.contains(needle), "body: {:?}", response.body);
    assert!(
        !response.body.contains("Rejection") && !response.body.contains('{'),
        "a Debug dump: {:?}",
        response.body
    );
}

/// Sends `request` as is, asserts that it is refused with `status` and one line that contains
/// `needle`, and returns the response.
async fn assert_refused(
    server: &ServerProcess,
    request: &str,
    status: u16,
    needle: &str,
) -> HttpResponse {
    let response = send_raw(server, request).await;
    assert_one_line(&response, status, needle);
    response
}

/// Sends `request` as is and reads the response.
async fn send_raw(server: &ServerProcess, request: &str) -> HttpResponse {
    let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    read_response(&mut stream).await.expect("a response")
}

fn upgrade(version_line: &str, path: &str, extra: &str) -> String {
    format!(
        "GET {path} {version_line}\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

#[tokio::test]
async fn http_1_0_upgrade_is_refused_not_switched() {
    let server = ServerProcess::start(&[]).await;
    assert_refused(
        &server,
        &upgrade("HTTP/1.0", "/ws/drain", "Sec-WebSocket-Version: 13\r\n"),
        400,
        "HTTP/1.1",
    )
    .await;
    assert_healthy(&server).await;
}

#[tokio::test]
async fn wrong_websocket_version_gets_426_naming_13() {
    let server = ServerProcess::start(&[]).await;
    let response = assert_refused(
        &server,
        &upgrade("HTTP/1.1", "/ws/echo", "Sec-WebSocket-Version: 8\r\n"),
        426,
        "13",
    )
    .await;
    assert_eq!(response.header("sec-websocket-version"), Some("13"));
    assert_healthy(&server).await;
}

#[tokio::test]
async fn refusals_are_one_readable_line() {
    let server = ServerProcess::start(&[]).await;
    // A plain GET on a WebSocket path: no upgrade headers.
    assert_refused(
        &server,
        "GET /ws/drain HTTP/1.1\r\nHost: test\r\n\r\n",
        400,
        "not a WebSocket upgrade",
    )
    .await;
    // A query that does not parse.
    assert_refused(
        &server,
        &upgrade(
            "HTTP/1.1",
            "/ws/drain?push_ms=soon",
            "Sec-WebSocket-Version: 13\r\n",
        ),
        400,
        "invalid query",
    )
    .await;
    // A push interval below --min-push-interval (10 ms by default).
    assert_refused(
        &server,
        &upgrade(
            "HTTP/1.1",
            "/ws/drain?push_ms=1",
            "Sec-WebSocket-Version: 13\r\n",
        ),
        400,
        "at least 10",
    )
    .await;
    assert_refused(
        &server,
        "GET /nowhere HTTP/1.1\r\nHost: test\r\n\r\n",
        404,
        "not found",
    )
    .await;
    assert_healthy(&server).await;
}

#[tokio::test]
async fn post_healthz_is_405_with_allow() {
    let server = ServerProcess::start(&[]).await;
    let response = assert_refused(
        &server,
        "POST /healthz HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n",
        405,
        "GET",
    )
    .await;
    assert_eq!(response.header("allow"), Some("GET"));
}

#[tokio::test]
async fn the_first_offered_subprotocol_the_server_speaks_is_chosen() {
    let server =
        ServerProcess::start(&["--subprotocol", "chat.v2", "--subprotocol", "chat.v1"]).await;
    for (offer, chosen) in [
        ("chat.v1, chat.v2", Some("chat.v1")),
        ("mqtt, chat.v2", Some("chat.v2")),
        ("mqtt", None),
    ] {
        let (response, client) = RawClient::upgrade(
            server.addr(),
            "/ws/echo",
            &[("Sec-WebSocket-Protocol", offer)],
        )
        .await
        .expect("upgrade");
        assert_eq!(response.status, 101, "{offer}");
        assert_eq!(response.header("sec-websocket-protocol"), chosen, "{offer}");
        drop(client);
    }
    // Without --subprotocol, an offer gets no choice (the client decides whether to go on).
    let plain = ServerProcess::start(&[]).await;
    let (response, _) = RawClient::upgrade(
        plain.addr(),
        "/ws/echo",
        &[("Sec-WebSocket-Protocol", "chat.v1")],
    )
    .await
    .expect("upgrade");
    assert_eq!(response.status, 101);
    assert_eq!(response.header("sec-websocket-protocol"), None);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_healthy(&plain).await;
}
