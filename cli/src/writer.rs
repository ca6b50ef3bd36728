//! Writing a stream (stdout or stderr) off `live dev`'s runtime: a thread of its own writes
//! what a bounded queue holds, several lines per write under load. A stream nobody reads
//! (a pipe whose reader stopped) stalls only that thread: once the queue is full, further
//! lines are dropped, never waited for, and a notice says how many before the next line
//! that gets through.

use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Lines (or other writes) queued at most per stream; beyond it they are dropped.
pub const QUEUED: usize = 4096;

/// How many queued bytes one write carries at most.
const BATCH_BYTES: usize = 64 * 1024;

/// Which stream a [`Writer`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// The notice written in place of `dropped` lines.
pub type Notice = fn(dropped: u64) -> String;

/// The process's stderr writer, started on first use: `live dev`'s notes and the children's
/// echoed output (`process.rs`) share it, so a stderr nobody reads stalls neither.
pub fn stderr() -> &'static Writer {
    static STDERR: OnceLock<Writer> = OnceLock::new();
    STDERR.get_or_init(|| Writer::start(Stream::Stderr, dropped_lines))
}

/// The line that replaces dropped ones on a stream of text.
pub fn dropped_lines(lines: u64) -> String {
    format!("live: {lines} lines of output dropped: the stream was not read fast enough\n")
}

/// The log subscriber's writer: each event (formatted into one write) is queued on
/// [`stderr`].
pub struct LogLine;

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        stderr().write(String::from_utf8_lossy(buf).into_owned());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One stream's writer thread and its queue.
pub struct Writer {
    state: Mutex<State>,
    notice: Notice,
    /// Completed by the thread once it has written everything queued before the close.
    finished: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
}

struct State {
    /// `None` once closed.
    queue: Option<SyncSender<String>>,
    /// Lines dropped since the last one that got through.
    dropped: u64,
}

impl Writer {
    /// Start the thread writing `stream`; `notice` words the line that replaces dropped ones.
    pub fn start(stream: Stream, notice: Notice) -> Writer {
        let (queue, rx) = sync_channel(QUEUED);
        let (done, finished) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name(format!("live-{stream:?}").to_lowercase())
            .spawn(move || {
                match stream {
                    Stream::Stdout => drain(rx, std::io::stdout()),
                    Stream::Stderr => drain(rx, std::io::stderr()),
                }
                let _ = done.send(());
            });
        if let Err(e) = spawned {
            // No thread: the queue fills and everything is dropped rather than blocking.
            tracing::warn!("could not start the {stream:?} writer thread: {e}");
        }
        Writer {
            state: Mutex::new(State {
                queue: Some(queue),
                dropped: 0,
            }),
            notice,
            finished: Mutex::new(Some(finished)),
        }
    }

    /// Queue `text` (whole lines, with their line breaks) without waiting: dropped, and
    /// counted, when the queue is full.
    pub fn write(&self, text: String) {
        let mut state = self.state.lock().expect("lock");
        let State { queue, dropped } = &mut *state;
        let Some(queue) = queue else { return };
        if *dropped > 0 {
            match queue.try_send((self.notice)(*dropped)) {
                Ok(()) => *dropped = 0,
                Err(_) => {
                    *dropped += 1;
                    return;
                }
            }
        }
        match queue.try_send(text) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => *dropped += 1,
        }
    }

    /// Lines dropped since the last one that got through.
    #[cfg(test)]
    fn dropped(&self) -> u64 {
        self.state.lock().expect("lock").dropped
    }

    /// Stop taking lines and wait up to `within` for those queued to be written (a stream
    /// nobody reads is given up on).
    pub async fn close(&self, within: Duration) {
        {
            let mut state = self.state.lock().expect("lock");
            if state.dropped > 0 {
                let notice = (self.notice)(state.dropped);
                if let Some(queue) = &state.queue {
                    let _ = queue.try_send(notice);
                }
            }
            state.queue = None;
        }
        let finished = self.finished.lock().expect("lock").take();
        if let Some(finished) = finished {
            let _ = tokio::time::timeout(within, finished).await;
        }
    }
}

/// Write what arrives on `rx` to `out` until every sender is gone: each write carries what
/// is queued by then, up to [`BATCH_BYTES`]. A failed write (the reader went away) drops
/// its lines; later ones are tried again.
fn drain(rx: Receiver<String>, out: impl Write) {
    let mut out = out;
    let mut batch = String::new();
    while let Ok(first) = rx.recv() {
        batch.push_str(&first);
        while batch.len() < BATCH_BYTES {
            match rx.try_recv() {
                Ok(more) => batch.push_str(&more),
                Err(_) => break,
            }
        }
        let _ = out.write_all(batch.as_bytes()).and_then(|()| out.flush());
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_lines_and_the_next_line_that_fits_follows_a_notice() {
        // No thread reads this queue: capacity 2, then everything is dropped.
        let (queue, rx) = sync_channel(2);
        let writer = Writer {
            state: Mutex::new(State {
                queue: Some(queue),
                dropped: 0,
            }),
            notice: |n| format!("{n} dropped\n"),
            finished: Mutex::new(None),
        };
        for i in 0..5 {
            writer.write(format!("line {i}\n"));
        }
        assert_eq!(writer.dropped(), 3);
        assert_eq!(rx.try_recv().unwrap(), "line 0\n");
        assert_eq!(rx.try_recv().unwrap(), "line 1\n");
        // Room again: the notice takes the place of the lines dropped, then the line.
        writer.write("line 5\n".into());
        assert_eq!(writer.dropped(), 0);
        assert_eq!(rx.try_recv().unwrap(), "3 dropped\n");
        assert_eq!(rx.try_recv().unwrap(), "line 5\n");
        // Full again: the next line is dropped and counted.
        writer.write("line 6\n".into());
        writer.write("line 7\n".into());
        writer.write("line 8\n".into());
        assert_eq!(writer.dropped(), 1);
    }

    #[test]
    fn the_thread_writes_every_queued_line_in_order() {
        let (queue, rx) = sync_channel(QUEUED);
        for i in 0..100 {
            queue.send(format!("{i}\n")).unwrap();
        }
        drop(queue);
        let mut out = Vec::new();
        drain(rx, &mut out);
        let expected: String = (0..100).map(|i| format!("{i}\n")).collect();
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }
}
