//! The close handshake: `close-answered` (Close 1000 gets the server's Close), `close-code-echoed`
//! (Close 4000 and its reason come back) and `tcp-closed` (TCP ends right after).

use tokio::time::Instant;

use super::connect::{close_code, connect, millis, outcome_text};
use super::run::Ctx;
use super::{
    CheckId, CheckResult, Verdict, BROWSER_WAIT_BOUND, FIX_READ_LOOP, TCP_CLOSE_BOUND, TCP_WATCH,
};
use crate::predict::{shown, ServerCloseBehaviour};
use crate::raw::Frame;
use crate::How;
use crate::{CheckError, CloseCode, Options};

const FIX_KEEP_POLLING: &str = "do not break out of the read loop on the peer's Close: \
    tungstenite only queues the reply, and the next read sends it; poll until the stream ends.";
const FIX_DROP_SOCKET: &str = "drop the whole socket the moment the close handshake ends; a \
    writer task that still holds the write half keeps TCP open.";

/// Sends Close(1000) and watches what follows: the server's Close, and the end of TCP.
pub(super) async fn close_behaviour(
    ctx: &Ctx<'_>,
    deadline: Instant,
) -> Result<ServerCloseBehaviour, CheckError> {
    let mut client = connect(ctx.target, deadline).await?;
    let sent = Instant::now();
    if client
        .send(&Frame::close(CloseCode::Normal.into(), b""))
        .await
        .is_err()
    {
        return Ok(ServerCloseBehaviour::Dropped { after_ms: 0.0 });
    }
    ctx.sent(CheckId::CloseAnswered, "close-answered (Close 1000)");
    let wait = ctx.options.close_wait;
    let (ended, _) = client.await_close((sent + wait).min(deadline)).await;
    Ok(match ended.how {
        How::Close => {
            let close_ms = millis(sent.elapsed());
            let tcp_end_ms = client.wait_tcp_end(TCP_WATCH).await.map(millis);
            ServerCloseBehaviour::Answered {
                close_ms,
                code: ended.close_code().map(CloseCode::from),
                tcp_end_ms,
            }
        }
        How::Fin | How::Rst | How::Error => ServerCloseBehaviour::Dropped {
            after_ms: millis(sent.elapsed()),
        },
        How::Open => ServerCloseBehaviour::Unanswered {
            waited_ms: millis(wait),
        },
    })
}

/// `close-answered`: Close(1000) sent, the server's Close received within `--close-wait`, and
/// soon enough that a browser's `close` event is not late.
pub(super) fn close_answered(behaviour: &ServerCloseBehaviour, options: &Options) -> CheckResult {
    let id = CheckId::CloseAnswered;
    let code_text = |code: Option<CloseCode>| code.map_or("no code".into(), |c| c.to_string());
    match *behaviour {
        ServerCloseBehaviour::Answered { close_ms, code, .. }
            if close_ms >= millis(BROWSER_WAIT_BOUND) =>
        {
            CheckResult::new(
                id,
                Verdict::Fail,
                Some(close_ms),
                format!(
                    "Close({}) came back only after {}: browsers wait that long for the close event",
                    code_text(code),
                    crate::report::duration_text(close_ms)
                ),
            )
            .fix(FIX_READ_LOOP)
        }
        ServerCloseBehaviour::Answered { close_ms, code, .. } => CheckResult::new(
            id,
            Verdict::Pass,
            Some(close_ms),
            format!("Close({}) came back", code_text(code)),
        ),
        ServerCloseBehaviour::Dropped { after_ms } => CheckResult::new(
            id,
            Verdict::Fail,
            Some(after_ms),
            "the server closed TCP without answering the Close: browsers see 1006".to_owned(),
        )
        .fix(FIX_KEEP_POLLING),
        ServerCloseBehaviour::Unanswered { .. } => CheckResult::new(
            id,
            Verdict::Fail,
            None,
            format!(
                "no Close within {}: the server is not reading the connection",
                humantime::format_duration(options.close_wait)
            ),
        )
        .fix(FIX_READ_LOOP),
        ServerCloseBehaviour::Refused { .. } => {
            CheckResult::skip(id, "the upgrade was refused".to_owned())
        }
    }
}

