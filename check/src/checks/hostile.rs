//! The probes that can harm a fragile server, run last: `max-message-size` (one message a byte
//! over `--max-size`, streamed) and `protocol-errors` (malformed frames, one case a connection).

use futures::future::join_all;
use tokio::time::Instant;

use super::connect::{close_code, connect, millis, outcome_text};
use super::run::Ctx;
use super::{CheckId, CheckResult, Verdict, DEADLINE_GRACE, PROTOCOL_ERRORS_WAITS};
use crate::predict::shown;
use crate::raw::{Frame, RSV1};
use crate::{CheckError, CloseCode, Ended, How};

/// One fail-fast case of `protocol-errors`.
struct ProtocolCase {
    name: &'static str,
    bytes: Vec<u8>,
    expected: CloseCode,
}

/// What every malformed case but invalid UTF-8 must get: 1002.
const PROTOCOL: CloseCode = CloseCode::Protocol;

/// The malformed cases, in the order they are sent.
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
        case("unmasked frame", Frame::text("x").unmasked(), PROTOCOL),
        case(
            "RSV1 without an extension",
            Frame::text("x").rsv(RSV1),
            PROTOCOL,
        ),
        case("reserved opcode 0x3", Frame::new(0x3, "x"), PROTOCOL),
        case(
            "reserved control opcode 0xB",
            Frame::new(0xB, "x"),
            PROTOCOL,
        ),
        case("fragmented Ping", Frame::ping("x").fin(false), PROTOCOL),
        case("Ping over 125 bytes", Frame::ping(vec![0u8; 126]), PROTOCOL),
        case(
            "continuation without a start",
            Frame::continuation("x"),
            PROTOCOL,
        ),
        case(
            "invalid UTF-8 text",
            Frame::text(vec![b'o', 0xC3, 0x28]),
            CloseCode::Invalid,
        ),
        // Codes no endpoint may send: 1005 is for "no code", 999 is below the range.
        case(
            "close code 1005",
            Frame::close(CloseCode::Status.into(), b""),
            PROTOCOL,
        ),
        case("close code 999", Frame::close(999, b""), PROTOCOL),
        ProtocolCase {
            name: "64-bit length with its top bit set",
            bytes: top_bit,
            expected: PROTOCOL,
        },
    ]
}

/// One protocol case on its own connection: connect, send, wait for the Close, by the
/// check's `deadline` (every case shares it).
async fn protocol_case(
    ctx: &Ctx<'_>,
    case: &ProtocolCase,
    deadline: Instant,
) -> Result<Ended, CheckError> {
    let run = async {
        let mut client = connect(ctx.target, deadline).await?;
        let sent = Instant::now();
        client.send_bytes(&case.bytes).await.ok();
        ctx.sent(
            CheckId::ProtocolErrors,
            format!("protocol-errors ({})", case.name),
        );
        let wait_until = (sent + ctx.options.close_wait).min(deadline);
        Ok(client.await_close(wait_until).await.0)
    };
    tokio::time::timeout_at(deadline + DEADLINE_GRACE, run)
        .await
        .unwrap_or(Ok(Ended::without_close(How::Open)))
}

