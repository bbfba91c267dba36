//! The connection each check opens: TCP, or TLS for `wss://`, then the upgrade, all by the
//! check's deadline; and how it ends.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::raw::{Frame, Io, RawClient, UpgradeResponse};
use crate::{io_cause, no_answer_within, CheckError, CloseCode, Ended, How, Target, Unreached};

/// How long [`goodbye`] may take to send its Close(1000) before it drops the connection.
const GOODBYE_WAIT: Duration = Duration::from_secs(1);

/// A raw client over TCP, or over TLS for `wss://`.
pub type Client = RawClient<Box<dyn Io>>;

/// Upgrades with `origin` (over TLS for `wss://`), all by `deadline`: the response, and the
/// client when it is a 101 with the right `Sec-WebSocket-Accept`.
pub(crate) async fn upgrade(
    target: &Target,
    origin: &str,
    deadline: Instant,
) -> Result<(UpgradeResponse, Option<Client>), CheckError> {
    let timeout = || no_answer_within(target.timeout);
    let unreachable = |cause: Unreached| CheckError::Unreachable {
        host: target.addr.to_string(),
        cause,
    };
    let tcp = match tokio::time::timeout_at(deadline, TcpStream::connect(target.addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(error)) => return Err(unreachable(Unreached::Io(error))),
        Err(_) => return Err(unreachable(Unreached::NoAnswer(target.timeout))),
    };
    tcp.set_nodelay(true)
        .map_err(|error| unreachable(Unreached::Io(error)))?;
    let Some(tls) = &target.tls else {
        return finish_upgrade(target, origin, deadline, Box::new(tcp)).await;
    };
    let handshake = tls.connector.connect(tls.server_name.clone(), tcp);
    let cause = match tokio::time::timeout_at(deadline, handshake).await {
        Ok(Ok(tls_stream)) => {
            return finish_upgrade(target, origin, deadline, Box::new(tls_stream)).await
        }
        // rustls's own errors (a certificate it does not trust, ...) come as InvalidData.
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::InvalidData => {
            format!("{error} (--insecure accepts a self-signed certificate)")
        }
        Ok(Err(error)) => io_cause(&error),
        Err(_) => format!("the TLS handshake got {}", timeout()),
    };
    Err(CheckError::Tls {
        host: target.host.clone(),
        cause,
    })
}

/// The HTTP part of [`upgrade`].
async fn finish_upgrade(
    target: &Target,
    origin: &str,
    deadline: Instant,
    stream: Box<dyn Io>,
) -> Result<(UpgradeResponse, Option<Client>), CheckError> {
    let headers = [("Origin", origin)];
    let upgrade =
        RawClient::upgrade_stream_until(stream, &target.host, &target.path, &headers, deadline);
    match tokio::time::timeout_at(deadline, upgrade).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(error)) if Instant::now() < deadline => {
            Err(match error.downcast::<std::io::Error>() {
                Ok(io) => CheckError::Unreachable {
                    host: target.addr.to_string(),
                    cause: Unreached::Io(io),
                },
                Err(error) => CheckError::NotWebSocket(format!(
                    "{} is not a WebSocket endpoint: {error:#}",
                    target.url
                )),
            })
        }
        _ => Err(CheckError::NotWebSocket(format!(
            "{} is not a WebSocket endpoint: the upgrade got {}",
            target.url,
            no_answer_within(target.timeout)
        ))),
    }
}

/// A fresh, upgraded connection for one check, by `deadline`.
pub(crate) async fn connect(target: &Target, deadline: Instant) -> Result<Client, CheckError> {
    match upgrade(target, &target.origin, deadline).await? {
        (_, Some(client)) => Ok(client),
        (response, None) => Err(CheckError::NotWebSocket(format!(
            "a later upgrade got {}{}",
            response.status,
            if response.status == 101 {
                " with a wrong Sec-WebSocket-Accept"
            } else {
                ""
            }
        ))),
    }
}

/// Ends a connection the check no longer needs the way a browser would, with Close(1000)
/// rather than a bare disconnect (which some servers log, or even die of), then drops it
/// without waiting for the answer.
pub(crate) async fn goodbye(client: Option<Client>) {
    if let Some(mut client) = client {
        let close = Frame::close(CloseCode::Normal.into(), b"");
        let _ = tokio::time::timeout(GOODBYE_WAIT, client.send(&close)).await;
    }
}

/// Milliseconds, to the microsecond.
pub(crate) fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

/// What one probe got back.
pub(super) fn outcome_text(ended: &Ended) -> String {
    match ended.how {
        How::Close => ended
            .close
            .as_ref()
            .and_then(close_code)
            .map_or("a Close without code".into(), |code| code.to_string()),
        How::Fin => "TCP closed without a Close".into(),
        How::Rst => "a TCP reset".into(),
        How::Open => "nothing".into(),
        How::Error => "bytes that are not a frame".into(),
    }
}

/// The code of the server's Close `frame`, as a [`CloseCode`]; `None` when it carries none.
pub(super) fn close_code(frame: &Frame) -> Option<CloseCode> {
    frame.close_code().map(CloseCode::from)
}
