//! The checks, in the order they run. Each opens its own connection (the protocol cases one
//! each, in parallel), so one broken behaviour cannot hide another.

use std::time::Duration;

use futures::future::join_all;
use serde::Serialize;
use tokio::time::Instant;

use crate::predict::CloseBehaviour;
use tokio::net::TcpStream;

use crate::raw::{Frame, Io, RawClient, RawCloseOutcome, OP_PING, OP_PONG, RSV1};
use crate::{io_cause, CheckError, Options, Target};

/// After the server's Close, how long TCP may stay open and still pass `tcp-closed`. RFC 6455
/// §7.1.1: the server closes the TCP connection first, right after the handshake.
pub const TCP_CLOSE_BOUND: Duration = Duration::from_millis(100);
/// How long `tcp-closed` watches for the end of TCP: longer than Chromium's 2 s wait for it.
pub const TCP_WATCH: Duration = Duration::from_secs(3);
/// The `Origin` of the `origin` check: a site no server should trust.
pub const FOREIGN_ORIGIN: &str = "https://wsclose-check.invalid";
/// The payload of the `ping-answered` check's Ping.
pub const PING_PAYLOAD: &[u8] = b"wsclose-check";

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The server does the right thing.
    Pass,
    /// Not wrong enough to break browsers, but worth fixing.
    Warn,
    /// Browsers (or security) will suffer.
    Fail,
    /// Not run: not asked for, or nothing to check after an earlier failure.
    Skip,
}

/// One check's outcome: `{"id", "verdict", "ms", "detail", "fix"}` in JSON.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// Stable id: `handshake`, `close-answered`, `close-code-echoed`, `tcp-closed`,
    /// `ping-answered`, `keepalive`, `protocol-errors`, `max-message-size`, `origin`.
    pub id: &'static str,
    /// How it came out.
    pub verdict: Verdict,
    /// The figure it measured, in milliseconds, when it measured one.
    pub ms: Option<f64>,
    /// What was observed, in one sentence.
    pub detail: String,
    /// What to change, when the verdict is not `pass`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl CheckResult {
    fn new(id: &'static str, verdict: Verdict, ms: Option<f64>, detail: String) -> Self {
        CheckResult {
            id,
            verdict,
            ms,
            detail,
            fix: None,
        }
    }

    fn fix(mut self, fix: &str) -> Self {
        self.fix = Some(fix.to_owned());
        self
    }
}

const FIX_READ_LOOP: &str = "keep a read loop running for the whole life of the socket: control \
    frames are answered only while the read half is polled (gorilla: always run a read loop; \
    Rust: poll socket.next() until it returns None).";
const FIX_KEEP_POLLING: &str = "do not break out of the read loop on the peer's Close: \
    tungstenite only queues the reply, and the next read sends it; poll until the stream ends.";
const FIX_DROP_SOCKET: &str = "drop the whole socket the moment the close handshake ends; a \
    writer task that still holds the write half keeps TCP open.";

/// Runs every check against `target`; also returns what the close handshake did.
pub async fn run_all(
    target: &Target,
    options: &Options,
) -> Result<(Vec<CheckResult>, CloseBehaviour), CheckError> {
    let mut results = Vec::new();
    let (handshake, refused) = handshake(target).await?;
    results.push(handshake);
    if let Some(status) = refused {
        for id in [
            "close-answered",
            "close-code-echoed",
            "tcp-closed",
            "ping-answered",
            "keepalive",
            "protocol-errors",
            "max-message-size",
        ] {
            let detail = "the upgrade was refused".to_owned();
            results.push(CheckResult::new(id, Verdict::Skip, None, detail));
        }
        results.push(origin(target).await?);
        return Ok((results, CloseBehaviour::Refused { status }));
    }
    let behaviour = close_behaviour(target, options).await?;
    results.push(close_answered(&behaviour, options));
    results.push(close_code_echoed(target, options, &behaviour).await?);
    results.push(tcp_closed(&behaviour));
    results.push(ping_answered(target, options).await?);
    results.push(keepalive(target, options).await?);
    results.push(protocol_errors(target, options).await?);
    results.push(max_message_size(target, options).await?);
    results.push(origin(target).await?);
    Ok((results, behaviour))
}

/// A raw client over TCP, or over TLS for `wss://`.
pub type Client = RawClient<Box<dyn Io>>;

