//! The checks of the upgrade itself: `handshake` (the first upgrade, with the page's Origin)
//! and `origin` (an upgrade with a foreign one).

use std::time::Duration;

use tokio::time::Instant;

use super::connect::{goodbye, millis, upgrade};
use super::run::Ctx;
use super::{CheckId, CheckResult, Verdict, FOREIGN_ORIGIN};
use crate::predict::ServerCloseBehaviour;
use crate::CheckError;

/// Why the first upgrade gave no connection to check.
#[derive(Debug, Clone, Copy)]
pub(super) enum Refused {
    /// 403 (or another status a browser fails on): the server refused our Origin.
    Status(u16),
    /// A 101 whose `Sec-WebSocket-Accept` does not match the key.
    BadAccept,
}

impl Refused {
    pub(super) fn why(self) -> &'static str {
        match self {
            Refused::Status(_) => "the upgrade was refused",
            Refused::BadAccept => "browsers refuse the upgrade (wrong Sec-WebSocket-Accept)",
        }
    }

    pub(super) fn behaviour(self) -> ServerCloseBehaviour {
        match self {
            Refused::Status(status) => ServerCloseBehaviour::Refused { status },
            Refused::BadAccept => ServerCloseBehaviour::Refused { status: 101 },
        }
    }
}

/// `handshake`: the upgrade's status, its `Sec-WebSocket-Accept` and its time. A 403 or a
/// wrong accept is a check failure (browsers refuse the connection); anything else that is not
/// a 101 means there is no WebSocket server to check.
pub(super) async fn handshake(ctx: &Ctx<'_>) -> Result<(CheckResult, Option<Refused>), CheckError> {
    let id = CheckId::Handshake;
    let target = ctx.target;
    let started = Instant::now();
    let (response, client) = upgrade(target, &target.origin, ctx.deadline(Duration::ZERO)).await?;
    let ms = Some(millis(started.elapsed()));
    ctx.sent(id, "the first upgrade");
    goodbye(client).await;
    match response.status {
        101 if response.accept_matches() => Ok((
            CheckResult::new(
                id,
                Verdict::Pass,
                ms,
                format!("101 Switching Protocols with Origin {}", target.origin),
            ),
            None,
        )),
        101 => Ok((
            CheckResult::new(
                id,
                Verdict::Fail,
                ms,
                format!(
                    "101 with Sec-WebSocket-Accept {:?} where the key calls for {:?}: browsers refuse the connection",
                    response.header("sec-websocket-accept").unwrap_or("(none)"),
                    response.expected_accept
                ),
            )
            .fix("answer each request's Sec-WebSocket-Key with base64(SHA-1(key + \"258EAFA5-E914-47DA-95CA-C5AB0DC85B11\")) (RFC 6455 §4.2.2); never a fixed or cached value."),
            Some(Refused::BadAccept),
        )),
        403 => Ok((
            CheckResult::new(
                id,
                Verdict::Fail,
                ms,
                format!("403 Forbidden: the server refused Origin {}", target.origin),
            )
            .fix(
                "pass the origin of the page that opens the socket with --origin https://your.site",
            ),
            Some(Refused::Status(403)),
        )),
        status => Err(CheckError::NotWebSocket(format!(
            "{} is not a WebSocket endpoint: the upgrade got HTTP {status}, not 101",
            target.url
        ))),
    }
}

/// security finding, not something a browser shows: a warning.
pub(super) async fn origin(ctx: &Ctx<'_>, deadline: Instant) -> Result<CheckResult, CheckError> {
    let id = CheckId::Origin;
    let started = Instant::now();
    let (response, client) = upgrade(ctx.target, FOREIGN_ORIGIN, deadline).await?;
    let ms = Some(millis(started.elapsed()));
    ctx.sent(id, "origin (an upgrade with a foreign Origin)");
    goodbye(client).await;
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
