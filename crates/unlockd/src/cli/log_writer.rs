//! The log's writer: lines are appended to a shared buffer and a thread of its own writes
//! them out in batches.
//!
//! tracing-appender's non-blocking writer sent each line through a channel and woke its
//! thread for it, and that thread made one `write` per line. With one access-log line per
//! request, a perf profile of polls at the default log level put about 10 % of the server's
//! CPU samples in that thread (context switches, `sched_yield` while spinning on the
//! channel, `write`) and about 3 % more in the requests' futex wake-ups. Here a request only
//! appends its line under a short lock; the thread is woken by the first line after it went
//! idle, then gathers for `GATHER` and writes everything gathered with one `write`.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the writer lets lines gather after the first one woke it: the most a line waits.
const GATHER: Duration = Duration::from_millis(10);
/// A batch this large is written at once, without waiting out `GATHER`.
const HURRY_BYTES: usize = 256 * 1024;
/// Not lossy: a line that would go past this waits for the writer instead of being dropped.
const MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
enum WriterState {
    /// Waiting for the first line.
    Idle,
    /// Woken by a first line; waits out `GATHER` unless hurried.
    Gathering,
    /// Already woken (or writing): no one needs to wake it again.
    Awake,
}

struct Queue {
    lines: Vec<u8>,
    writer: WriterState,
    /// Lines waiting for room (`MAX_QUEUED_BYTES`).
    blocked: usize,
    shutdown: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    out: Mutex<Box<dyn Write + Send>>,
    /// Whether a writer thread runs; without one, each line is written as it comes.
    threaded: AtomicBool,
    /// Wakes the writer thread.
    work: Condvar,
    /// Wakes lines waiting for room.
    room: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, line: &[u8]) {
        if !self.threaded.load(Ordering::Relaxed) {
            let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
            let _ = out.write_all(line);
            return;
        }
        let mut queue = self.lock();
        while queue.lines.len() >= MAX_QUEUED_BYTES && !queue.shutdown {
            if queue.writer != WriterState::Awake {
                queue.writer = WriterState::Awake;
                self.work.notify_one();
            }
            queue.blocked += 1;
            queue = self.room.wait(queue).unwrap_or_else(|e| e.into_inner());
            queue.blocked -= 1;
        }
        queue.lines.extend_from_slice(line);
        // A wake-up is a system call: make one only when the writer would otherwise sleep on.
        let wake = match queue.writer {
            WriterState::Idle => true,
            WriterState::Gathering => queue.lines.len() >= HURRY_BYTES,
            WriterState::Awake => false,
        };
        if wake {
            queue.writer = WriterState::Awake;
            self.work.notify_one();
        }
    }

    /// The writer thread: takes what has gathered, writes it with one call, repeats.
    fn run(&self) {
        let mut batch = Vec::new();
        loop {
            let mut queue = self.lock();
            while queue.lines.is_empty() && !queue.shutdown {
                queue.writer = WriterState::Idle;
                queue = self.work.wait(queue).unwrap_or_else(|e| e.into_inner());
            }
            if queue.lines.is_empty() {
                return;
            }
            if !queue.shutdown && queue.lines.len() < HURRY_BYTES {
                queue.writer = WriterState::Gathering;
                queue = self
                    .work
                    .wait_timeout(queue, GATHER)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            queue.writer = WriterState::Awake;
            std::mem::swap(&mut batch, &mut queue.lines);
            if queue.blocked > 0 {
                self.room.notify_all();
            }
            drop(queue);
            let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
            // Nowhere to report a failed log write; the next batch tries again.
            let _ = out.write_all(&batch);
            let _ = out.flush();
            drop(out);
            batch.clear();
        }
    }
}

/// Where the tracing subscriber writes: each formatted line is one `write_all`, appended
/// whole to the queue (lines of different threads never interleave).
#[derive(Clone)]
pub(super) struct BatchWriter(Arc<Shared>);

impl Write for BatchWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchWriter {
    type Writer = BatchWriter;

    fn make_writer(&'a self) -> BatchWriter {
        self.clone()
    }
}

/// Writes out what is queued and stops the writer thread when dropped (at the end of `main`).
pub(super) struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        {
            let mut queue = self.shared.lock();
            queue.shutdown = true;
            self.shared.work.notify_one();
            self.shared.room.notify_all();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A writer into `out`, and the guard that flushes it.
pub(super) fn batch_writer(out: impl Write + Send + 'static) -> (BatchWriter, FlushGuard) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            lines: Vec::new(),
            writer: WriterState::Awake,
            blocked: 0,
            shutdown: false,
        }),
        out: Mutex::new(Box::new(out)),
        threaded: AtomicBool::new(true),
        work: Condvar::new(),
        room: Condvar::new(),
    });
    let spawned = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || shared.run())
    };
    let thread = match spawned {
        Ok(thread) => Some(thread),
        // No thread to write for us: each line is written as it comes instead.
        Err(_) => {
            shared.threaded.store(false, Ordering::Relaxed);
            None
        }
    };
    (BatchWriter(shared.clone()), FlushGuard { shared, thread })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Sink {
        bytes: Arc<Mutex<Vec<u8>>>,
        writes: Arc<Mutex<usize>>,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.bytes.lock().unwrap().extend_from_slice(buf);
            *self.writes.lock().unwrap() += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_whole_and_in_order_by_the_time_the_guard_drops() {
        let sink = Sink::default();
        let (writer, guard) = batch_writer(sink.clone());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let mut writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..5_000 {
                        // One `write_all` a line, as the subscriber writes them.
                        let line = format!("{{\"thread\":{t},\"line\":{i}}}\n");
                        writer.write_all(line.as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        drop(guard);
        let bytes = sink.bytes.lock().unwrap().clone();
        let text = String::from_utf8(bytes).unwrap();
        let mut next = [0u64; 4];
        let mut count = 0;
        for line in text.lines() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            let thread = value["thread"].as_u64().unwrap() as usize;
            assert_eq!(value["line"].as_u64().unwrap(), next[thread], "{line}");
            next[thread] += 1;
            count += 1;
        }
        assert_eq!(count, 20_000);
        let writes = *sink.writes.lock().unwrap();
        assert!(
            writes < count,
            "{writes} writes for {count} lines: not batched"
        );
    }

    #[test]
    fn a_line_is_written_without_waiting_for_more() {
        let sink = Sink::default();
        let (mut writer, _guard) = batch_writer(sink.clone());
        writer.write_all(b"one line\n").unwrap();
        // Not a timing assertion: the deadline only turns a hang into a failure.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while sink.bytes.lock().unwrap().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the line was never written"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(&*sink.bytes.lock().unwrap(), b"one line\n");
    }
}
