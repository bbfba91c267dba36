//! What the phase prints: the steps table, the projection table and wsclose's rows of the
//! main table.

use super::*;

/// `value` with `digits` decimals, or `–`.
pub(super) fn num(value: Option<f64>, digits: usize) -> String {
    value
        .filter(|v| v.is_finite())
        .map_or("–".to_owned(), |v| format!("{v:.digits$}"))
}

/// The steps table: one row per server per step.
pub fn steps_table(run: &LimitRun) -> String {
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::ASCII_MARKDOWN)
        .set_header([
            "server",
            "connections",
            "RSS/conn, KiB",
            "kernel/conn, KiB",
            "CPU, µs/conn-s",
            "storm, ms (clean)",
            "shutdown, ms (clean 1001)",
            "shutdown: how the clients ended",
        ]);
    let mut rows: Vec<&Step> = run.results.iter().collect();
    rows.sort_by_key(|step| {
        (
            run.at_max.iter().position(|m| m.name == step.server),
            step.requested,
        )
    });
    for step in rows {
        let held = step.held.as_ref();
        let shutdown = step.shutdown.as_ref();
        let connections = match held {
            Some(held) if held.failed_to_open > 0 => {
                format!("{}/{}", held.connections, step.requested)
            }
            Some(held) => held.connections.to_string(),
            None => format!("ERROR/{}", step.requested),
        };
        let storm = held.map_or("ERROR".to_owned(), |held| {
            format!(
                "{} ({}/{})",
                num(held.storm.last_close_ms, 0),
                held.storm.tally.clean,
                held.storm.tally.connections
            )
        });
        let (shutdown_cell, how) = shutdown.map_or(("ERROR".to_owned(), String::new()), |s| {
            let e = &s.ending.tally;
            let codes = e
                .close_codes
                .iter()
                .map(|(code, count)| format!("{count}× Close {code}"))
                .collect::<Vec<_>>()
                .join(", ");
            let mut how = vec![codes];
            for (count, what) in [
                (e.eof_without_close, "EOF without Close"),
                (e.reset, "reset"),
                (e.other_error, "other error"),
                (e.timed_out, "timed out"),
            ] {
                if count > 0 {
                    how.push(format!("{count}× {what}"));
                }
            }
            how.retain(|part| !part.is_empty());
            (
                format!("{} ({}/{})", num(s.shutdown_ms, 0), e.clean, e.connections),
                how.join(", "),
            )
        });
        table.add_row([
            step.server.to_owned(),
            connections,
            num(held.map(|h| h.rss_per_conn_kib), 2),
            num(held.map(|h| h.kernel_per_conn_kib), 2),
            num(held.map(|h| h.cpu_us_per_conn_s), 1),
            storm,
            shutdown_cell,
            how,
        ]);
    }
    table.to_string()
}

/// The projection table: the fitted slopes, the largest step against them, 100k and 1M.
pub fn projection_table(run: &LimitRun) -> String {
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::ASCII_MARKDOWN)
        .set_header([
            "server",
            "memory fit: KiB/conn, intercept MiB",
            "max step: measured vs line MiB (rel. error)",
            "100k, MiB",
            "1M, MiB",
            "shutdown fit: ms per 1k conns, intercept ms",
            "max step: measured vs line ms (rel. error)",
            "shutdown at 100k, ms",
        ]);
    let residual = |check: Option<Residual>, scale: f64, digits: usize| {
        check.map_or("–".to_owned(), |r| {
            format!(
                "{} vs {} ({:+.1}%)",
                num(Some(r.measured / scale), digits),
                num(Some(r.predicted / scale), digits),
                100.0 * r.relative_error
            )
        })
    };
    for p in &run.projection {
        let memory = p.memory_fit.as_ref();
        let shutdown = p.shutdown_fit.as_ref();
        table.add_row([
            p.name.to_owned(),
            memory.map_or("–".to_owned(), |fit| {
                format!(
                    "{}, {}",
                    num(Some(fit.line.slope), 2),
                    num(Some(fit.line.intercept / 1024.0), 1)
                )
            }),
            residual(memory.and_then(|fit| fit.max_step), 1024.0, 1),
            num(p.per_100k_mib, 0),
            num(p.per_1m_mib, 0),
            shutdown.map_or("–".to_owned(), |fit| {
                format!(
                    "{}, {}",
                    num(Some(fit.line.slope * 1e3), 1),
                    num(Some(fit.line.intercept), 0)
                )
            }),
            residual(shutdown.and_then(|fit| fit.max_step), 1.0, 0),
            num(p.shutdown_100k_ms, 0),
        ]);
    }
    table.to_string()
}

