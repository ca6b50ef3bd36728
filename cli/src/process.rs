//! Child processes (stubs, workers) that never outlive `live`: each gets a parent-death
//! signal of SIGKILL (a frozen process does not act on SIGTERM) and is killed when dropped,
//! and runs under `SCHED_BATCH`, so that waking it never preempts `live` itself, the hub
//! every invocation passes through. Their output is echoed with a prefix and the last lines
//! of stderr are kept for crash reports.
//!
//! Builds ([`Group`]) run in a process group of their own, which is killed whole when the
//! build is dropped before it ends: cargo's rustc and build scripts, or a `build` command's
//! children (`npm run build` -> esbuild), do not outlive a restarted build.

use std::collections::VecDeque;
use std::io;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
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
        in_child_before_exec(&mut cmd, true);
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
            // Through the writer thread: a stderr nobody reads must not stall the runtime.
            crate::writer::stderr().write(format!("{prefix}{line}\n"));
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

/// A build: a child process leading a process group of its own (its descendants join it),
/// killed with the whole group if dropped before [`Group::wait`] returned.
pub struct Group {
    pub child: Child,
    /// The group's id: the leader's pid.
    pgid: i32,
    /// The leader was reaped; its pid may belong to someone else now.
    ended: bool,
}

impl Group {
    /// Start `cmd` as the leader of a new process group, SIGKILLed if `live` dies. Its
    /// stdin is empty: a background group that read the terminal would be stopped.
    pub fn spawn(mut cmd: Command) -> io::Result<Group> {
        cmd.stdin(Stdio::null()).process_group(0).kill_on_drop(true);
        in_child_before_exec(&mut cmd, false);
        let child = cmd.spawn()?;
        let pgid = child.id().map_or(0, |pid| pid as i32);
        Ok(Group {
            child,
            pgid,
            ended: false,
        })
    }

    /// Run `cmd` to its end (stdin empty), its stdout and stderr captured, as
    /// [`Command::output`] does; dropped before that, its whole group is killed.
    pub async fn output(mut cmd: Command) -> io::Result<std::process::Output> {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut group = Group::spawn(cmd)?;
        let mut stdout = group.child.stdout.take().expect("piped");
        let mut stderr = group.child.stderr.take().expect("piped");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (read_out, read_err) =
            tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        read_out?;
        read_err?;
        let status = group.wait().await?;
        Ok(std::process::Output {
            status,
            stdout: out,
            stderr: err,
        })
    }

    /// Wait for the leader to end. What it left running in its group is left alone.
    pub async fn wait(&mut self) -> io::Result<std::process::ExitStatus> {
        let status = self.child.wait().await?;
        self.ended = true;
        Ok(status)
    }
}

impl Drop for Group {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        if !self.ended && self.pgid > 0 {
            // SAFETY: killpg(2) takes no pointers; the group's leader is our unreaped child,
            // so the id is still that group's.
            let _ = unsafe { libc::killpg(self.pgid, libc::SIGKILL) };
        }
    }
}

/// In the child, before exec: ask the kernel to SIGKILL it when its parent dies, whatever
/// kills the parent, and (`batch`) make it a batch process.
///
/// `SCHED_BATCH` keeps the child's fair share of the CPU but drops the wake-up preemption:
/// when `live` answers a stub or a handler, the child waits for a free core or the end of
/// `live`'s time slice instead of taking `live`'s core at once. On a loaded machine `live`
/// then goes on with the invocations it has in hand rather than being switched out for each
/// message it sends (measured in BENCHMARKS.md: 10-20 % more invocations per second at 32
/// connections, and less CPU per invocation in every process). A machine with a free core
/// runs the child at once, as before.
#[allow(unsafe_code)]
fn in_child_before_exec(cmd: &mut Command, batch: bool) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and only makes system calls
    // (prctl, getppid, sched_setscheduler, _exit): nothing that allocates or takes a lock.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            if batch {
                // Best effort: a kernel or sandbox that refuses leaves the normal policy.
                let normal_priority = libc::sched_param { sched_priority: 0 };
                libc::sched_setscheduler(0, libc::SCHED_BATCH, &normal_priority);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The scheduling policy of process `pid`: field 41 of /proc/PID/stat.
    fn policy(pid: u32) -> i32 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
        // The command name in field 2 may hold spaces; fields after it are plain.
        let after_name = &stat[stat.rfind(')').expect("name") + 2..];
        after_name
            .split(' ')
            .nth(41 - 3)
            .expect("policy")
            .parse()
            .expect("number")
    }

    /// Whether process `pid` is gone (or a zombie: killed, not yet reaped by whoever
    /// inherited it).
    fn gone(pid: u32) -> bool {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return true;
        };
        stat[stat.rfind(')').expect("name") + 2..].starts_with('Z')
    }

    #[tokio::test]
    async fn a_dropped_build_takes_its_grandchildren_with_it() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 300 & echo $!; wait"])
            .stdout(Stdio::piped());
        let mut build = Group::spawn(cmd).expect("spawn sh");
        let stdout = build.child.stdout.take().expect("piped");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).await.unwrap();
        let grandchild: u32 = line.trim().parse().expect("a pid");
        let shell = build.child.id().expect("running");
        assert!(!gone(grandchild));
        drop(build);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !(gone(grandchild) && gone(shell)) {
            assert!(
                std::time::Instant::now() < deadline,
                "the build's sleep survived"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_build_that_ends_is_waited_for_with_its_output() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 3"]);
        let out = Group::output(cmd).await.unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
    }

    #[tokio::test]
    async fn a_child_runs_as_a_batch_process() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let child = Supervised::spawn(cmd, Echo::Quiet).expect("spawn sleep");
        assert_eq!(policy(child.pid), libc::SCHED_BATCH);
    }
}
