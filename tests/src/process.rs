//! Real child processes for tests: output captured line by line, waited on with deadlines,
//! killed when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a test waits for any one thing a child should do.
pub const DEADLINE: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Output {
    lines: Vec<String>,
    closed: usize,
}

/// A running child process whose stdout and stderr lines are collected as they come.
pub struct Child {
    child: std::process::Child,
    output: Arc<(Mutex<Output>, Condvar)>,
    name: String,
}

impl Child {
    /// Start `cmd` with stdout and stderr captured.
    pub fn spawn(mut cmd: Command) -> Child {
        let name = format!("{cmd:?}");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {name}: {e}"));
        let output = Arc::new((Mutex::new(Output::default()), Condvar::new()));
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        for (stream, prefix) in [
            (Box::new(stdout) as Box<dyn std::io::Read + Send>, ""),
            (Box::new(stderr), "stderr: "),
        ] {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let (lock, cv) = &*output;
                    lock.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .lines
                        .push(format!("{prefix}{line}"));
                    cv.notify_all();
                }
                let (lock, cv) = &*output;
                lock.lock().unwrap_or_else(|e| e.into_inner()).closed += 1;
                cv.notify_all();
            });
        }
        Child {
            child,
            output,
            name,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait until a line matching `want` appears (stderr lines start with `stderr: `) and
    /// return it. Panics with everything printed so far on the deadline or on exit.
    pub fn wait_for_line(&self, want: impl Fn(&str) -> bool) -> String {
        self.wait_for_line_within(DEADLINE, want)
    }

    /// [`Child::wait_for_line`] with its own deadline, for steps that build code.
    pub fn wait_for_line_within(&self, deadline: Duration, want: impl Fn(&str) -> bool) -> String {
        self.wait_for_line_after(0, deadline, want).1
    }

    /// How many lines were printed so far: a mark for [`Child::wait_for_line_after`].
    pub fn mark(&self) -> usize {
        self.output
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .lines
            .len()
    }

    /// The first line matching `want` among those printed after `mark`, with its index.
    pub fn wait_for_line_after(
        &self,
        mark: usize,
        deadline: Duration,
        want: impl Fn(&str) -> bool,
    ) -> (usize, String) {
        let (lock, cv) = &*self.output;
        let start = Instant::now();
        let mut out = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some((i, line)) = out
                .lines
                .iter()
                .enumerate()
                .skip(mark)
                .find(|(_, l)| want(l))
            {
                return (i, line.clone());
            }
            let left = deadline.saturating_sub(start.elapsed());
            if out.closed == 2 || left.is_zero() {
                panic!(
                    "{}: expected line not printed ({}). Output:\n{}",
                    self.name,
                    if out.closed == 2 {
                        "process closed its output"
                    } else {
                        "deadline"
                    },
                    out.lines.join("\n")
                );
            }
            out = cv.wait_timeout(out, left).unwrap().0;
        }
    }

    /// Everything printed so far.
    pub fn output(&self) -> String {
        self.output
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .lines
            .join("\n")
    }

    /// Send `signal` (for example `libc`'s SIGINT = 2, SIGKILL = 9) to the process.
    pub fn signal(&self, signal: i32) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// Wait for the process to exit, at most [`DEADLINE`].
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Let the reader threads drain what it printed last.
                let (lock, cv) = &*self.output;
                let mut out = lock.lock().unwrap_or_else(|e| e.into_inner());
                while out.closed < 2 && start.elapsed() < DEADLINE {
                    out = cv.wait_timeout(out, Duration::from_millis(100)).unwrap().0;
                }
                return status;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{} did not exit. Output:\n{}",
                self.name,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