/// `close-code-echoed`: Close(4000, reason) sent; the same code and reason come back, which is
/// what the browser's `close` event shows.
pub(super) async fn close_code_echoed(
    ctx: &Ctx<'_>,
    deadline: Instant,
    behaviour: &ServerCloseBehaviour,
) -> Result<CheckResult, CheckError> {
    let id = CheckId::CloseCodeEchoed;
    if !matches!(behaviour, ServerCloseBehaviour::Answered { .. }) {
        let detail = "no Close comes back at all (see close-answered)".to_owned();
        return Ok(CheckResult::skip(id, detail));
    }
    let (code, reason) = (CloseCode::Library(4000), b"wsclose-check");
    let mut client = connect(ctx.target, deadline).await?;
    let sent = Instant::now();
    client.send(&Frame::close(code.into(), reason)).await.ok();
    ctx.sent(id, "close-code-echoed (Close 4000)");
    let (ended, _) = client
        .await_close((sent + ctx.options.close_wait).min(deadline))
        .await;
    let ms = Some(millis(sent.elapsed()));
    Ok(match &ended.close {
        Some(reply) if close_code(reply) == Some(code) => {
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
                        "4000 came back with reason {:?} instead of {:?}: the close event will show reason {:?}",
                        String::from_utf8_lossy(reply.close_reason()),
                        String::from_utf8_lossy(reason),
                        String::from_utf8_lossy(reply.close_reason()),
                    ),
                )
                .fix("echo the peer's reason too; browsers show it as CloseEvent.reason.")
            }
        }
        Some(reply) => {
            let shown = shown(close_code(reply));
            CheckResult::new(
                id,
                Verdict::Warn,
                ms,
                format!(
                    "Close(4000) was answered with {}: the close event will show code {shown} instead of 4000",
                    close_code(reply).map_or("no code".into(), |c| c.to_string())
                ),
            )
            .fix("answer a Close with the peer's own code (RFC 6455 §5.5.1); the browser reports it.")
        }
        None => CheckResult::new(
            id,
            Verdict::Fail,
            ms,
            format!(
                "Close(4000) got {} instead of a Close: browsers see 1006",
                outcome_text(&ended)
            ),
        )
        .fix(FIX_KEEP_POLLING),
    })
}

/// `tcp-closed`: after the server's Close, the server closes TCP within [`TCP_CLOSE_BOUND`]
/// (pass), before Chromium's `close` event is [`BROWSER_WAIT_BOUND`] late (warn), or not (fail).
pub(super) fn tcp_closed(behaviour: &ServerCloseBehaviour) -> CheckResult {
    let id = CheckId::TcpClosed;
    let late = "TCP stayed open after the close handshake; Chromium waits up to 2 s for it";
    match *behaviour {
        ServerCloseBehaviour::Answered {
            tcp_end_ms: Some(ms),
            ..
        } if ms <= millis(TCP_CLOSE_BOUND) => CheckResult::new(
            id,
            Verdict::Pass,
            Some(ms),
            "the server closed TCP right after its Close".into(),
        ),
        ServerCloseBehaviour::Answered {
            tcp_end_ms: Some(ms),
            ..
        } if ms < millis(BROWSER_WAIT_BOUND) => CheckResult::new(
            id,
            Verdict::Warn,
            Some(ms),
            format!(
                "{late}: its close event comes {} late",
                crate::report::duration_text(ms)
            ),
        )
        .fix(FIX_DROP_SOCKET),
        ServerCloseBehaviour::Answered {
            tcp_end_ms: Some(ms),
            ..
        } => CheckResult::new(id, Verdict::Fail, Some(ms), late.into()).fix(FIX_DROP_SOCKET),
        ServerCloseBehaviour::Answered {
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
        _ => CheckResult::skip(id, "no close handshake to follow (see close-answered)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predict::predict;

    #[test]
    fn the_prediction_follows_the_browser_wait_bound() {
        // tcp-closed: under 100 ms pass, under 1 s warn, after that (or never) fail.
        let at = |ms| ServerCloseBehaviour::Answered {
            close_ms: 0.5,
            code: Some(CloseCode::Normal),
            tcp_end_ms: ms,
        };
        assert_eq!(tcp_closed(&at(Some(50.0))).verdict, Verdict::Pass);
        assert_eq!(tcp_closed(&at(Some(500.0))).verdict, Verdict::Warn);
        assert_eq!(tcp_closed(&at(Some(1500.0))).verdict, Verdict::Fail);
        assert_eq!(tcp_closed(&at(None)).verdict, Verdict::Fail);
        assert!(predict(&at(Some(500.0))).chromium.close_after_ms < 1000.0);
    }
}
