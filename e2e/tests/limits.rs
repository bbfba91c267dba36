//! What one client can make the server hold, against the real binary: memory (a Ping flood
//! from a peer that never reads), time (connections that never finish their request head),
//! descriptors (silent connections against a small open-file limit) and sockets (the trap that
//! keeps its TCP connection 5 s after the handshake). Then the smaller holes: static files
//! outside the directory, `?after=` at the end of the sequence, and the Origin's scheme.
//!
//! Run with `cargo test -p wsclose-e2e --test limits -- --nocapture` to see the figures.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio::time::Instant;
use wsclose_e2e::raw::{Frame, RawClient};
use wsclose_e2e::server::server_binary;
use wsclose_e2e::{
    connect_stalling, heavy_test_guard, http_get, raise_fd_limit, MetricsSnapshot, ServerProcess,
    IO_TIMEOUT,
};

/// How much a flood may send: the issue's 300 MiB.
const FLOOD_BYTES: usize = 300 << 20;
/// The flood's frames, written 1 MiB at a time.
const FLOOD_CHUNK: usize = 1 << 20;
/// A write that has not gone through in this long means the server has stopped reading.
const STALLED: Duration = Duration::from_secs(2);
/// The most the server's RSS may grow while it is flooded.
const RSS_GROWTH_BOUND_KIB: u64 = 16 * 1024;

/// One megabyte of masked 125-byte Pings, the largest a control frame may be.
fn ping_chunk() -> Vec<u8> {
    let ping = Frame::ping(vec![b'p'; 125]).encode();
    ping.iter()
        .copied()
        .cycle()
        .take(FLOOD_CHUNK / ping.len() * ping.len())
        .collect()
}

/// The issue's done-when: with 300 MiB of Pings from a client that never reads, on every
/// endpoint, the server's RSS grows by less than 16 MiB, and the client is dropped.
#[tokio::test]
async fn a_ping_flood_that_never_reads_is_bounded_and_dropped_on_every_endpoint() {
    let _heavy = heavy_test_guard().await;
    // The endpoints that read get a keepalive too slow to help: only the Pong's own flush,
    // bounded by write_timeout, can end the flood. The trap that never reads is ended by its
    // lifetime bound, two pong timeouts.
    let reading = [
        "--write-timeout",
        "1s",
        "--ping-interval",
        "30s",
        "--pong-timeout",
        "40s",
    ];
    let never_reads = [
        "--write-timeout",
        "1s",
        "--ping-interval",
        "1s",
        "--pong-timeout",
        "2s",
    ];
    let chunk = ping_chunk();
    for (path, flags, reason) in [
        ("/ws/drain", reading, "write_timeout"),
        ("/ws/echo", reading, "write_timeout"),
        ("/ws/no-drain", never_reads, "lifetime"),
        ("/ws/break-on-close", reading, "write_timeout"),
        ("/ws/lingering-tcp", reading, "write_timeout"),
    ] {
        let server = ServerProcess::start(&flags).await;
        let before = server.rss_kib();
        let mut peak = before;
        let mut client = connect_stalling(server.addr(), path).await;
        let started = Instant::now();
        let mut sent = 0;
        while sent < FLOOD_BYTES {
            match tokio::time::timeout(STALLED, client.send_bytes(&chunk)).await {
                Ok(Ok(())) => sent += chunk.len(),
                Ok(Err(_)) | Err(_) => break, // dropped, or no longer read
            }
            peak = peak.max(server.rss_kib());
        }
        // Whatever the server sent (Pongs, ticks) is read now; then the connection must end.
        let dropped = tokio::time::timeout(IO_TIMEOUT, async {
            while let Ok(Some(_)) = client.read_frame().await {}
        })
        .await;
        peak = peak.max(server.rss_kib());
        let growth = peak.saturating_sub(before);
        println!(
            "{path}: {} MiB of Pings sent, RSS {before} KiB → peak {peak} KiB (+{growth} KiB), \
             dropped after {:?}",
            sent >> 20,
            started.elapsed()
        );
        assert!(dropped.is_ok(), "{path}: still open after the flood");
        let endpoint = path.trim_start_matches("/ws/");
        let ended = MetricsSnapshot::wait_until(server.addr(), IO_TIMEOUT, |page| {
            page.sum("wsclose_closes_total", &[("endpoint", endpoint)]) > 0.0
        })
        .await
        .unwrap_or_else(|page| panic!("{path} never ended: {page:?}"));
        assert_eq!(
            ended.sum(
                "wsclose_closes_total",
                &[("endpoint", endpoint), ("reason", reason)]
            ),
            1.0,
            "{path} ended otherwise: {ended:?}"
        );
        assert!(
            growth < RSS_GROWTH_BOUND_KIB,
            "{path}: RSS grew by {growth} KiB under the flood"
        );
        wsclose_e2e::ws::assert_healthy(&server).await;
    }
}

