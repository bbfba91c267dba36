//! `--during CMD`: the deploy, run through the shell in a process group of its own, its output
//! passed through to the check's stderr (stdout stays the report's). Whatever of the group is
//! still running when the run ends gets SIGTERM, then SIGKILL [`CMD_GRACE`] later; dropping a
//! [`During`] sends SIGKILL to the group, so it never outlives the check.

use std::os::fd::AsFd;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// After SIGTERM at the end of the run, how long CMD's process group has before SIGKILL.
pub const CMD_GRACE: Duration = Duration::from_secs(2);

/// A running `--during` command.
pub struct During {
    child: Child,
    group: Pid,
    /// Its exit status, once it has exited.
    pub exited: Option<ExitStatus>,
}

impl During {
    /// Starts `sh -c CMD` in a new process group, stdin from /dev/null, stdout and stderr to the
    /// check's stderr.
    pub fn spawn(cmd: &str) -> std::io::Result<During> {
        let stderr = || -> std::io::Result<Stdio> {
            Ok(Stdio::from(std::io::stderr().as_fd().try_clone_to_owned()?))
        };
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(cmd)
            .stdin(Stdio::null())
            .stdout(stderr()?)
            .stderr(stderr()?)
            .process_group(0)
            .spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| std::io::Error::other("CMD exited at once"))?;
        Ok(During {
            child,
            group: Pid::from_raw(i32::try_from(pid).map_err(std::io::Error::other)?),
            exited: None,
        })
    }

    /// Ends when the shell has exited (at once if it has), and keeps its status.
    pub async fn wait(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.wait().await.ok();
        }
        self.exited
    }

    /// Ends whatever of the process group still runs: SIGTERM, then, once the shell has
    /// exited or [`CMD_GRACE`] has passed, SIGKILL (for what the shell left behind).
    pub async fn end(mut self) {
        let _ = killpg(self.group, Signal::SIGTERM);
        if self.exited.is_none() {
            let _ = tokio::time::timeout(CMD_GRACE, self.wait()).await;
        }
        // Drop sends SIGKILL to the group.
    }
}

impl Drop for During {
    fn drop(&mut self) {
        let _ = killpg(self.group, Signal::SIGKILL);
        // Reap the shell if it has exited, so no zombie is left.
        let _ = self.child.try_wait();
    }
}
