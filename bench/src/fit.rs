//! Least-squares straight lines, for projecting the scale steps to 100k and 1M connections.

use serde::Serialize;

/// A fitted line `y = intercept + slope × x`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Line {
    /// The change in `y` per unit of `x`.
    pub slope: f64,
    /// `y` at `x = 0`.
    pub intercept: f64,
    /// How many points it was fitted to.
    pub points: usize,
}

impl Line {
    /// The ordinary least-squares line through `points` (`(x, y)`), or `None` with fewer than
    /// two distinct `x` or a non-finite value.
    pub fn fit(points: &[(f64, f64)]) -> Option<Line> {
        if points.len() < 2 || points.iter().any(|(x, y)| !x.is_finite() || !y.is_finite()) {
            return None;
        }
        let n = points.len() as f64;
        let mean_x = points.iter().map(|(x, _)| x).sum::<f64>() / n;
        let mean_y = points.iter().map(|(_, y)| y).sum::<f64>() / n;
        let sxx: f64 = points.iter().map(|(x, _)| (x - mean_x).powi(2)).sum();
        let sxy: f64 = points
            .iter()
            .map(|(x, y)| (x - mean_x) * (y - mean_y))
            .sum();
        if sxx <= 0.0 {
            return None;
        }
        let slope = sxy / sxx;
        Some(Line {
            slope,
            intercept: mean_y - slope * mean_x,
            points: points.len(),
        })
    }

    /// The line's `y` at `x`.
    pub fn at(&self, x: f64) -> f64 {
        self.intercept + self.slope * x
    }

    /// How a point that was not fitted lies against the line.
    pub fn check(&self, x: f64, measured: f64) -> Residual {
        let predicted = self.at(x);
        Residual {
            x,
            measured,
            predicted,
            residual: measured - predicted,
            relative_error: (predicted - measured) / measured,
        }
    }
}

/// A point held out of a fit, against the line.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Residual {
    /// Where the point is.
    pub x: f64,
    /// What was measured there.
    pub measured: f64,
    /// What the line says.
    pub predicted: f64,
    /// `measured − predicted`.
    pub residual: f64,
    /// `(predicted − measured) / measured`: how far off the line's projection would have been
    /// (positive: the line overestimates).
    pub relative_error: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_an_exact_line() {
        let line = Line::fit(&[(1_000.0, 12.0), (5_000.0, 44.0), (10_000.0, 84.0)]).unwrap();
        assert!((line.slope - 0.008).abs() < 1e-12, "{line:?}");
        assert!((line.intercept - 4.0).abs() < 1e-9, "{line:?}");
        assert_eq!(line.points, 3);
        assert!((line.at(100_000.0) - 804.0).abs() < 1e-6);
    }

    #[test]
    fn least_squares_of_noisy_points() {
        // Scattered points: slope = Sxy / Sxx = 3 / 5, through the means (1.5, 2.5).
        let line = Line::fit(&[(0.0, 2.0), (1.0, 1.0), (2.0, 4.0), (3.0, 3.0)]).unwrap();
        assert!((line.slope - 0.6).abs() < 1e-12, "{line:?}");
        assert!((line.intercept - 1.6).abs() < 1e-12, "{line:?}");
    }

    #[test]
    fn needs_two_distinct_x() {
        assert_eq!(Line::fit(&[]), None);
        assert_eq!(Line::fit(&[(1.0, 1.0)]), None);
        assert_eq!(Line::fit(&[(1.0, 1.0), (1.0, 2.0)]), None);
        assert_eq!(Line::fit(&[(1.0, 1.0), (2.0, f64::NAN)]), None);
    }

    #[test]
    fn residual_of_a_held_out_point() {
        let line = Line::fit(&[(0.0, 0.0), (10.0, 10.0)]).unwrap();
        let check = line.check(20.0, 25.0);
        assert_eq!(check.predicted, 20.0);
        assert_eq!(check.residual, 5.0);
        assert!((check.relative_error - -0.2).abs() < 1e-12);
    }
}