/// The issue's done-when: with `--header-timeout 2s`, connections that send nothing, part of
/// an HTTP/2 preface, the whole h2c preface, or part of a request head are all closed within
/// 3 s of accept. A connection that finishes its head in time is served.
#[tokio::test]
async fn connections_that_never_finish_a_head_are_closed_within_the_header_timeout() {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    // An empty HTTP/2 SETTINGS frame: length 0, type 4, flags 0, stream 0.
    const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];
    let server = ServerProcess::start(&["--header-timeout", "2s"]).await;
    let addr = server.addr();
    let h2c: Vec<u8> = [PREFACE, SETTINGS].concat();
    let cases: [(&str, &[u8]); 4] = [
        ("nothing", b""),
        ("23 of the 24 preface bytes", &PREFACE[..23]),
        ("the h2c preface and SETTINGS", &h2c),
        ("half a head", b"GET /healthz HTTP/1.1\r\nHost: x\r\n"),
    ];
    let waits = cases.iter().map(|(what, bytes)| async move {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let connected = Instant::now();
        stream.write_all(bytes).await.expect("send");
        let mut scratch = [0u8; 1024];
        let closed = tokio::time::timeout(IO_TIMEOUT, async {
            while matches!(stream.read(&mut scratch).await, Ok(read) if read > 0) {}
        })
        .await;
        (*what, closed.map(|()| connected.elapsed()))
    });
    for (what, closed) in futures::future::join_all(waits).await {
        println!("{what}: closed after {closed:?}");
        let after = closed.unwrap_or_else(|_| panic!("{what}: still open after {IO_TIMEOUT:?}"));
        assert!(
            after < Duration::from_secs(3),
            "{what}: closed after {after:?}"
        );
    }
    let healthz = http_get(addr, "/healthz").await.expect("a finished head");
    assert_eq!(healthz.status, 200);
}