/// wsclose's rows of the main table: RSS and the storm at [`TARGET_STEP`] (or the largest step
/// below it), held connections, CPU and the graceful shutdown at the largest.
pub(super) fn figures(run: &LimitRun, close_timeout: Duration, report: &mut Report) {
    let ours: Vec<&Step> = run
        .results
        .iter()
        .filter(|step| step.server == "wsclose")
        .collect();
    let Some(largest) = ours.last() else {
        report.figures.push(Figure::missing(
            "scale",
            "scale phase",
            Verdict::Error,
            "wsclose was not measured",
            "",
        ));
        return;
    };
    for step in &ours {
        for error in &step.errors {
            report.figures.push(Figure::missing(
                "scale",
                format!("scale: wsclose at {}", step.requested),
                Verdict::Error,
                error.clone(),
                "",
            ));
        }
    }
    let at_target = ours
        .iter()
        .rev()
        .find(|step| step.requested <= TARGET_STEP)
        .unwrap_or(largest);
    if let Some(held) = &largest.held {
        let n = largest.requested;
        report.figures.push(if held.failed_to_open > 0 {
            Figure::missing(
                "connections_opened",
                "connections held at the limit",
                Verdict::Error,
                format!(
                    "{}/{n}; first error: {}",
                    held.connections,
                    held.first_error.as_deref().unwrap_or("?")
                ),
                n.to_string(),
            )
        } else {
            Figure::info(
                "connections_opened",
                "connections held at the limit",
                Some(held.connections as f64),
                "",
                format!(
                    "{} in {:.1} s ({} client processes; hard RLIMIT_NOFILE {} less {})",
                    held.connections,
                    held.ramp_s,
                    held.client_processes,
                    run.hard_nofile,
                    run.fd_margin
                ),
            )
        });
        report.figures.push(Figure::info(
            "server_cpu_idle",
            format!("server CPU, {} idle (ping every second)", held.connections),
            Some(held.cpu_ms_per_s),
            "ms/s",
            format!(
                "{:.0} ms/s = {:.1} µs per connection-second",
                held.cpu_ms_per_s, held.cpu_us_per_conn_s
            ),
        ));
    }
    if let Some(held) = &at_target.held {
        let n = held.connections;
        report.figures.push(Figure::checked(
            "rss_per_connection",
            format!("server RSS per idle connection ({n})"),
            held.rss_per_conn_kib,
            "KiB",
            format!(
                "{:.2} KiB ({:.1} → {:.1} MiB); kernel {:.2} KiB",
                held.rss_per_conn_kib,
                held.baseline_rss_kib as f64 / 1024.0,
                held.loaded_rss_kib as f64 / 1024.0,
                held.kernel_per_conn_kib
            ),
            format!("≤ {TARGET_RSS_KIB} KiB"),
            held.rss_per_conn_kib <= TARGET_RSS_KIB,
        ));
        let storm = &held.storm;
        let storm_ms = storm.last_close_ms.unwrap_or(f64::NAN);
        report.figures.push(Figure::checked(
            "close_storm_all",
            format!(
                "close storm: all {} handshakes done",
                storm.tally.connections
            ),
            storm_ms,
            "ms",
            format!("{storm_ms:.0} ms (p50 {})", num(storm.close_p50_ms, 0)),
            format!("≤ {TARGET_STORM_MS} ms"),
            storm_ms <= TARGET_STORM_MS && storm.tally.clean == storm.tally.connections,
        ));
        report.figures.push(Figure::all_of(
            "close_storm_clean",
            "close storm: clean (1000 echoed, then FIN)",
            storm.tally.clean,
            storm.tally.connections,
            n,
        ));
        report.figures.push(Figure::checked(
            "server_active_after_storm",
            "server connections still open after the storm",
            held.active_after_storm.unwrap_or(f64::NAN),
            "",
            num(held.active_after_storm, 0),
            "0",
            held.active_after_storm == Some(0.0),
        ));
        report.storm = Samples::from_ms(held.storm_close_ms.iter().copied());
    }
    if let Some(shutdown) = &largest.shutdown {
        let bound_ms = (close_timeout + SHUTDOWN_SLACK).as_secs_f64() * 1e3;
        let ms = shutdown.shutdown_ms.unwrap_or(f64::NAN);
        let e = &shutdown.ending.tally;
        report.figures.push(Figure::checked(
            "graceful_shutdown",
            format!(
                "graceful shutdown of {}: SIGTERM → every client has 1001 and EOF",
                shutdown.connections
            ),
            ms,
            "ms",
            format!(
                "{} ms ({}/{} clean; last Close at {} ms; {})",
                num(shutdown.shutdown_ms, 0),
                e.clean,
                e.connections,
                num(shutdown.ending.last_close_ms, 0),
                shutdown.exit
            ),
            format!("≤ close_timeout + 1 s = {bound_ms:.0} ms, all clean"),
            ms <= bound_ms && e.clean == e.connections && e.connections == largest.requested,
        ));
    }
}
