//! One idle connection, from the upgrade's answer to its end: it reads every frame (data
//! frames counted and discarded), answers the server's Pings as its [`Peer`] does, sends what
//! its mode sends every `--idle-interval`, and says how the connection ended.

use std::io::ErrorKind;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::{How, IdleMode, ModeReport, MAX_PING_GAPS};
use crate::checks::{goodbye, millis, Client};
use crate::raw::{Frame, Io, ReadHalf, WriteHalf, OP_CLOSE, OP_PING, OP_PONG};
use crate::{Ended, Options, Stop};

/// How long the answer to the server's Close may take to write.
const ANSWER_WAIT: Duration = Duration::from_secs(1);

/// Who holds an idle connection: what it sends, and whether it answers Pings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// One of the three modes: answers every Ping with a Pong (as a browser does), and sends
    /// what the mode sends.
    Mode(IdleMode),
    /// After the upgrade it sends nothing and answers no Ping; it still reads, to see the end.
    Dead,
}

impl Peer {
    /// The mode it reports as (the dead peer reports as a quiet `browser` would).
    fn mode(self) -> IdleMode {
        match self {
            Peer::Mode(mode) => mode,
            Peer::Dead => IdleMode::Browser,
        }
    }

    /// What it sends every `--idle-interval`, if anything.
    fn every_interval(self, options: &Options) -> Option<Frame> {
        match self {
            Peer::Mode(IdleMode::ClientPing) => Some(Frame::ping(&b"wsclose-check"[..])),
            Peer::Mode(IdleMode::AppMessage) => Some(Frame::text(options.idle_message.clone())),
            Peer::Mode(IdleMode::Browser) | Peer::Dead => None,
        }
    }
}

/// How the connection ended, and when (`None`: still open).
struct ReadEnd {
    ended: Ended,
    at: Option<Instant>,
}

impl ReadEnd {
    /// It ended so now.
    fn now(ended: Ended) -> ReadEnd {
        ReadEnd {
            ended,
            at: Some(Instant::now()),
        }
    }
}

/// The server's Pings: how many, and the gaps between them (the first [`MAX_PING_GAPS`]).
#[derive(Default)]
struct Pings {
    count: u64,
    first: Option<Instant>,
    last: Option<Instant>,
    gaps_ms: Vec<f64>,
}

impl Pings {
    fn seen(&mut self, at: Instant) {
        self.count += 1;
        self.first.get_or_insert(at);
        if let Some(last) = self.last.replace(at) {
            if self.gaps_ms.len() < MAX_PING_GAPS {
                self.gaps_ms.push(millis(at - last));
            }
        }
    }

    /// The median gap; `None` with fewer than two Pings.
    fn median_ms(&self) -> Option<f64> {
        let mut gaps = self.gaps_ms.clone();
        gaps.sort_by(f64::total_cmp);
        match gaps.len() {
            0 => None,
            n if n % 2 == 1 => Some(gaps[n / 2]),
            n => Some(((gaps[n / 2 - 1] + gaps[n / 2]) / 2.0 * 1e3).round() / 1e3),
        }
    }
}

/// Holds `client`, whose upgrade's answer came at `opened`, as `peer` does, until it ends, `max`
/// passes or `stop`; then answers the server's Close (a mode, not the dead peer) or says
/// goodbye if still open.
pub(super) async fn hold(
    mut client: Client,
    opened: Instant,
    peer: Peer,
    options: &Options,
    max: Duration,
    stop: &Stop,
) -> ModeReport {
    let end_at = (opened + max).min(stop.deadline());
    let mut pings = Pings::default();
    let mut data_frames = 0;
    let ReadEnd { ended, at } = {
        let (read, write) = client.split();
        let (pong_tx, pong_rx) = watch::channel(None);
        let reader = read_until_end(
            read,
            peer,
            end_at,
            stop,
            &mut pings,
            &mut data_frames,
            pong_tx,
        );
        let writer = write_until_stalled(write, peer, options, opened, pong_rx);
        tokio::pin!(reader, writer);
        let mut writing = true;
        loop {
            tokio::select! {
                end = &mut reader => break end,
                stopped = &mut writer, if writing => {
                    writing = false;
                    match stopped {
                        WriteStopped::Stalled(why) => break ReadEnd::now(Ended::failed(why)),
                        // The write took the socket's error: a read would now see a bare EOF.
                        WriteStopped::Reset => break ReadEnd::now(Ended::without_close(How::Rst)),
                        // The connection is ending, which the reader will see.
                        WriteStopped::Failed => {}
                    }
                }
            }
        }
    };
    match (&ended.close, peer) {
        (Some(close), Peer::Mode(_)) => {
            let answer = match close.close_code() {
                Some(code) => Frame::close(code, b""),
                None => Frame::new(OP_CLOSE, Vec::new()),
            };
            let _ = tokio::time::timeout(ANSWER_WAIT, client.send(&answer)).await;
        }
        _ if ended.how == How::Open => goodbye(Some(client)).await,
        _ => {}
    }
    ModeReport {
        mode: peer.mode(),
        ended_after_ms: at.map(|at| millis(at - opened)),
        how: ended.how,
        close_code: ended.close_code(),
        close_reason: ended.close_reason(),
        server_pings: pings.count,
        server_ping_interval_ms: pings.median_ms(),
        first_ping_ms: pings.first.map(|at| millis(at - opened)),
        data_frames,
        error: ended.error,
    }
}

