//! `close-handshakes URL...`: how fast each server answers a Close, next to the others, with
//! the bench's client and method (the peers phase of `make bench`, for servers you start
//! yourself): in each round, interleaved close handshakes with every url, each on a fresh
//! connection that has answered a Ping and then idled. Prints each url's p50 (median over the
//! rounds, min–max) and its ratio to the first url's.
//!
//! `cargo run --release -p wsclose-bench --bin close-handshakes -- ws://127.0.0.1:3030/ws/echo ws://127.0.0.1:9001/ws`

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use wsclose_bench::latency::{p50_rounds, CLOSE_IDLE};
use wsclose_bench::peers::{median, spread};
use wsclose_bench::{parse_flags, positive};

/// Close handshakes against the servers at URL..., interleaved, in rounds.
#[derive(Parser)]
#[command(version, max_term_width = 100)]
struct Cli {
    /// The servers' WebSocket urls (ws://HOST:PORT/PATH); ratios are to the first.
    #[arg(required = true, value_name = "URL")]
    urls: Vec<String>,
    /// Rounds over the urls, the order rotated each round.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = positive)]
    rounds: usize,
    /// Close handshakes per url per round (after a warm-up of 50).
    #[arg(long, value_name = "N", default_value_t = 200, value_parser = positive)]
    handshakes: usize,
    /// How long each connection idles between its Pong and its Close.
    #[arg(long, value_name = "MS", default_value_t = CLOSE_IDLE.as_millis() as u64)]
    close_idle_ms: u64,
}

fn main() -> ExitCode {
    let cli: Cli = match parse_flags("close-handshakes") {
        Ok(cli) => cli,
        Err(status) => return status,
    };
    let urls: Vec<&str> = cli.urls.iter().map(String::as_str).collect();
    let idle = Duration::from_millis(cli.close_idle_ms);
    let measured = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| {
            runtime.block_on(p50_rounds(
                &urls,
                cli.rounds.max(1),
                cli.handshakes.max(1),
                idle,
            ))
        });
    let p50s = match measured {
        Ok(p50s) => p50s,
        Err(error) => {
            eprintln!("close-handshakes: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let first = median(&p50s[0]);
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::ASCII_MARKDOWN)
        .set_header(["url", "close p50, ms (median, min–max)", "÷ first"]);
    for (url, rounds) in urls.iter().zip(&p50s) {
        let p50 = median(rounds);
        table.add_row([
            (*url).to_owned(),
            format!("{p50:.4} ({})", spread(rounds, 4)),
            format!("{:.2}×", p50 / first),
        ]);
    }
    println!("{table}");
    ExitCode::SUCCESS
}
