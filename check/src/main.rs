//! `wsclose-check URL`: parses flags, runs the checks, prints the report and a one-line
//! verdict, and exits 0, 1 or 2 (see [`EXIT_STATUS`]).

use std::process::ExitCode;

use clap::Parser;
use wsclose_check::{report, Options};

/// The exit status rule, as `--help` prints it.
const EXIT_STATUS: &str = "\
Exit status:
  0  no browser will have a problem; warnings (conformance findings no browser triggers:
     protocol errors, an Origin accepted from anywhere, a close code or reason not echoed)
     do not fail unless --strict
  1  browsers will have a problem: a close event 1 s or more after close(), code 1006, or a
     refused upgrade; or the server went down or hung during the check (server-survived)
  2  usage error, or nothing to check: unreachable, or not a WebSocket server at the first
     upgrade

The report goes to stdout (a table, or JSON with --json); the verdict, one line, to stderr.

protocol-errors sends malformed frames and max-message-size (--max-size) an oversized
message; they run last. Against production: --skip protocol-errors,max-message-size";

/// Diagnose a WebSocket server's close behaviour and predict what browsers will show.
#[derive(Parser)]
#[command(version, about, after_help = EXIT_STATUS)]
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
            eprintln!("wsclose-check: {}", report.summary);
            if report.fails(cli.options.strict) {
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
