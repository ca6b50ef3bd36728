//! Child processes (stubs, workers) that never outlive `live`: each gets a parent-death
//! signal of SIGKILL (a frozen process does not act on SIGTERM) and is killed when dropped.
//! Their output is echoed with a prefix and the last lines of stderr are kept for crash
//! reports.

use std::collections::VecDeque;
use std::io;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How many stderr lines are kept for a crash report.
const TAIL_LINES: usize = 20;

/// Where a child's output goes.
#[derive(Clone)]
pub enum Echo {
    /// Printed to our stderr, each line prefixed.
    Prefixed(String),
    /// Kept only for crash reports.
    Quiet,
}

/// A running child process.
pub struct Supervised {
    pub child: Child,
    pub pid: u32,
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl Supervised {
    /// Start `cmd`, tied to this process's life.
    pub fn spawn(mut cmd: Command, echo: Echo) -> io::Result<Supervised> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn()?;
        let pid = child.id().unwrap_or(0);
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(pump(BufReader::new(stdout), echo.clone(), None));
        }
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(pump(BufReader::new(stderr), echo, Some(tail.clone())));
        }
        Ok(Supervised { child, pid, tail })
    }

    /// The last lines the child wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        let tail = self.tail.lock().expect("lock");
        tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Describe how the child ended, for an error message.
    pub fn describe_exit(status: std::process::ExitStatus) -> String {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => format!("exited with code {code}"),
            (_, Some(signal)) => format!("was killed by signal {signal} ({})", signal_name(signal)),
            _ => "ended".to_string(),
        }
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGINT => "SIGINT",
        libc::SIGBUS => "SIGBUS",
        _ => "signal",
    }
}

async fn pump<R: tokio::io::AsyncBufRead + Unpin>(
    reader: R,
    echo: Echo,
    tail: Option<Arc<Mutex<VecDeque<String>>>>,
) {
    let mut lines = reader.lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Echo::Prefixed(prefix) = &echo {
            eprintln!("{prefix}{line}");
        }
        if let Some(tail) = &tail {
            let mut tail = tail.lock().expect("lock");
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    }
}

/// Ask the kernel to SIGKILL the child when its parent dies, whatever kills the parent.
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and only calls
    // async-signal-safe functions (prctl, getppid, _exit).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Send `sig` to process `pid`, one this process started and has not reaped yet (a
/// [`Supervised`] child that is still held).
#[allow(unsafe_code)]
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) takes no pointers; the caller's pid is its own unreaped child.
    let _ = unsafe { libc::kill(pid as i32, sig) };
}