/// Upgrades with `origin` (over TLS for `wss://`); the response, and the client when it is a
/// 101.
async fn upgrade(
    target: &Target,
    origin: &str,
) -> Result<(crate::raw::UpgradeResponse, Option<Client>), CheckError> {
    let unreachable = |error: &std::io::Error| CheckError::Unreachable {
        host: target.addr.to_string(),
        cause: io_cause(error),
    };
    let tcp = TcpStream::connect(target.addr)
        .await
        .map_err(|error| unreachable(&error))?;
    tcp.set_nodelay(true).map_err(|error| unreachable(&error))?;
    let stream: Box<dyn Io> = match &target.tls {
        None => Box::new(tcp),
        Some(tls) => {
            let tls_stream = tls
                .connector
                .connect(tls.server_name.clone(), tcp)
                .await
                .map_err(|error| CheckError::Tls {
                    host: target.host.clone(),
                    cause: format!("{error} (--insecure accepts a self-signed certificate)"),
                })?;
            Box::new(tls_stream)
        }
    };
    let headers = [("Origin", origin)];
    RawClient::upgrade_stream(stream, &target.host, &target.path, &headers)
        .await
        .map_err(|error| match error.downcast_ref::<std::io::Error>() {
            Some(io) => unreachable(io),
            None => CheckError::NotWebSocket(format!(
                "{} is not a WebSocket endpoint: {error:#}",
                target.url
            )),
        })
}

/// A fresh, upgraded connection for one check.
async fn connect(target: &Target) -> Result<Client, CheckError> {
    match upgrade(target, &target.origin).await? {
        (_, Some(client)) => Ok(client),
        (response, None) => Err(CheckError::NotWebSocket(format!(
            "{} answered {} to a later upgrade",
            target.url, response.status
        ))),
    }
}

/// Milliseconds, to the microsecond.
fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

/// `handshake`: the upgrade's status and time. A 403 is a check failure (the server refused our
/// Origin); anything else that is not a 101 means there is no WebSocket server to check.
async fn handshake(target: &Target) -> Result<(CheckResult, Option<u16>), CheckError> {
    let started = Instant::now();
    let (response, client) = upgrade(target, &target.origin).await?;
    let ms = millis(started.elapsed());
    drop(client);
    match response.status {
        101 => Ok((
            CheckResult::new(
                "handshake",
                Verdict::Pass,
                Some(ms),
                format!("101 Switching Protocols with Origin {}", target.origin),
            ),
            None,
        )),
        403 => Ok((
            CheckResult::new(
                "handshake",
                Verdict::Fail,
                Some(ms),
                format!("403 Forbidden: the server refused Origin {}", target.origin),
            )
            .fix(
                "pass the origin of the page that opens the socket with --origin https://your.site",
            ),
            Some(403),
        )),
        status => Err(CheckError::NotWebSocket(format!(
            "{} is not a WebSocket endpoint: the upgrade got HTTP {status}, not 101",
            target.url
        ))),
    }
}

/// Sends Close(1000) and watches what follows: the server's Close, and the end of TCP.
async fn close_behaviour(target: &Target, options: &Options) -> Result<CloseBehaviour, CheckError> {
    let mut client = connect(target).await?;
    let sent = Instant::now();
    if client.send(&Frame::close(1000, b"")).await.is_err() {
        return Ok(CloseBehaviour::Dropped { after_ms: 0.0 });
    }
    let (outcome, _frames) = client.next_close(options.close_wait).await;
    Ok(match outcome {
        RawCloseOutcome::Close(reply) => {
            let close_ms = millis(sent.elapsed());
            let tcp_end_ms = client.wait_tcp_end(TCP_WATCH).await.map(millis);
            CloseBehaviour::Answered {
                close_ms,
                code: reply.close_code(),
                tcp_end_ms,
            }
        }
        RawCloseOutcome::Eof | RawCloseOutcome::Reset | RawCloseOutcome::Garbage(_) => {
            CloseBehaviour::Dropped {
                after_ms: millis(sent.elapsed()),
            }
        }
        RawCloseOutcome::TimedOut => CloseBehaviour::Unanswered {
            waited_ms: millis(options.close_wait),
        },
    })
}

/// `close-answered`: Close(1000) sent, the server's Close received within `--close-wait`.
fn close_answered(behaviour: &CloseBehaviour, options: &Options) -> CheckResult {
    let id = "close-answered";
    match *behaviour {
        CloseBehaviour::Answered { close_ms, code, .. } => CheckResult::new(
            id,
            Verdict::Pass,
            Some(close_ms),
            format!(
                "Close({}) came back",
                code.map_or("no code".into(), |c| c.to_string())
            ),
        ),
        CloseBehaviour::Dropped { after_ms } => CheckResult::new(
            id,
            Verdict::Fail,
            Some(after_ms),
            "the server closed TCP without answering the Close".to_owned(),
        )
        .fix(FIX_KEEP_POLLING),
        CloseBehaviour::Unanswered { .. } => CheckResult::new(
            id,
            Verdict::Fail,
            None,
            format!(
                "no Close within {}: the server is not reading the connection",
                humantime::format_duration(options.close_wait)
            ),
        )
        .fix(FIX_READ_LOOP),
        CloseBehaviour::Refused { .. } => CheckResult::new(
            id,
            Verdict::Skip,
            None,
            "the upgrade was refused".to_owned(),
        ),
    }
}

