//! The control frames: `ping-answered` (a Ping gets its Pong) and `keepalive` (the server
//! pings on its own).

use tokio::time::Instant;

use super::connect::{connect, goodbye, millis, Client};
use super::run::Ctx;
use super::{CheckId, CheckResult, Verdict, FIX_READ_LOOP, PING_PAYLOAD};
use crate::raw::{Frame, OP_PING, OP_PONG};
use crate::CheckError;

/// `ping-answered`: a Ping with a payload gets a Pong with the same payload. Browsers never
/// send a Ping, so anything else is a warning.
pub(super) async fn ping_answered(
    ctx: &Ctx<'_>,
    deadline: Instant,
) -> Result<CheckResult, CheckError> {
    let id = CheckId::PingAnswered;
    let mut client = connect(ctx.target, deadline).await?;
    let sent = Instant::now();
    client.send(&Frame::ping(PING_PAYLOAD)).await.ok();
    ctx.sent(id, "ping-answered (a Ping)");
    let wait_until = (sent + ctx.options.close_wait).min(deadline);
    let result = pong(ctx, &mut client, sent, wait_until).await;
    goodbye(Some(client)).await;
    Ok(result)
}

/// What came back for `ping-answered`'s Ping, sent at `sent`.
async fn pong(
    ctx: &Ctx<'_>,
    client: &mut Client,
    sent: Instant,
    wait_until: Instant,
) -> CheckResult {
    let id = CheckId::PingAnswered;
    let mut skipped = 0;
    loop {
        match tokio::time::timeout_at(wait_until, client.read_control(&mut skipped)).await {
            Ok(Ok(Some(frame))) if frame.opcode == OP_PONG => {
                let ms = Some(millis(sent.elapsed()));
                return if frame.payload == PING_PAYLOAD {
                    CheckResult::new(id, Verdict::Pass, ms, "Pong with the same payload".into())
                } else {
                    CheckResult::new(id, Verdict::Warn, ms, "Pong with another payload".into())
                        .fix("a Pong must carry the Ping's payload (RFC 6455 §5.5.3).")
                };
            }
            Ok(Ok(Some(_other))) => continue,
            Ok(Ok(None)) | Ok(Err(_)) => {
                return CheckResult::new(
                    id,
                    Verdict::Warn,
                    Some(millis(sent.elapsed())),
                    "the connection ended instead of a Pong".into(),
                )
            }
            Err(_) => {
                return CheckResult::new(
                    id,
                    Verdict::Warn,
                    None,
                    format!(
                        "no Pong within {}: the server is not reading",
                        humantime::format_duration(ctx.options.close_wait)
                    ),
                )
                .fix(FIX_READ_LOOP)
            }
        }
    }
}

/// `keepalive`: the server sends a Ping within `--keepalive-wait`.
pub(super) async fn keepalive(ctx: &Ctx<'_>, deadline: Instant) -> Result<CheckResult, CheckError> {
    let id = CheckId::Keepalive;
    let Some(wait) = ctx.options.keepalive_wait else {
        let detail = "not asked for (--keepalive-wait)".to_owned();
        return Ok(CheckResult::skip(id, detail));
    };
    let mut client = connect(ctx.target, deadline).await?;
    let started = Instant::now();
    let wait_until = (started + wait).min(deadline);
    let mut skipped = 0;
    loop {
        match tokio::time::timeout_at(wait_until, client.read_control(&mut skipped)).await {
            Ok(Ok(Some(frame))) if frame.opcode == OP_PING => {
                let ms = Some(millis(started.elapsed()));
                goodbye(Some(client)).await;
                return Ok(CheckResult::new(
                    id,
                    Verdict::Pass,
                    ms,
                    "the server pinged".into(),
                ));
            }
            Ok(Ok(Some(_other))) => continue,
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                goodbye(Some(client)).await;
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
