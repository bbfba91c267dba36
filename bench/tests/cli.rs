//! The bench's command line: bad flags get exit status 2 and one line naming the flag, before
//! anything is measured.

use std::process::Command;

fn bench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wsclose-bench"))
        .args(args)
        .output()
        .expect("run wsclose-bench")
}

#[test]
fn bad_flags_exit_2_with_one_line() {
    for (args, needle) in [
        (&["--connections", "0"][..], "--connections"),
        (&["--rounds", "many"][..], "--rounds"),
        (&["--peer-idle"][..], "--peer-idle"),
        (&["--frobnicate"][..], "--frobnicate"),
    ] {
        let output = bench(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("wsclose-bench: ") && stderr.contains(needle),
            "{args:?}: {stderr}"
        );
        assert!(output.stdout.is_empty(), "{args:?} measured something");
    }
}

#[test]
fn help_lists_every_flag_with_its_defaults() {
    let output = bench(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--quick",
        "--connections",
        "--handshakes",
        "--rtt-iterations",
        "--no-browser",
        "--browser-probes",
        "--out",
        "--server",
        "--no-peers",
        "--rounds",
        "--peer-handshakes",
        "--peer-idle",
    ] {
        assert!(help.contains(flag), "--help has no {flag}:\n{help}");
    }
    assert!(help.contains("less 1000"), "{help}");
    assert!(!help.contains("--scale-client"), "{help}");
}
