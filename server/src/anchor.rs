//! One timer that saves every connection's timers a wake-up of tokio's timer driver.
//!
//! tokio wakes its timer driver whenever a timer is registered that expires before everything
//! else in its wheel (tokio 1.54, `runtime/time/mod.rs`, `reregister`): an eventfd write, which
//! wakes the worker thread parked in the driver. On a server with few connections that is
//! nearly every timer a connection arms (its keepalive when it opens, its close deadline when a
//! read has to wait during a close). Each such wake took the driver to the other worker, which
//! then received the connection's next event on another core.
//!
//! [`spawn`] keeps one timer in the wheel that always expires within [`ANCHOR_PERIOD`], sooner
//! than any timeout a connection arms with the default timing, so arming those wakes nobody.
//! The whole process pays one wake-up per period for it. `docs/performance.md` ("Where the
//! close handshake goes") has the measurement.

use std::time::Duration;

use tokio::task::JoinHandle;

/// How often the anchor timer fires: shorter than the shortest timeout a connection arms with
/// the default timing (`--close-timeout`, 5 s). A shorter timeout still works: arming it only
/// wakes the driver, as it would without the anchor.
pub const ANCHOR_PERIOD: Duration = Duration::from_secs(1);

/// Spawns the anchor timer; it runs until the returned task is aborted.
pub fn spawn() -> JoinHandle<()> {
    tokio::spawn(async {
        let mut anchor = tokio::time::interval(ANCHOR_PERIOD);
        loop {
            anchor.tick().await;
        }
    })
}
