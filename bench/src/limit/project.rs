//! The least-squares fits over the steps below the largest, the largest checked against them,
//! and the projections past the machine.

use super::*;

/// Fits `points` but the last and checks the last against the line.
pub(super) fn fit_and_check(points: &[(f64, f64)]) -> Option<Fit> {
    let (last, fitted) = points.split_last()?;
    let line = Line::fit(fitted)?;
    Some(Fit {
        line,
        max_step: Some(line.check(last.0, last.1)),
    })
}

/// The fits and projections of one server, from its steps in order.
pub fn project(name: &'static str, steps: &[&Step]) -> Projection {
    let memory: Vec<(f64, f64)> = steps
        .iter()
        .filter_map(|step| step.held.as_ref())
        .map(|held| (held.connections as f64, held.server_memory_kib))
        .collect();
    let rss: Vec<(f64, f64)> = steps
        .iter()
        .filter_map(|step| step.held.as_ref())
        .map(|held| (held.connections as f64, held.loaded_rss_kib as f64))
        .collect();
    let shutdown: Vec<(f64, f64)> = steps
        .iter()
        .filter_map(|step| step.shutdown.as_ref())
        .filter_map(|s| Some((s.connections as f64, s.shutdown_ms?)))
        .collect();
    let memory_fit = fit_and_check(&memory);
    let shutdown_fit = fit_and_check(&shutdown);
    let mib_at = |x: f64| memory_fit.as_ref().map(|fit| fit.line.at(x) / 1024.0);
    Projection {
        name,
        per_100k_mib: mib_at(PROJECT_TO[0]),
        per_1m_mib: mib_at(PROJECT_TO[1]),
        shutdown_100k_ms: shutdown_fit.as_ref().map(|fit| fit.line.at(PROJECT_TO[0])),
        memory_fit,
        rss_fit: rss.split_last().and_then(|(_, fitted)| Line::fit(fitted)),
        shutdown_fit,
    }
}

/// One server's largest step.
pub(super) fn at_max(name: &'static str, step: &Step) -> AtMax {
    let held = step.held.as_ref();
    let shutdown = step.shutdown.as_ref();
    AtMax {
        name,
        connections: held.map_or(0, |held| held.connections),
        rss_per_conn_kib: held.map_or(f64::NAN, |held| held.rss_per_conn_kib),
        kernel_per_conn_kib: held.map_or(f64::NAN, |held| held.kernel_per_conn_kib),
        cpu_us_per_conn_s: held.map_or(f64::NAN, |held| held.cpu_us_per_conn_s),
        shutdown_ms: shutdown.and_then(|s| s.shutdown_ms),
        shutdown_clean: shutdown.map_or(0, |s| s.ending.tally.clean),
        storm_ms: held.and_then(|held| held.storm.last_close_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(n: usize, memory_kib: f64, shutdown_ms: f64) -> Step {
        let ending = TimedTally::from(&ClientTally::default());
        Step {
            server: "s",
            requested: n,
            held: Some(Held {
                connections: n,
                failed_to_open: 0,
                first_error: None,
                client_processes: 1,
                ramp_s: 0.0,
                baseline_rss_kib: 0,
                loaded_rss_kib: memory_kib as u64,
                rss_per_conn_kib: 0.0,
                tcp_inuse_delta: 0,
                buffer_delta_kib: 0.0,
                slab_delta_kib: 0.0,
                kernel_delta_kib: 0.0,
                kernel_per_conn_kib: 0.0,
                server_memory_kib: memory_kib,
                cpu_window_s: 0.0,
                cpu_ms_per_s: 0.0,
                cpu_us_per_conn_s: 0.0,
                active_after_storm: None,
                storm: ending.clone(),
                storm_close_ms: Vec::new(),
            }),
            shutdown: Some(Shutdown {
                connections: n,
                failed_to_open: 0,
                ending,
                shutdown_ms: Some(shutdown_ms),
                exit: String::new(),
            }),
            errors: Vec::new(),
        }
    }

    #[test]
    fn projects_from_the_steps_below_the_largest() {
        // 4 MiB + 8 KiB per connection; the largest step is 10% above the line.
        let steps = [
            step(1_000, 4_096.0 + 8_000.0, 10.0),
            step(5_000, 4_096.0 + 40_000.0, 50.0),
            step(10_000, 4_096.0 + 80_000.0, 100.0),
            step(19_000, 1.1 * (4_096.0 + 152_000.0), 190.0),
        ];
        let refs: Vec<&Step> = steps.iter().collect();
        let projection = project("s", &refs);
        let memory = projection.memory_fit.unwrap();
        assert!((memory.line.slope - 8.0).abs() < 1e-9);
        assert_eq!(memory.line.points, 3);
        let check = memory.max_step.unwrap();
        assert!(
            (check.relative_error - (1.0 / 1.1 - 1.0)).abs() < 1e-9,
            "{check:?}"
        );
        let per_100k = projection.per_100k_mib.unwrap();
        assert!((per_100k - (4_096.0 + 800_000.0) / 1024.0).abs() < 1e-6);
        assert!((projection.shutdown_100k_ms.unwrap() - 1_000.0).abs() < 1e-6);
        // One step: nothing to fit.
        let one = project("s", &refs[..1]);
        assert!(one.memory_fit.is_none() && one.per_1m_mib.is_none());
    }
}
