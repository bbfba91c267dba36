//! Percentiles of a set of durations.

use std::time::Duration;

use serde::Serialize;

/// Order statistics of one measured series, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// How many samples.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Smallest sample.
    pub min_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
    /// Arithmetic mean.
    pub mean_ms: f64,
}

/// A series of samples in milliseconds, kept sorted.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    sorted_ms: Vec<f64>,
}

impl Samples {
    /// Samples from durations.
    pub fn from_durations(durations: impl IntoIterator<Item = Duration>) -> Samples {
        Samples::from_ms(durations.into_iter().map(|d| d.as_secs_f64() * 1e3))
    }

    /// Samples already in milliseconds; NaNs are dropped.
    pub fn from_ms(ms: impl IntoIterator<Item = f64>) -> Samples {
        let mut sorted_ms: Vec<f64> = ms.into_iter().filter(|v| !v.is_nan()).collect();
        sorted_ms.sort_by(f64::total_cmp);
        Samples { sorted_ms }
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.sorted_ms.is_empty()
    }

    /// The samples in ascending order.
    pub fn sorted_ms(&self) -> &[f64] {
        &self.sorted_ms
    }

    /// The `q`-quantile (0 ≤ q ≤ 1), nearest-rank; NaN when empty.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.sorted_ms.is_empty() {
            return f64::NAN;
        }
        let rank = (q * self.sorted_ms.len() as f64).ceil() as usize;
        self.sorted_ms[rank.clamp(1, self.sorted_ms.len()) - 1]
    }

    /// p50, p90, p99, min, max and mean.
    pub fn summary(&self) -> Summary {
        let n = self.sorted_ms.len();
        Summary {
            count: n,
            p50_ms: self.quantile(0.50),
            p90_ms: self.quantile(0.90),
            p99_ms: self.quantile(0.99),
            min_ms: self.sorted_ms.first().copied().unwrap_or(f64::NAN),
            max_ms: self.sorted_ms.last().copied().unwrap_or(f64::NAN),
            mean_ms: if n == 0 {
                f64::NAN
            } else {
                self.sorted_ms.iter().sum::<f64>() / n as f64
            },
        }
    }

    /// At most `points` (value, cumulative fraction) pairs of the empirical CDF, for plotting.
    pub fn cdf(&self, points: usize) -> Vec<(f64, f64)> {
        let n = self.sorted_ms.len();
        if n == 0 {
            return Vec::new();
        }
        let step = n.div_ceil(points.max(1)).max(1);
        let mut cdf: Vec<(f64, f64)> = (0..n)
            .step_by(step)
            .map(|i| (self.sorted_ms[i], (i + 1) as f64 / n as f64))
            .collect();
        if cdf.last().map(|&(_, f)| f) != Some(1.0) {
            cdf.push((self.sorted_ms[n - 1], 1.0));
        }
        cdf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let samples = Samples::from_ms((1..=100).map(f64::from));
        assert_eq!(samples.quantile(0.5), 50.0);
        assert_eq!(samples.quantile(0.99), 99.0);
        assert_eq!(samples.quantile(1.0), 100.0);
        assert_eq!(samples.quantile(0.0), 1.0);
        let summary = samples.summary();
        assert_eq!(summary.count, 100);
        assert_eq!(summary.max_ms, 100.0);
        assert_eq!(samples.cdf(10).last(), Some(&(100.0, 1.0)));
    }
}
