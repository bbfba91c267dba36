//! `wsclose-check URL`: parses flags, runs the checks, prints the report, and exits 0 (nothing
//! failed), 1 (a check failed) or 2 (bad usage, or no WebSocket server to check).

use std::process::ExitCode;

use clap::Parser;
use wsclose_check::{report, Options};

/// Diagnose a WebSocket server's close behaviour and predict what browsers will show.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// The endpoint to check: ws:// or wss://HOST[:PORT]/PATH[?QUERY].
    url: String,
    /// Print one JSON object instead of the tables.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    options: Options,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) if !error.use_stderr() => error.exit(), // --help, --version
        Err(error) => {
            let message = error.to_string();
            let first_line = message.lines().next().unwrap_or("invalid arguments");
            eprintln!("wsclose-check: {first_line} (see --help)");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match runtime.block_on(wsclose_check::run(&cli.url, &cli.options)) {
        Ok(report) => {
            if cli.json {
                println!("{}", report::json(&report));
            } else {
                println!("{}", report::table(&report));
            }
            if report.failed() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(error) => {
            eprintln!("wsclose-check: {error}");
            ExitCode::from(2)
        }
    }
}
