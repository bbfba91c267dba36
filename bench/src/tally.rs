//! How connections ended, counted: what each scale client process reports after a storm or a
//! shutdown, and what the bench adds up over the processes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How many connections ended which way: what a client process counts, and what the bench
/// adds up and reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tally {
    /// Connections that were open when the signal came.
    pub connections: usize,
    /// Connections that had already ended before the signal (broken while idle).
    pub ended_before: usize,
    /// Close codes the server sent (or echoed), by code (0: a Close without a code).
    pub close_codes: BTreeMap<u16, usize>,
    /// The server's Close had the expected code, then the TCP connection ended with EOF.
    pub clean: usize,
    /// TCP ended (EOF) without the server's Close.
    pub eof_without_close: usize,
    /// The connection was reset.
    pub reset: usize,
    /// Any other error.
    pub other_error: usize,
    /// Not ended when the wait timed out.
    pub timed_out: usize,
}

impl Tally {
    /// Adds `other`'s counts to these.
    fn add(&mut self, other: Tally) {
        self.connections += other.connections;
        self.ended_before += other.ended_before;
        for (code, count) in other.close_codes {
            *self.close_codes.entry(code).or_default() += count;
        }
        self.clean += other.clean;
        self.eof_without_close += other.eof_without_close;
        self.reset += other.reset;
        self.other_error += other.other_error;
        self.timed_out += other.timed_out;
    }
}

/// How a client process's connections ended, after a storm or a shutdown: the [`Tally`], and
/// when each Close and the last TCP end came ([`ClientTally::merge`] adds up several processes).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClientTally {
    /// The counts.
    pub tally: Tally,
    /// Per connection that got the server's Close: ms from the signal to it.
    pub close_ms: Vec<f64>,
    /// The last TCP end (EOF, reset or error), ms from the signal.
    pub last_end_ms: Option<f64>,
}

impl ClientTally {
    /// Adds up the figures of several client processes.
    pub fn merge(parts: impl IntoIterator<Item = ClientTally>) -> ClientTally {
        let mut all = ClientTally::default();
        for part in parts {
            all.tally.add(part.tally);
            all.close_ms.extend(part.close_ms);
            all.last_end_ms = match (all.last_end_ms, part.last_end_ms) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
        all
    }

    /// The last server Close, ms from the signal.
    pub fn last_close_ms(&self) -> Option<f64> {
        self.close_ms.iter().copied().reduce(f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Event;

    #[test]
    fn merges_the_processes_figures() {
        let one = ClientTally {
            tally: Tally {
                connections: 2,
                close_codes: BTreeMap::from([(1001, 2)]),
                clean: 2,
                ..Tally::default()
            },
            close_ms: vec![1.0, 3.0],
            last_end_ms: Some(4.0),
        };
        let two = ClientTally {
            tally: Tally {
                connections: 1,
                close_codes: BTreeMap::from([(1001, 1)]),
                reset: 1,
                ..Tally::default()
            },
            close_ms: vec![2.0],
            last_end_ms: Some(5.0),
        };
        let text = serde_json::to_string(&Event::Ended(two)).unwrap();
        let Event::Ended(two) = serde_json::from_str(&text).unwrap() else {
            panic!("{text}");
        };
        let all = ClientTally::merge([one, two]);
        assert_eq!(all.tally.connections, 3);
        assert_eq!(all.tally.close_codes[&1001], 3);
        assert_eq!((all.tally.clean, all.tally.reset), (2, 1));
        assert_eq!(all.last_close_ms(), Some(3.0));
        assert_eq!(all.last_end_ms, Some(5.0));
    }
}