/// `close-code-echoed`: Close(4000, reason) sent; the same code comes back.
async fn close_code_echoed(
    target: &Target,
    options: &Options,
    behaviour: &CloseBehaviour,
) -> Result<CheckResult, CheckError> {
    let id = "close-code-echoed";
    if !matches!(behaviour, CloseBehaviour::Answered { .. }) {
        let detail = "no Close comes back at all (see close-answered)".to_owned();
        return Ok(CheckResult::new(id, Verdict::Skip, None, detail));
    }
    let reason = b"wsclose-check";
    let mut client = connect(target).await?;
    let sent = Instant::now();
    client.send(&Frame::close(4000, reason)).await.ok();
    let (outcome, _) = client.next_close(options.close_wait).await;
    let ms = Some(millis(sent.elapsed()));
    Ok(match outcome {
        RawCloseOutcome::Close(reply) if reply.close_code() == Some(4000) => {
            if reply.close_reason() == reason {
                CheckResult::new(
                    id,
                    Verdict::Pass,
                    ms,
                    "4000 and its reason came back".into(),
                )
            } else {
                CheckResult::new(
                    id,
                    Verdict::Warn,
                    ms,
                    format!(
                        "4000 came back with reason {:?} instead of {:?}",
                        String::from_utf8_lossy(reply.close_reason()),
                        String::from_utf8_lossy(reason)
                    ),
                )
                .fix("echo the peer's reason too; browsers show it as CloseEvent.reason.")
            }
        }
        RawCloseOutcome::Close(reply) => CheckResult::new(
            id,
            Verdict::Fail,
            ms,
            format!(
                "Close(4000) was answered with {}",
                reply
                    .close_code()
                    .map_or("no code".into(), |c| c.to_string())
            ),
        )
        .fix("answer a Close with the peer's own code (RFC 6455 §5.5.1); the browser reports it."),
        other => CheckResult::new(
            id,
            Verdict::Fail,
            ms,
            format!("Close(4000) got {other:?} instead of a Close"),
        )
        .fix(FIX_KEEP_POLLING),
    })
}

/// `tcp-closed`: after the server's Close, the server closes TCP within [`TCP_CLOSE_BOUND`].
fn tcp_closed(behaviour: &CloseBehaviour) -> CheckResult {
    let id = "tcp-closed";
    match *behaviour {
        CloseBehaviour::Answered {
            tcp_end_ms: Some(ms),
            ..
        } if ms <= millis(TCP_CLOSE_BOUND) => CheckResult::new(
            id,
            Verdict::Pass,
            Some(ms),
            "the server closed TCP right after its Close".into(),
        ),
        CloseBehaviour::Answered {
            tcp_end_ms: Some(ms),
            ..
        } => CheckResult::new(
            id,
            Verdict::Fail,
            Some(ms),
            "TCP stayed open after the close handshake; Chromium waits up to 2 s for it".into(),
        )
        .fix(FIX_DROP_SOCKET),
        CloseBehaviour::Answered {
            tcp_end_ms: None, ..
        } => CheckResult::new(
            id,
            Verdict::Fail,
            None,
            format!(
                "TCP still open {} after the close handshake; Chromium waits up to 2 s for it",
                humantime::format_duration(TCP_WATCH)
            ),
        )
        .fix(FIX_DROP_SOCKET),
        _ => CheckResult::new(
            id,
            Verdict::Skip,
            None,
            "no close handshake to follow (see close-answered)".into(),
        ),
    }
}

