//! What a socket's loop waits on beside its read, polled on every turn: the shutdown signal
//! and the connection's one timer.
//!
//! Both register a waker once and are not polled again while that waker stays the same and
//! nothing has happened. Polling them afresh on every turn (a `Notified` made and dropped, a
//! `Sleep` whose waker is stored again) took a lock shared by every socket, or the work of
//! storing a waker, twice per frame; on 2 cores it showed as CPU per idle connection
//! (docs/performance.md, "A lock on every turn").

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::sync::futures::Notified;
use tokio::time::{Instant, Sleep};

use crate::Lifecycle;

/// The waker a wait last registered, to tell whether a poll brings a new one.
#[derive(Default)]
struct Registered(Option<Waker>);

impl Registered {
    /// Whether `cx`'s waker is the one already registered.
    fn is_current(&self, cx: &Context<'_>) -> bool {
        self.0
            .as_ref()
            .is_some_and(|registered| registered.will_wake(cx.waker()))
    }

    /// Records `cx`'s waker as registered.
    fn set(&mut self, cx: &Context<'_>) {
        self.0 = Some(cx.waker().clone());
    }
}

/// One socket's wait for the shutdown: it reads the lifecycle's flag, and touches the shared
/// `Notify` only when its waker is new (the first poll, or a caller that polls with another
/// waker).
pub(crate) struct ShutdownWait<'a, 'n> {
    lifecycle: &'a Lifecycle,
    /// From [`Lifecycle::shutdown_notified`], pinned by the socket for its whole life, so that
    /// its registration in the `Notify` lasts from one poll to the next.
    notified: Pin<&'n mut Notified<'a>>,
    registered: Registered,
}

impl<'a, 'n> ShutdownWait<'a, 'n> {
    /// Waits on `notified`, which must come from `lifecycle`'s
    /// [`shutdown_notified`](Lifecycle::shutdown_notified).
    pub(crate) fn new(lifecycle: &'a Lifecycle, notified: Pin<&'n mut Notified<'a>>) -> Self {
        ShutdownWait {
            lifecycle,
            notified,
            registered: Registered::default(),
        }
    }
}

impl Future for ShutdownWait<'_, '_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if this.lifecycle.is_shutting_down() {
            return Poll::Ready(());
        }
        if !this.registered.is_current(cx) {
            // Registers, or moves the registration to this waker. `notified` was made before
            // the flag was read above, so a shutdown since then has notified it: Ready.
            if this.notified.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            this.registered.set(cx);
        }
        Poll::Pending
    }
}

/// The connection's one timer: polled only when it has fired or its waker is new.
pub(crate) struct TimerWait<'t> {
    sleep: Pin<&'t mut Sleep>,
    registered: Registered,
}

impl<'t> TimerWait<'t> {
    /// Waits on `sleep`, pinned by the socket for its whole life.
    pub(crate) fn new(sleep: Pin<&'t mut Sleep>) -> Self {
        TimerWait {
            sleep,
            registered: Registered::default(),
        }
    }

    /// Moves the timer to `deadline`; the next poll registers it again.
    pub(crate) fn reset(&mut self, deadline: Instant) {
        self.sleep.as_mut().reset(deadline);
        self.registered = Registered::default();
    }
}

impl Future for TimerWait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        // tokio marks the timer elapsed before it wakes the task, so a fired timer is seen
        // here even when the waker is the registered one.
        if this.registered.is_current(cx) && !this.sleep.is_elapsed() {
            return Poll::Pending;
        }
        let poll = this.sleep.as_mut().poll(cx);
        if poll.is_pending() {
            this.registered.set(cx);
        }
        poll
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;
    use std::time::Duration;

    use super::*;

    /// A waker that counts its wakes.
    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl Counter {
        fn wakes(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll_with<F: Future + Unpin>(future: &mut F, counter: &Arc<Counter>) -> Poll<F::Output> {
        let waker = Waker::from(counter.clone());
        Pin::new(future).poll(&mut Context::from_waker(&waker))
    }

    #[test]
    fn a_shutdown_wakes_the_waker_of_the_last_poll_and_then_the_wait_is_ready() {
        let lifecycle = Lifecycle::new();
        let notified = pin!(lifecycle.shutdown_notified());
        let mut wait = ShutdownWait::new(&lifecycle, notified);
        let (first, second) = (Arc::default(), Arc::default());
        assert!(poll_with(&mut wait, &first).is_pending());
        assert!(poll_with(&mut wait, &first).is_pending());
        // A caller that polls with another waker (a combinator's, say) moves the registration.
        assert!(poll_with(&mut wait, &second).is_pending());
        lifecycle.begin_shutdown();
        assert_eq!(second.wakes(), 1, "the last poll's waker is woken");
        assert_eq!(first.wakes(), 0);
        assert!(poll_with(&mut wait, &second).is_ready());
    }

    #[test]
    fn a_wait_made_before_the_shutdown_and_polled_after_it_is_ready() {
        let lifecycle = Lifecycle::new();
        let notified = pin!(lifecycle.shutdown_notified());
        let mut wait = ShutdownWait::new(&lifecycle, notified);
        lifecycle.begin_shutdown();
        assert!(poll_with(&mut wait, &Arc::default()).is_ready());
    }

    #[tokio::test(start_paused = true)]
    async fn a_timer_wakes_the_waker_of_the_last_poll_and_is_ready_once_fired_even_after_a_reset() {
        let sleep = pin!(tokio::time::sleep(Duration::from_secs(10)));
        let mut timer = TimerWait::new(sleep);
        let (first, second) = (Arc::default(), Arc::default());
        assert!(poll_with(&mut timer, &first).is_pending());
        assert!(poll_with(&mut timer, &second).is_pending());
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(second.wakes(), 1, "the last poll's waker is woken");
        assert_eq!(first.wakes(), 0);
        assert!(poll_with(&mut timer, &second).is_ready());

        // Reset, registered with one waker, then polled with the same one before it fires.
        timer.reset(Instant::now() + Duration::from_secs(10));
        assert!(poll_with(&mut timer, &second).is_pending());
        assert!(poll_with(&mut timer, &second).is_pending());
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(second.wakes(), 2);
        assert!(poll_with(&mut timer, &second).is_ready());
    }
}
