//! `wsclose-bench`: parses the flags into [`wsclose_bench::Options`] and runs the bench.
//! Exit status: 0 when every measurement was made (a missed target is not an error), 1 when
//! one failed, 2 for bad flags.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use wsclose_bench::{positive, Options};

/// Close latency against the TCP floor and peer servers, browser close latency, and scale to
/// the most connections one server process may hold. Defaults in brackets are for a full run, then for --quick.
#[derive(Parser)]
#[command(version, about, max_term_width = 100)]
struct Cli {
    /// Smoke run: smaller sizes everywhere (200 connections, 100 handshakes, 10 browser
    /// probes, 2 peer rounds).
    #[arg(long)]
    quick: bool,
    /// Caps the scale phase's largest step [the hard open-file limit less 1000, after steps
    /// of 1000, 5000, 10000 below it; 200, the only step].
    #[arg(long, value_name = "N", value_parser = positive)]
    connections: Option<usize>,
    /// Sequential close handshakes [1000; 100].
    #[arg(long, value_name = "N", value_parser = positive)]
    handshakes: Option<usize>,
    /// Loopback TCP round trips [20000; 2000].
    #[arg(long, value_name = "N", value_parser = positive)]
    rtt_iterations: Option<usize>,
    /// Run the browser phase (the default; skipped anyway without /usr/bin/chromedriver or a
    /// built target/www/pkg).
    #[arg(long, overrides_with = "no_browser")]
    browser: bool,
    /// Skip the browser phase.
    #[arg(long)]
    no_browser: bool,
    /// Close probes in headless Chromium [100; 10].
    #[arg(long, value_name = "N", value_parser = positive)]
    browser_probes: Option<usize>,
    /// Where results.json and the plots go [target/bench].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// The server binary [target/release/wsclose-server].
    #[arg(long, value_name = "PATH")]
    server: Option<PathBuf>,
    /// Skip the peers (a peer that is not installed is skipped anyway, with the reason).
    #[arg(long)]
    no_peers: bool,
    /// Rounds over wsclose and the peers, alternating [5; 2].
    #[arg(long, value_name = "N", value_parser = positive)]
    rounds: Option<usize>,
    /// Close handshakes per server per round [200; 50].
    #[arg(long, value_name = "N", value_parser = positive)]
    peer_handshakes: Option<usize>,
    /// Idle connections per server per round, for RSS, CPU and the storm [1000; 100].
    #[arg(long, value_name = "N", value_parser = positive)]
    peer_idle: Option<usize>,
    /// How long each timed connection idles once its Ping is answered, before the Close
    /// [1; 1]. 0 sends the Close the moment the Pong arrives.
    #[arg(long, value_name = "MS")]
    close_idle_ms: Option<u64>,
    /// Run as one of the scale phase's client processes (commands on stdin, JSON lines).
    #[arg(long, hide = true)]
    scale_client: bool,
}

impl Cli {
    fn options(self) -> Options {
        let defaults = Options::defaults(self.quick);
        Options {
            quick: self.quick,
            connections: self.connections.or(defaults.connections),
            handshakes: self.handshakes.unwrap_or(defaults.handshakes),
            rtt_iterations: self.rtt_iterations.unwrap_or(defaults.rtt_iterations),
            browser: !self.no_browser,
            browser_probes: self.browser_probes.unwrap_or(defaults.browser_probes),
            out: self.out.unwrap_or(defaults.out),
            server: self.server.unwrap_or(defaults.server),
            peers: !self.no_peers,
            rounds: self.rounds.unwrap_or(defaults.rounds),
            peer_handshakes: self.peer_handshakes.unwrap_or(defaults.peer_handshakes),
            peer_idle: self.peer_idle.unwrap_or(defaults.peer_idle),
            close_idle: self
                .close_idle_ms
                .map_or(defaults.close_idle, Duration::from_millis),
        }
    }
}

fn main() -> ExitCode {
    let cli: Cli = match wsclose_bench::parse_flags("wsclose-bench") {
        Ok(cli) => cli,
        Err(status) => return status,
    };
    if cli.scale_client {
        return match wsclose_bench::client::main() {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("wsclose-bench --scale-client: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    match wsclose_bench::run(&cli.options()) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(errors) => {
            eprintln!("wsclose-bench: {errors} measurement(s) failed; see ERROR rows above");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("wsclose-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}