/// `ping-answered`: a Ping with a payload gets a Pong with the same payload.
async fn ping_answered(target: &Target, options: &Options) -> Result<CheckResult, CheckError> {
    let id = "ping-answered";
    let mut client = connect(target).await?;
    let sent = Instant::now();
    client.send(&Frame::ping(PING_PAYLOAD)).await.ok();
    let deadline = sent + options.close_wait;
    loop {
        match tokio::time::timeout_at(deadline, client.read_frame()).await {
            Ok(Ok(Some(frame))) if frame.opcode == OP_PONG => {
                let ms = Some(millis(sent.elapsed()));
                return Ok(if frame.payload == PING_PAYLOAD {
                    CheckResult::new(id, Verdict::Pass, ms, "Pong with the same payload".into())
                } else {
                    CheckResult::new(id, Verdict::Fail, ms, "Pong with another payload".into())
                        .fix("a Pong must carry the Ping's payload (RFC 6455 §5.5.3).")
                });
            }
            Ok(Ok(Some(_other))) => continue,
            Ok(Ok(None)) | Ok(Err(_)) => {
                return Ok(CheckResult::new(
                    id,
                    Verdict::Fail,
                    Some(millis(sent.elapsed())),
                    "the connection ended instead of a Pong".into(),
                ))
            }
            Err(_) => {
                return Ok(CheckResult::new(
                    id,
                    Verdict::Fail,
                    None,
                    format!(
                        "no Pong within {}: the server is not reading",
                        humantime::format_duration(options.close_wait)
                    ),
                )
                .fix(FIX_READ_LOOP))
            }
        }
    }
}

/// `keepalive`: the server sends a Ping within `--keepalive-wait`.
async fn keepalive(target: &Target, options: &Options) -> Result<CheckResult, CheckError> {
    let id = "keepalive";
    let Some(wait) = options.keepalive_wait else {
        let detail = "not asked for (--keepalive-wait)".to_owned();
        return Ok(CheckResult::new(id, Verdict::Skip, None, detail));
    };
    let mut client = connect(target).await?;
    let started = Instant::now();
    let deadline = started + wait;
    loop {
        match tokio::time::timeout_at(deadline, client.read_frame()).await {
            Ok(Ok(Some(frame))) if frame.opcode == OP_PING => {
                let ms = Some(millis(started.elapsed()));
                return Ok(CheckResult::new(
                    id,
                    Verdict::Pass,
                    ms,
                    "the server pinged".into(),
                ));
            }
            Ok(Ok(Some(_other))) => continue,
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                let detail = format!(
                    "no Ping within {}; an idle socket behind a proxy is cut at its read timeout (nginx: 60 s) without a Close, and the browser sees 1006",
                    humantime::format_duration(wait)
                );
                return Ok(CheckResult::new(id, Verdict::Fail, None, detail).fix(
                    "ping more often than the proxy's idle timeout, and drop a peer whose pong is late.",
                ));
            }
        }
    }
}

/// One fail-fast case of `protocol-errors`.
struct ProtocolCase {
    name: &'static str,
    bytes: Vec<u8>,
    expected: u16,
}

fn protocol_cases() -> Vec<ProtocolCase> {
    let case = |name, frame: Frame, expected| ProtocolCase {
        name,
        bytes: frame.encode(),
        expected,
    };
    // FIN + binary; masked, 127 = a 64-bit length follows; the length; the masking key.
    let mut top_bit = vec![0x82, 0x80 | 127];
    top_bit.extend_from_slice(&(1u64 << 63 | 5).to_be_bytes());
    top_bit.extend_from_slice(&[1, 2, 3, 4]);
    vec![
        case("unmasked frame", Frame::text("x").unmasked(), 1002),
        case(
            "RSV1 without an extension",
            Frame::text("x").rsv(RSV1),
            1002,
        ),
        case("reserved opcode 0x3", Frame::new(0x3, "x"), 1002),
        case("reserved control opcode 0xB", Frame::new(0xB, "x"), 1002),
        case("fragmented Ping", Frame::ping("x").fin(false), 1002),
        case("Ping over 125 bytes", Frame::ping(vec![0u8; 126]), 1002),
        case(
            "continuation without a start",
            Frame::continuation("x"),
            1002,
        ),
        case(
            "invalid UTF-8 text",
            Frame::text(vec![b'o', 0xC3, 0x28]),
            1007,
        ),
        case("close code 1005", Frame::close(1005, b""), 1002),
        case("close code 999", Frame::close(999, b""), 1002),
        ProtocolCase {
            name: "64-bit length with its top bit set",
            bytes: top_bit,
            expected: 1002,
        },
    ]
}

/// What one protocol case got back.
fn outcome_text(outcome: &RawCloseOutcome) -> String {
    match outcome {
        RawCloseOutcome::Close(frame) => frame
            .close_code()
            .map_or("a Close without code".into(), |code| code.to_string()),
        RawCloseOutcome::Eof => "TCP closed without a Close".into(),
        RawCloseOutcome::Reset => "a TCP reset".into(),
        RawCloseOutcome::TimedOut => "nothing".into(),
        RawCloseOutcome::Garbage(_) => "bytes that are not a frame".into(),
    }
}