/// Reads until the connection ends, `end_at` or `stop`. Each Ping is counted and, unless the
/// peer is dead, its payload handed to the writer (only the latest waits).
async fn read_until_end(
    mut read: ReadHalf<'_, Box<dyn Io>>,
    peer: Peer,
    end_at: Instant,
    stop: &Stop,
    pings: &mut Pings,
    data_frames: &mut u64,
    pong: watch::Sender<Option<Vec<u8>>>,
) -> ReadEnd {
    // One timer and one stop for the whole connection, polled first: a server that sends
    // frames faster than they are read cannot keep the connection past MAX. (Each poll of the
    // timer takes from the task's budget, so a flood also yields to the other connections.)
    let max_passed = tokio::time::sleep_until(end_at);
    let stopped = stop.wait();
    tokio::pin!(max_passed, stopped);
    loop {
        let next = tokio::select! {
            biased;
            () = &mut max_passed => None,
            _ = &mut stopped => None,
            next = read.read_control(data_frames) => Some(next),
        };
        let frame = match next {
            None => {
                return ReadEnd {
                    ended: Ended::without_close(How::Open),
                    at: None,
                }
            }
            Some(Ok(Some(frame))) => frame,
            Some(Ok(None)) => return ReadEnd::now(Ended::without_close(How::Fin)),
            Some(Err(error)) => return ReadEnd::now(Ended::of_error(&error)),
        };
        match frame.opcode {
            OP_PING => {
                pings.seen(Instant::now());
                if peer != Peer::Dead {
                    pong.send_replace(Some(frame.payload));
                }
            }
            OP_CLOSE => return ReadEnd::now(Ended::with_close(frame)),
            OP_PONG => {}
            opcode => {
                let why = format!("a frame with the reserved opcode {opcode:#x}");
                return ReadEnd::now(Ended::failed(why));
            }
        }
    }
}

/// Why the writer stopped writing.
enum WriteStopped {
    /// A write did not finish within `--timeout`: the server does not read.
    Stalled(String),
    /// A write failed with ECONNRESET: the connection was reset (and the error is taken: the
    /// reader will see a bare EOF, not the reset).
    Reset,
    /// A write failed otherwise (EPIPE after the peer's FIN): the reader sees how it ended.
    Failed,
}

/// Writes the Pongs the reader hands over and, every `--idle-interval` from `opened`, what the
/// peer sends, until a write fails or stalls.
async fn write_until_stalled(
    mut write: WriteHalf<'_, Box<dyn Io>>,
    peer: Peer,
    options: &Options,
    opened: Instant,
    mut pong: watch::Receiver<Option<Vec<u8>>>,
) -> WriteStopped {
    let every = peer.every_interval(options);
    let mut ticks = tokio::time::interval_at(opened + options.idle_interval, options.idle_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let frame = tokio::select! {
            changed = pong.changed() => {
                if changed.is_err() {
                    std::future::pending::<()>().await; // the reader is gone: so is this
                }
                match pong.borrow_and_update().clone() {
                    Some(payload) => Frame::pong(payload),
                    None => continue,
                }
            }
            _ = ticks.tick(), if every.is_some() => every.clone().expect("checked"),
        };
        match tokio::time::timeout(options.timeout, write.send(&frame)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                return match error.kind() {
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => {
                        WriteStopped::Reset
                    }
                    _ => WriteStopped::Failed,
                }
            }
            Err(_) => {
                return WriteStopped::Stalled(format!(
                    "a write got {}: the server does not read",
                    crate::no_answer_within(options.timeout)
                ))
            }
        }
    }
}