/// The issue's done-when: 300 silent connections against a 256-descriptor limit leave
/// `/healthz` answering in under 1 s. The server lowers its cap to fit the limit, so it never
/// runs out of descriptors: the connections past it are answered 503 and closed at once, and
/// so is `/healthz` while the cap is full (it says so). When they go, it is 200 again.
#[tokio::test]
async fn silent_connections_past_the_descriptor_limit_leave_healthz_answering() {
    const SILENT: usize = 300;
    raise_fd_limit();
    let _heavy = heavy_test_guard().await;
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(r#"ulimit -n 256 && exec "$0" "$@""#)
        .arg(server_binary())
        .args(["--addr", "127.0.0.1:0", "--header-timeout", "60s"]);
    let server = ServerProcess::spawn(command).await.expect("server starts");
    // The listener and tokio's own descriptors.
    let idle = sockets_held(server.pid());
    let mut silent = Vec::with_capacity(SILENT);
    for _ in 0..SILENT {
        silent.push(TcpStream::connect(server.addr()).await.expect("connect"));
    }
    // The next step needs the cap full and no refusal in flight (else /healthz is closed at
    // accept, unanswered): every connection taken off the listen queue, and the server
    // holding exactly its cap, which it logs.
    let log = server.stderr_text();
    let cap: usize = log
        .split_once(" cap=")
        .and_then(|(_, rest)| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no lowered cap in the log:\n{log}"));
    let settled = Instant::now() + IO_TIMEOUT;
    while accept_queue(server.addr()) > 0 || sockets_held(server.pid()) != idle + cap {
        assert!(
            Instant::now() < settled,
            "{} sockets held, cap {cap} besides {idle}",
            sockets_held(server.pid())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let asked = Instant::now();
    let healthz = tokio::time::timeout(Duration::from_secs(1), http_get(server.addr(), "/healthz"))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "/healthz silent for 1 s; server log:\n{}",
                server.stderr_text()
            )
        })
        .expect("an HTTP answer");
    println!(
        "/healthz with {SILENT} silent connections: {} {:?} in {:?}",
        healthz.status,
        healthz.body.trim(),
        asked.elapsed()
    );
    assert_eq!(healthz.status, 503);
    assert_eq!(healthz.body, "too many connections\n");
    drop(silent);
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        if let Ok(response) = http_get(server.addr(), "/healthz").await {
            if response.status == 200 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "/healthz not 200 again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = server.stderr_text();
    assert!(log.contains("lowered to fit the open-file limit"), "{log}");
    assert!(
        !log.contains("accept failed"),
        "ran out of descriptors:\n{log}"
    );
}

/// Connections waiting in the listen queue of the socket listening on `addr`, from
/// `/proc/net/tcp` (for a listening socket, `rx_queue` is its accept queue).
fn accept_queue(addr: SocketAddr) -> u32 {
    procfs::net::tcp()
        .expect("/proc/net/tcp")
        .into_iter()
        .find(|entry| entry.local_address == addr && entry.state == procfs::net::TcpState::Listen)
        .expect("the server's listening socket")
        .rx_queue
}

/// The sockets the server holds now, from `/proc/PID/fd`.
fn sockets_held(pid: u32) -> usize {
    let process = procfs::process::Process::new(pid as i32).expect("the server's /proc entry");
    process
        .fd()
        .expect("its descriptors")
        .filter_map(Result::ok)
        .filter(|fd| matches!(fd.target, procfs::process::FDTarget::Socket(_)))
        .count()
}

/// The issue's done-when: at no moment does the server hold more sockets than
/// `--max-connections` plus a stated constant (`REFUSING`, 64 refusals in flight). `/ws/lingering-tcp` holds
/// each socket 5 s after its close handshake; those sockets keep their slots, so sessions past
/// the cap are refused instead of piling up.
#[tokio::test]
async fn lingering_sockets_count_against_the_connection_cap() {
    const CAP: usize = 5;
    /// The refusals still in their linger (the server allows 64); with one client at a time,
    /// the last one or two.
    const OVER_CAP: usize = 2;
    let _heavy = heavy_test_guard().await;
    let server = ServerProcess::start(&["--max-connections", "5"]).await;
    // The listener and tokio's signal pipe.
    let idle = sockets_held(server.pid());
    let (mut sessions, mut refused, mut most) = (0, 0, 0);
    let until = Instant::now() + Duration::from_secs(7);
    while Instant::now() < until {
        match RawClient::upgrade(server.addr(), "/ws/lingering-tcp", &[]).await {
            Ok((_, Some(mut client))) => {
                client
                    .send(&Frame::close(1000, b""))
                    .await
                    .expect("send Close");
                let _ = tokio::time::timeout(IO_TIMEOUT, client.expect_close()).await;
                sessions += 1;
            }
            Ok((response, None)) => {
                assert_eq!(response.status, 503, "{response:?}");
                refused += 1;
            }
            Err(_) => refused += 1, // closed before the answer could be read
        }
        most = most.max(sockets_held(server.pid()) - idle);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "{sessions} lingering-tcp sessions, {refused} refused; at most {most} connection \
         sockets held (cap {CAP} + {OVER_CAP}), besides {idle} of an idle server"
    );
    assert!(sessions >= CAP, "only {sessions} sessions");
    assert!(refused > 0, "the cap was never reached");
    assert!(most <= CAP + OVER_CAP, "{most} sockets held");
}

/// Symlinks out of `--static-dir` and dotfiles are 404; a symlink that stays inside is served.
#[tokio::test]
async fn static_files_stay_inside_the_directory() {
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(dir.path().join("index.html"), "<p>demo</p>").unwrap();
    std::fs::create_dir(dir.path().join("pkg")).unwrap();
    std::fs::write(dir.path().join("pkg/app.js"), "// app").unwrap();
    std::fs::write(dir.path().join(".hidden"), "secret").unwrap();
    std::fs::create_dir(dir.path().join(".git")).unwrap();
    std::fs::write(dir.path().join(".git/config"), "secret").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("passwd")).unwrap();
    std::os::unix::fs::symlink("index.html", dir.path().join("alias.html")).unwrap();
    let static_dir = dir.path().to_str().expect("utf-8");
    let server = ServerProcess::start(&["--static-dir", static_dir]).await;
    let status = |path: &'static str| {
        let addr: SocketAddr = server.addr();
        async move { http_get(addr, path).await.expect("an answer").status }
    };
    assert_eq!(status("/").await, 200);
    let script = http_get(server.addr(), "/pkg/app.js")
        .await
        .expect("an answer");
    assert_eq!(
        (script.status, script.body.as_str()),
        (200, "// app"),
        "each file is served as itself"
    );
    assert_eq!(status("/alias.html").await, 200, "a symlink inside");
    for path in ["/passwd", "/.hidden", "/.git/config", "/%2Ehidden"] {
        assert_eq!(status(path).await, 404, "{path}");
    }
}

