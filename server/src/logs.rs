//! Logging that a peer cannot amplify: what a peer sent is cut to [`MAX_LOGGED_BYTES`], and
//! refusals are logged at most once a second, with the count of the ones in between.
//!
//! Refused upgrades cost a peer one request each. Logged whole, at INFO, a request with a
//! 15 KB `Origin` turned into 22 MB of log a second. Each refusal is also counted in
//! `/metrics` (`wsclose_upgrades_refused_total`), so the log only has to say that they happen.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::time::Instant;

/// The most bytes of a peer's header value that go into one log line.
pub const MAX_LOGGED_BYTES: usize = 128;

/// How often, at most, [`Refusals`] writes a line.
pub const REFUSAL_LOG_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

/// `value`, cut to at most [`MAX_LOGGED_BYTES`] on a character boundary, with `…` when cut.
pub fn truncated(value: &str) -> std::borrow::Cow<'_, str> {
    if value.len() <= MAX_LOGGED_BYTES {
        return value.into();
    }
    let mut end = MAX_LOGGED_BYTES;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &value[..end]).into()
}

/// Refusals to log: one line per [`REFUSAL_LOG_PERIOD`] at most, saying how many were not
/// logged since the last one. Clones share the count.
#[derive(Clone)]
pub struct Refusals {
    inner: Arc<RefusalsInner>,
}

struct RefusalsInner {
    start: Instant,
    /// Milliseconds from `start` to the last line written, plus one period: before it, no line.
    next_line_ms: AtomicU64,
    /// Refusals since the last line.
    unlogged: AtomicU64,
}

impl Refusals {
    /// No refusal yet.
    pub fn new() -> Self {
        Refusals {
            inner: Arc::new(RefusalsInner {
                start: Instant::now(),
                next_line_ms: AtomicU64::new(0),
                unlogged: AtomicU64::new(0),
            }),
        }
    }

    /// Counts one refusal. Returns the number of refusals this line stands for when a line may
    /// be written now (the caller writes it), `None` when it is to be counted only.
    pub fn note(&self) -> Option<u64> {
        let inner = &self.inner;
        let unlogged = inner.unlogged.fetch_add(1, Ordering::Relaxed) + 1;
        let now_ms = u64::try_from(inner.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let next = inner.next_line_ms.load(Ordering::Relaxed);
        let period_ms = REFUSAL_LOG_PERIOD.as_millis() as u64;
        if now_ms < next
            || inner
                .next_line_ms
                .compare_exchange(
                    next,
                    now_ms + period_ms,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return None;
        }
        inner.unlogged.fetch_sub(unlogged, Ordering::Relaxed);
        Some(unlogged)
    }
}

impl Default for Refusals {
    fn default() -> Self {
        Refusals::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_on_a_character_boundary() {
        assert_eq!(truncated("short"), "short");
        let long = "é".repeat(100);
        let cut = truncated(&long);
        assert!(cut.len() <= MAX_LOGGED_BYTES + "…".len(), "{}", cut.len());
        assert!(cut.ends_with('…'));
    }

    #[tokio::test(start_paused = true)]
    async fn one_line_a_period_counts_the_refusals_between() {
        let refusals = Refusals::new();
        assert_eq!(refusals.note(), Some(1));
        for _ in 0..999 {
            assert_eq!(refusals.note(), None);
        }
        tokio::time::advance(REFUSAL_LOG_PERIOD).await;
        assert_eq!(refusals.note(), Some(1_000));
        assert_eq!(refusals.note(), None);
    }
}
