//! What every socket of a server obeys, and the server's graceful shutdown.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::task::task_tracker::TrackedFuture;
use tokio_util::task::TaskTracker;
use tungstenite::protocol::frame::coding::CloseCode;

use crate::Timing;

/// Extra time [`Lifecycle::shutdown`] grants beyond `close_timeout`, for the last writes.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(250);

/// What every socket of a server obeys (its [`Timing`], when to stop and with which close
/// code), and the count of sockets still running, so a shutdown can wait for them.
///
/// Build one per server and share it: clones are cheap and share the shutdown signal and the
/// count. Every [`serve_websocket`](crate::serve_websocket) call under it is counted while it
/// runs. [`shutdown`](Lifecycle::shutdown) sends each socket a Close (1001 by default) and
/// waits for them: warp's and axum's graceful shutdowns do not wait for upgraded sockets.
///
/// ```no_run
/// # async fn demo() {
/// use wsclose::{CloseCode, Lifecycle, Timing};
///
/// let lifecycle = Lifecycle::new()
///     .with_timing(Timing::default())
///     .with_shutdown_code(CloseCode::Restart); // 1012: clients reconnect at once
/// // ... serve sockets with `serve_websocket(socket, &lifecycle, ..)` ...
/// let still_open = lifecycle.shutdown().await; // Close 1012 to all, wait for the answers
/// assert_eq!(still_open, 0);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Lifecycle {
    pub(crate) timing: Timing,
    shutdown_code: CloseCode,
    shutdown: Arc<ShutdownSignal>,
    sockets: TaskTracker,
}

/// The shutdown signal every socket of a lifecycle waits for.
///
/// A flag and a [`Notify`], not a `CancellationToken`: a token takes a lock shared by every
/// socket each time one asks whether it is cancelled, and a `Notified` made afresh for each
/// turn of a socket's loop takes the `Notify`'s lock twice. On 2 cores both showed as CPU
/// per idle connection (docs/performance.md, "A lock on every turn"). Here a socket reads the
/// flag, and registers with the `Notify` once ([`ShutdownWait`](crate::wait::ShutdownWait)).
#[derive(Debug, Default)]
struct ShutdownSignal {
    /// Set once the shutdown has begun, before the waiters are woken.
    begun: AtomicBool,
    /// Wakes every socket (and [`Lifecycle::shutting_down`]) when `begun` is set.
    notify: Notify,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle::new()
    }
}

impl Lifecycle {
    /// Default [`Timing`], Close 1001 ("going away") on shutdown, no socket yet.
    pub fn new() -> Self {
        Lifecycle {
            timing: Timing::default(),
            shutdown_code: CloseCode::Away,
            shutdown: Arc::default(),
            sockets: TaskTracker::new(),
        }
    }

    /// The same lifecycle with other timing values.
    pub fn with_timing(self, timing: Timing) -> Self {
        Lifecycle { timing, ..self }
    }

    /// The same lifecycle, closing with `code` on shutdown: [`CloseCode::Away`] (1001, the
    /// default) or [`CloseCode::Restart`] (1012, "service restart": reconnect).
    pub fn with_shutdown_code(self, code: CloseCode) -> Self {
        Lifecycle {
            shutdown_code: code,
            ..self
        }
    }

    /// The timing every socket obeys.
    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// The Close code sockets get on shutdown.
    pub fn shutdown_code(&self) -> CloseCode {
        self.shutdown_code
    }

    /// Runs `task` on the runtime, counted until it finishes: use it for the task that will
    /// upgrade and serve a socket, so a shutdown that begins mid-handshake still waits for it.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.sockets.spawn(task)
    }

    /// `future`, counted until it finishes (for frameworks that spawn the socket's task).
    pub fn track<F: Future>(&self, future: F) -> TrackedFuture<F> {
        self.sockets.track_future(future)
    }

    /// How many sockets (and tasks from [`spawn`](Lifecycle::spawn)) are running now.
    pub fn running(&self) -> usize {
        self.sockets.len()
    }

    /// Whether [`shutdown`](Lifecycle::shutdown) has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.begun.load(Ordering::SeqCst)
    }

    /// Resolves once [`shutdown`](Lifecycle::shutdown) has begun.
    pub async fn shutting_down(&self) {
        // Made before the flag is read: a `Notified` gets every `notify_waiters` from its
        // creation on, so a shutdown between the read and the await still wakes it.
        let notified = self.shutdown.notify.notified();
        if !self.is_shutting_down() {
            notified.await;
        }
    }

    /// Begins the shutdown: sockets see the flag, then every waiter is woken.
    pub(crate) fn begin_shutdown(&self) {
        self.shutdown.begun.store(true, Ordering::SeqCst);
        self.shutdown.notify.notify_waiters();
    }

    /// The `Notified` a socket pins once and waits on for its whole life (see
    /// [`ShutdownWait`](crate::wait::ShutdownWait)).
    pub(crate) fn shutdown_notified(&self) -> Notified<'_> {
        self.shutdown.notify.notified()
    }

    /// Shuts every socket down: each is sent Close with the shutdown code and waits at most
    /// `close_timeout` for its answer. This waits at most `close_timeout` +
    /// [`SHUTDOWN_GRACE`] for all of them, and returns how many were still running then
    /// (0: every socket finished).
    ///
    /// Sockets that start after this still run, and are sent Close at once.
    pub async fn shutdown(&self) -> usize {
        self.begin_shutdown();
        self.sockets.close();
        let budget = self.timing.close_timeout + SHUTDOWN_GRACE;
        match tokio::time::timeout(budget, self.sockets.wait()).await {
            Ok(()) => 0,
            Err(_over) => self.sockets.len(),
        }
    }

    /// A token held while a socket runs.
    pub(crate) fn running_token(&self) -> tokio_util::task::task_tracker::TaskTrackerToken {
        self.sockets.token()
    }
}