/// `protocol-errors`: each malformed case on a fresh connection, one after the other, so a
/// server that goes down is caught after the case that did it. Once a case gets no answer at
/// all (a server that does not read), the rest run at once rather than each waiting
/// `--close-wait`. Browsers never send any of these, so a wrong answer is a warning; a
/// server that goes down is recorded for `server-survived` ([`Ctx::went_down`]). Every case,
/// and every question whether the server is still up, shares the check's `deadline`: the
/// cases not sent by then are named in the detail.
pub(super) async fn protocol_errors(
    ctx: &Ctx<'_>,
    deadline: Instant,
) -> Result<CheckResult, CheckError> {
    let id = CheckId::ProtocolErrors;
    let started = Instant::now();
    let cases = protocol_cases();
    let mut outcomes: Vec<Option<Result<Ended, String>>> = vec![None; cases.len()];
    let mut down = None;
    let mut rest_from = cases.len();
    for (i, case) in cases.iter().enumerate() {
        if Instant::now() >= deadline {
            break;
        }
        match protocol_case(ctx, case, deadline).await {
            Ok(outcome) => {
                let unanswered = outcome.how == How::Open;
                outcomes[i] = Some(Ok(outcome));
                if unanswered {
                    rest_from = i + 1;
                    break;
                }
            }
            Err(error) => match ctx.alive_by(deadline).await {
                Ok(()) => outcomes[i] = Some(Err(error.to_string())),
                Err(how) => {
                    down = Some(how);
                    break;
                }
            },
        }
    }
    if down.is_none() && rest_from < cases.len() {
        let rest = join_all(
            cases[rest_from..]
                .iter()
                .map(|case| protocol_case(ctx, case, deadline)),
        )
        .await;
        let mut failed = false;
        for (slot, outcome) in outcomes[rest_from..].iter_mut().zip(rest) {
            failed |= outcome.is_err();
            *slot = Some(outcome.map_err(|error| error.to_string()));
        }
        if failed {
            if let Err(how) = ctx.alive_by(deadline).await {
                let names: Vec<&str> = cases[rest_from..].iter().map(|case| case.name).collect();
                ctx.sent(
                    id,
                    format!(
                        "protocol-errors (one of these, sent at once: {})",
                        names.join(", ")
                    ),
                );
                down = Some(how);
            }
        }
    }
    let ms = Some(millis(started.elapsed()));
    let ran: Vec<(&ProtocolCase, &Result<Ended, String>)> = cases
        .iter()
        .zip(&outcomes)
        .filter_map(|(case, outcome)| outcome.as_ref().map(|outcome| (case, outcome)))
        .collect();
    // The cases that did not get their exact code, with what they got instead.
    let wrong: Vec<(&ProtocolCase, String)> = ran
        .iter()
        .filter(|(case, outcome)| {
            !matches!(outcome, Ok(Ended { close: Some(frame), .. }) if close_code(frame) == Some(case.expected))
        })
        .map(|(case, outcome)| {
            let got = match outcome {
                Ok(outcome) => outcome_text(outcome),
                Err(error) => format!("no connection ({error})"),
            };
            (*case, got)
        })
        .collect();
    let exact = ran.len() - wrong.len();
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
    if down.is_some() {
        detail.push_str(&format!(
            "; {} not sent: the server went down (see server-survived)",
            cases.len() - ran.len()
        ));
    } else if ran.len() < cases.len() {
        detail.push_str(&format!(
            "; {} not sent: the check's deadline passed (--timeout plus {PROTOCOL_ERRORS_WAITS} × --close-wait)",
            cases.len() - ran.len()
        ));
    }
    let complete = down.is_none() && ran.len() == cases.len();
    let result = if wrong.is_empty() && complete {
        CheckResult::new(id, Verdict::Pass, ms, detail)
    } else {
        CheckResult::new(id, Verdict::Warn, ms, detail).fix(
            "fail the connection on a protocol error: Close 1002 (1007 for bad UTF-8), then drop it (RFC 6455 §7.4.1); browsers never send these frames, so no browser sees this.",
        )
    };
    if let Some(how) = down {
        ctx.went_down(how);
    }
    Ok(result)
}

/// `max-message-size`: with `--max-size N`, a message of N+1 bytes gets 1009. The message is
/// streamed, never held in memory, while the check reads for the server's Close.
pub(super) async fn max_message_size(
    ctx: &Ctx<'_>,
    deadline: Instant,
) -> Result<CheckResult, CheckError> {
    let id = CheckId::MaxMessageSize;
    let Some(max) = ctx.options.max_size else {
        let detail = "not asked for (--max-size)".to_owned();
        return Ok(CheckResult::skip(id, detail));
    };
    let len = max as u64 + 1;
    let mut client = connect(ctx.target, deadline).await?;
    let started = Instant::now();
    ctx.sent(id, format!("max-message-size (a {len}-byte message)"));
    let streamed = client
        .send_message_streamed(len, ctx.options.close_wait, deadline)
        .await;
    let ms = Some(millis(started.elapsed()));
    let fix_1009 =
        "limit the message size and answer a larger message with Close 1009 (message too big).";
    let code = streamed.ended.close_code().map(CloseCode::from);
    Ok(match streamed.ended.how {
        How::Close if code == Some(CloseCode::Size) => {
            CheckResult::new(id, Verdict::Pass, ms, format!("{len} bytes got 1009"))
        }
        How::Close => {
            let shown = shown(code);
            CheckResult::new(
                id,
                Verdict::Warn,
                ms,
                format!("{len} bytes got Close {shown} instead of 1009: the close event will show {shown}"),
            )
            .fix(fix_1009)
        }
        How::Fin | How::Rst => CheckResult::new(
            id,
            Verdict::Fail,
            ms,
            format!(
                "{len} bytes got {} instead of 1009: a browser that sends this much sees 1006",
                outcome_text(&streamed.ended)
            ),
        )
        .fix(fix_1009),
        How::Open if streamed.complete => CheckResult::new(
            id,
            Verdict::Warn,
            ms,
            format!(
                "{len} bytes were taken without a Close: the limit is higher than --max-size {max}"
            ),
        )
        .fix(fix_1009),
        How::Open => CheckResult::new(
            id,
            Verdict::Warn,
            ms,
            format!(
                "the server stopped reading after {} of {len} bytes and sent no Close",
                streamed.written
            ),
        )
        .fix(fix_1009),
        How::Error => CheckResult::new(
            id,
            Verdict::Warn,
            ms,
            format!("{len} bytes got bytes that are not a frame instead of 1009"),
        )
        .fix(fix_1009),
    })
}
