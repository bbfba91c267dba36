//! `wsclose-check URL`: parses flags, runs the checks (or, with `--deploy`, the deploy
//! rehearsal) until they end, `--max-time` (`--for`) or a signal (SIGINT, SIGTERM, SIGHUP),
//! prints the report and a one-line verdict, and exits 0, 1 or 2 (see [`EXIT_STATUS`]), or
//! 128 + the signal's number.

use std::process::ExitCode;

use clap::Parser;
use wsclose_check::{deploy, report, CheckError, Options};

/// The exit status rule, as `--help` prints it.
const EXIT_STATUS: &str = "\
Exit status:
  0  no browser will have a problem; warnings (conformance findings no browser triggers:
     protocol errors, an Origin accepted from anywhere, a close code or reason not echoed)
     do not fail unless --strict; checks skipped (not asked for, --max-time) do not fail
  1  browsers will have a problem: a close event 1 s or more after close(), code 1006, or a
     refused upgrade; or the server went down or hung during the check (server-survived)
     --deploy: clients saw a 1006 (an end without a clean close handshake), or did not come
     back within --for
  2  usage error, or nothing to check: unreachable, or not a WebSocket server at the first
     upgrade
  128+N  ended by signal N (SIGINT, SIGTERM, SIGHUP), after the report so far; every
     browser, driver and temporary file it made is gone

The report goes to stdout (a table, or JSON with --json); the verdict, one line, to stderr.

protocol-errors sends malformed frames that can crash a fragile server: it runs only with
--with protocol-errors (or --all). max-message-size (--max-size) sends an oversized message.
Both run last.

--idle [MAX] (only when asked: it takes up to MAX, 130s by default) holds quiet connections
beside the checks and reports who cuts them, when and how (the idle and dead-peer checks).";

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
            // clap's first line, with the lines indented under it ("the following required
            // arguments were not provided:\n  --idle [<MAX>]").
            let message = error.to_string();
            let mut lines = message.lines();
            let mut line = lines.next().unwrap_or("invalid arguments").to_owned();
            for more in lines.take_while(|more| more.starts_with("  ")) {
                line.push(' ');
                line.push_str(more.trim());
            }
            eprintln!("wsclose-check: {line} (see --help)");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    // The report, its one-line verdict, the exit status.
    let result: Result<(String, String, u8), CheckError> = runtime.block_on(async {
        let interrupts = wsclose_check::interrupts().expect("signal handlers");
        if cli.options.deploy.deploy {
            let run = deploy::run_until(&cli.url, &cli.options, interrupts).await?;
            let text = if cli.json {
                run.json()
            } else {
                deploy::text(&run)
            };
            Ok((text, run.summary.clone(), run.exit_status()))
        } else {
            let report = wsclose_check::run_until(&cli.url, &cli.options, interrupts).await?;
            let text = if cli.json {
                report::json(&report)
            } else {
                report::table(&report)
            };
            let status = report.exit_status(cli.options.strict);
            Ok((text, report.summary, status))
        }
    });
    match result {
        Ok((text, summary, status)) => {
            println!("{text}");
            eprintln!("wsclose-check: {summary}");
            ExitCode::from(status)
        }
        Err(error) => {
            eprintln!("wsclose-check: {error}");
            match error {
                CheckError::Stopped(wsclose_check::Stopped::Interrupted(signal)) => {
                    ExitCode::from(u8::try_from(128 + signal.number()).unwrap_or(u8::MAX))
                }
                _ => ExitCode::from(2),
            }
        }
    }
}