/// `protocol-errors`: each fail-fast case on a fresh connection, all at once.
async fn protocol_errors(target: &Target, options: &Options) -> Result<CheckResult, CheckError> {
    let id = "protocol-errors";
    let started = Instant::now();
    let cases = protocol_cases();
    let runs = cases.iter().map(|case| async move {
        let mut client = connect(target).await?;
        client.send_bytes(&case.bytes).await.ok();
        Ok::<_, CheckError>(client.next_close(options.close_wait).await.0)
    });
    let outcomes = join_all(runs)
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let ms = Some(millis(started.elapsed()));
    // The cases that did not get their exact code, with what they got instead.
    let wrong: Vec<(&ProtocolCase, String)> = cases
        .iter()
        .zip(&outcomes)
        .filter(|(case, outcome)| {
            !matches!(outcome, RawCloseOutcome::Close(frame) if frame.close_code() == Some(case.expected))
        })
        .map(|(case, outcome)| (case, outcome_text(outcome)))
        .collect();
    let ignored = outcomes.contains(&RawCloseOutcome::TimedOut);
    let exact = cases.len() - wrong.len();
    let mut detail = format!("{exact}/{} got the exact close code", cases.len());
    if let Some((_, first)) = wrong.first() {
        if wrong.iter().all(|(_, got)| got == first) {
            // One answer for every case, say it once.
            detail.push_str(&format!("; the other {} got {first}", wrong.len()));
        } else {
            let each: Vec<String> = wrong
                .iter()
                .map(|(case, got)| format!("{} → {got} (expected {})", case.name, case.expected))
                .collect();
            detail.push_str("; ");
            detail.push_str(&each.join("; "));
        }
    }
    Ok(if wrong.is_empty() {
        CheckResult::new(id, Verdict::Pass, ms, detail)
    } else if ignored {
        CheckResult::new(id, Verdict::Fail, ms, detail).fix(
            "fail the connection on a protocol error: Close 1002 (1007 for bad UTF-8), then drop it; a server that does not read never sees the error.",
        )
    } else {
        CheckResult::new(id, Verdict::Warn, ms, detail).fix(
            "send the RFC 6455 §7.4.1 code before dropping the connection, so the peer learns why.",
        )
    })
}

/// `max-message-size`: with `--max-size N`, a message of N+1 bytes gets 1009.
async fn max_message_size(target: &Target, options: &Options) -> Result<CheckResult, CheckError> {
    let id = "max-message-size";
    let Some(max) = options.max_size else {
        let detail = "not asked for (--max-size)".to_owned();
        return Ok(CheckResult::new(id, Verdict::Skip, None, detail));
    };
    let mut client = connect(target).await?;
    let started = Instant::now();
    // The server may close before it has read everything; what it answered still counts.
    client.send(&Frame::binary(vec![b'x'; max + 1])).await.ok();
    let (outcome, _) = client.next_close(options.close_wait).await;
    let ms = Some(millis(started.elapsed()));
    Ok(match outcome {
        RawCloseOutcome::Close(frame) if frame.close_code() == Some(1009) => {
            CheckResult::new(id, Verdict::Pass, ms, format!("{} bytes got 1009", max + 1))
        }
        other => CheckResult::new(
            id,
            Verdict::Fail,
            ms,
            format!(
                "{} bytes got {} instead of 1009",
                max + 1,
                outcome_text(&other)
            ),
        )
        .fix(
            "limit the message size and answer a larger message with Close 1009 (message too big).",
        ),
    })
}

/// `origin`: an upgrade with a foreign `Origin` is refused with 403.
async fn origin(target: &Target) -> Result<CheckResult, CheckError> {
    let id = "origin";
    let started = Instant::now();
    let (response, _client) = upgrade(target, FOREIGN_ORIGIN).await?;
    let ms = Some(millis(started.elapsed()));
    Ok(match response.status {
        403 => CheckResult::new(id, Verdict::Pass, ms, format!("Origin {FOREIGN_ORIGIN} got 403")),
        101 => CheckResult::new(
            id,
            Verdict::Warn,
            ms,
            format!("Origin {FOREIGN_ORIGIN} was accepted: any site can open this socket with its visitors' cookies (cross-site WebSocket hijacking)"),
        )
        .fix("check Origin against an allow-list before upgrading, and answer others with 403."),
        status => CheckResult::new(
            id,
            Verdict::Pass,
            ms,
            format!("Origin {FOREIGN_ORIGIN} was refused with {status}"),
        ),
    })
}