/// `?after=` may not push the sequence past 2^53-1 (what JavaScript holds exactly), so it never
/// wraps: the last tick is that number, then Close 1000; one more is refused.
#[tokio::test]
async fn after_stops_at_the_end_of_the_sequence() {
    const MAX_SEQ: u64 = (1 << 53) - 1;
    let server = ServerProcess::start(&[]).await;
    for after in [MAX_SEQ, u64::MAX - 1] {
        let path = format!("/ws/drain?after={after}");
        let (response, _) = RawClient::upgrade(server.addr(), &path, &[]).await.unwrap();
        assert_eq!(response.status, 400, "{path}");
    }
    let path = format!("/ws/drain?push_ms=10&after={}", MAX_SEQ - 1);
    let mut client = RawClient::connect(server.addr(), &path).await;
    let tick = tokio::time::timeout(IO_TIMEOUT, client.read_frame())
        .await
        .expect("a tick in time")
        .unwrap()
        .expect("no EOF");
    let tick: serde_json::Value = serde_json::from_slice(&tick.payload).expect("JSON");
    assert_eq!(tick["seq"].as_u64(), Some(MAX_SEQ));
    let (code, _) = tokio::time::timeout(IO_TIMEOUT, client.expect_close())
        .await
        .expect("a Close in time");
    assert_eq!(code, Some(1000), "the ticks end after the last seq");
}

/// An Origin with another scheme is another origin: refused, unless a TLS proxy says with
/// `X-Forwarded-Proto: https` that the browser used https.
#[tokio::test]
async fn the_origin_check_compares_the_scheme() {
    let server = ServerProcess::start(&[]).await;
    let https = format!("https://{}", server.addr());
    let status = |headers: Vec<(&'static str, String)>| {
        let addr = server.addr();
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            RawClient::upgrade(addr, "/ws/drain", &headers)
                .await
                .unwrap()
                .0
                .status
        }
    };
    assert_eq!(status(vec![("Origin", https.clone())]).await, 403);
    assert_eq!(
        status(vec![
            ("Origin", https),
            ("X-Forwarded-Proto", "https".into())
        ])
        .await,
        101
    );
    let http = format!("http://{}", server.addr());
    assert_eq!(status(vec![("Origin", http)]).await, 101);
}
