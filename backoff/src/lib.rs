//! The reconnect delays of a well-behaved WebSocket client, in one place for the demo page's
//! reconnecting subscription (`wsclose-client`, in the browser) and for `wsclose-check
//! --deploy`, whose connections reconnect the way that page does. So the reconnect stampede the
//! check measures is the one the project's own clients cause.
//!
//! RFC 6455 §7.2.3: the first reconnect waits a random delay, so the clients of a restarted
//! instance do not all come back at once; each further failed attempt doubles the ceiling up to
//! a cap, and the delay is drawn at random below it ("full jitter"). The caller draws the random
//! number, so this crate has no dependency and runs in the browser and natively alike.
//!
//! ```
//! use wsclose_backoff::Backoff;
//! let backoff = Backoff::default();
//! assert_eq!(backoff.delay_ms(0, 0.5), 500.0); // the first reconnect: 0..=1 s
//! assert_eq!(backoff.delay_ms(2, 1.0), 1_000.0); // the third: 0..=1 s
//! ```

/// The reconnect delays (RFC 6455 §7.2.3: a random first delay, then truncated exponential
/// backoff). All values in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// The first reconnect waits a random time in `0..=first_max_ms`.
    pub first_max_ms: f64,
    /// The ceiling of the second attempt; it doubles with each further failed attempt.
    pub base_ms: f64,
    /// The ceiling never grows beyond this.
    pub cap_ms: f64,
}

impl Default for Backoff {
    /// 0–1 s at first, then ceilings of 500 ms, 1 s, 2 s … up to 30 s.
    ///
    /// The first delay spreads the clients of a restarted instance: RFC 6455 §7.2.3 suggests
    /// up to 5 s. With 0–250 ms, the second step of the cluster's rolling restart (97 clients
    /// cut at once: the first step had moved them onto that instance) made 49 upgrades within
    /// one 100 ms, half of the 100 clients; 0–1 s keeps it under a quarter (`cargo test -p
    /// wsclose-e2e --test deploy the_clusters -- --nocapture`).
    fn default() -> Self {
        Backoff {
            first_max_ms: 1_000.0,
            base_ms: 500.0,
            cap_ms: 30_000.0,
        }
    }
}

impl Backoff {
    /// The delay before reconnect number `attempt` (0 for the first after a working
    /// connection), for a `random` number in `[0, 1)`.
    pub fn delay_ms(&self, attempt: u32, random: f64) -> f64 {
        let ceiling = if attempt == 0 {
            self.first_max_ms
        } else {
            (self.base_ms * 2f64.powi(attempt.min(30) as i32 - 1)).min(self.cap_ms)
        };
        ceiling * random.clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_random_first_then_truncated_exponential() {
        let backoff = Backoff::default();
        assert_eq!(backoff.delay_ms(0, 0.0), 0.0);
        assert_eq!(backoff.delay_ms(0, 1.0), 1_000.0);
        assert_eq!(backoff.delay_ms(1, 1.0), 500.0);
        assert_eq!(backoff.delay_ms(2, 1.0), 1_000.0);
        assert_eq!(backoff.delay_ms(3, 0.5), 1_000.0);
        assert_eq!(backoff.delay_ms(20, 1.0), 30_000.0);
        assert_eq!(backoff.delay_ms(u32::MAX, 1.0), 30_000.0);
    }
}
