//! Output gathered on the runtime's thread and written by a thread of its own.
//!
//! Log lines (stderr) and `--events` lines written on the runtime's thread are kept in a
//! buffer. When the runtime is about to park, tokio's `on_thread_park` hook calls [`nudge`],
//! which wakes the writer thread ([`start_writer`]) if it sleeps; the writer waits
//! [`INTERVAL`] for more and writes everything gathered, one `write` per file, and goes on
//! doing so every [`INTERVAL`] until an interval passes with nothing to write. The signaling
//! thread never waits on a file (a write to a busy disk can block for milliseconds), and under
//! load a second's calls cost a few dozen writes, not a few per call. A line is on its way at
//! most [`INTERVAL`] after the work that made it, or at once when a buffer passes [`LIMIT`];
//! `main` writes what is left before it exits ([`stop_gathering`]). Without a writer thread the
//! park hook writes at once. Other threads (media workers, blocking tasks) write directly.

use std::cell::Cell;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

/// A buffer past this many bytes is written at once.
pub const LIMIT: usize = 64 * 1024;

/// How long the writer thread waits for more lines before it writes.
pub const INTERVAL: Duration = Duration::from_millis(50);

thread_local! {
    static GATHER: Cell<bool> = const { Cell::new(false) };
}

/// Something was gathered since the writer last looked.
static PENDING: AtomicBool = AtomicBool::new(false);
/// The writer thread sleeps until [`nudge`]d.
static ASLEEP: AtomicBool = AtomicBool::new(false);
/// A buffer passed [`LIMIT`]: the writer writes without waiting.
static URGENT: AtomicBool = AtomicBool::new(false);
/// The writer thread, once started.
static WRITER: OnceLock<std::thread::Thread> = OnceLock::new();

/// From now on, lines written on this thread are gathered until written by the writer thread
/// or by [`flush`].
pub fn gather_on_this_thread() {
    GATHER.with(|g| g.set(true));
}

/// Writes what is gathered and stops gathering on this thread.
pub fn stop_gathering() {
    flush();
    GATHER.with(|g| g.set(false));
}

/// Whether lines written on this thread are gathered.
pub fn gathering() -> bool {
    GATHER.with(Cell::get)
}

/// Starts the writer thread (once); `false` when it cannot be started, and the park hook then
/// writes at once.
pub fn start_writer() -> bool {
    if WRITER.get().is_some() {
        return true;
    }
    match std::thread::Builder::new()
        .name("wakeline-out".into())
        .spawn(writer)
    {
        Ok(handle) => {
            let _ = WRITER.set(handle.thread().clone());
            true
        }
        Err(e) => {
            tracing::debug!("no writer thread ({e}): output is written when the runtime parks");
            false
        }
    }
}

/// The runtime's park hook: wakes the writer thread when something was gathered and it
/// sleeps (writes at once when there is no writer thread).
pub fn nudge() {
    if !PENDING.load(SeqCst) {
        return;
    }
    match WRITER.get() {
        Some(writer) => {
            if ASLEEP.swap(false, SeqCst) {
                writer.unpark();
            }
        }
        None => {
            PENDING.store(false, SeqCst);
            flush();
        }
    }
}

/// A buffer passed [`LIMIT`]: the writer writes it now (or this thread does, without one).
fn urge() {
    match WRITER.get() {
        Some(writer) => {
            URGENT.store(true, SeqCst);
            ASLEEP.store(false, SeqCst);
            writer.unpark();
        }
        None => {
            flush();
        }
    }
}

/// The writer thread: sleeps until nudged, then writes what is gathered every [`INTERVAL`]
/// until an interval passes with nothing to write.
fn writer() {
    loop {
        ASLEEP.store(true, SeqCst);
        if PENDING.load(SeqCst) {
            ASLEEP.store(false, SeqCst);
        }
        while ASLEEP.load(SeqCst) {
            std::thread::park();
        }
        loop {
            let due = Instant::now() + INTERVAL;
            while !URGENT.swap(false, SeqCst) {
                let now = Instant::now();
                if now >= due {
                    break;
                }
                std::thread::park_timeout(due - now);
            }
            PENDING.store(false, SeqCst);
            if !flush() {
                break;
            }
        }
    }
}

/// A file (or stdout) and the buffer its bytes are written from.
struct Sink {
    out: Box<dyn Write + Send>,
    /// The bytes being written (swapped with the pending ones: both keep their capacity).
    writing: Vec<u8>,
    what: &'static str,
}

/// A batched file: the bytes not yet written, and the file. A writer holds the file while it
/// takes the pending bytes and writes them, so bytes reach the file in the order pushed.
struct Batched {
    pending: Mutex<Vec<u8>>,
    sink: Mutex<Sink>,
}

impl Batched {
    /// Appends `bytes`; written at once when this thread does not gather, else by the writer
    /// thread (at once past [`LIMIT`]).
    fn push(&self, bytes: &[u8]) {
        let over = {
            let mut pending = lock(&self.pending);
            pending.extend_from_slice(bytes);
            pending.len() > LIMIT
        };
        if !gathering() {
            self.write_out();
        } else {
            PENDING.store(true, SeqCst);
            if over {
                urge();
            }
        }
    }

    /// Writes what is pending; `false` when nothing was.
    fn write_out(&self) -> bool {
        let mut sink = lock(&self.sink);
        let sink = &mut *sink;
        std::mem::swap(&mut *lock(&self.pending), &mut sink.writing);
        if sink.writing.is_empty() {
            return false;
        }
        let done = sink
            .out
            .write_all(&sink.writing)
            .and_then(|()| sink.out.flush());
        sink.writing.clear();
        if let Err(e) = done {
            tracing::warn!("{}: {e}", sink.what);
        }
        true
    }
}

/// The open batched files, written by [`flush`].
static FILES: Mutex<Vec<Weak<Batched>>> = Mutex::new(Vec::new());
/// Log lines waiting for stderr.
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());
/// The log lines being written (held while they are: lines reach stderr in order).
static LOGS_WRITING: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// A batched `out`, written by the writer thread or [`flush`] (and when dropped, see
/// [`BatchedFile`]); `what` names it in a write error.
pub fn batched(out: Box<dyn Write + Send>, what: &'static str) -> BatchedFile {
    let file = Arc::new(Batched {
        pending: Mutex::new(Vec::new()),
        sink: Mutex::new(Sink {
            out,
            writing: Vec::new(),
            what,
        }),
    });
    lock(&FILES).push(Arc::downgrade(&file));
    BatchedFile(file)
}

/// A batched file; dropping it writes what is pending.
pub struct BatchedFile(Arc<Batched>);

impl BatchedFile {
    /// Appends `bytes`; written at once when this thread does not gather, else by the writer
    /// thread or the next [`flush`].
    pub fn push(&self, bytes: &[u8]) {
        self.0.push(bytes);
    }
}

impl Drop for BatchedFile {
    fn drop(&mut self) {
        self.0.write_out();
    }
}

/// Keeps a log line for stderr; `false` when this thread does not gather and the caller
/// writes it.
pub fn gather_log(line: &[u8]) -> bool {
    if !gathering() {
        return false;
    }
    let over = {
        let mut logs = lock(&LOGS);
        logs.extend_from_slice(line);
        logs.len() > LIMIT
    };
    PENDING.store(true, SeqCst);
    if over {
        urge();
    }
    true
}

/// Writes every gathered log line and event line now (the writer thread; the status line
/// before it draws; `main` before it exits); `false` when there was nothing to write.
pub fn flush() -> bool {
    let mut wrote = {
        let mut writing = lock(&LOGS_WRITING);
        std::mem::swap(&mut *lock(&LOGS), &mut *writing);
        let any = !writing.is_empty();
        if any {
            super::status::write_log(&writing);
            writing.clear();
        }
        any
    };
    let files: Vec<_> = {
        let mut all = lock(&FILES);
        all.retain(|f| f.strong_count() > 0);
        all.iter().filter_map(Weak::upgrade).collect()
    };
    for f in files {
        wrote |= f.write_out();
    }
    wrote
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` into a shared vector, to see what reached the "file".
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn gathered_lines_wait_for_the_flush_or_the_writer_others_go_at_once() {
        let seen = Shared::default();
        let file = batched(Box::new(seen.clone()), "test");
        // A thread that does not gather writes through.
        std::thread::scope(|s| {
            s.spawn(|| file.push(b"direct\n"));
        });
        assert_eq!(&*lock(&seen.0), b"direct\n");
        gather_on_this_thread();
        file.push(b"one\n");
        file.push(b"two\n");
        assert_eq!(
            &*lock(&seen.0),
            b"direct\n",
            "nothing written before the flush"
        );
        flush();
        assert_eq!(&*lock(&seen.0), b"direct\none\ntwo\n");
        // Past the limit: written at once.
        let big = vec![b'x'; LIMIT + 1];
        file.push(&big);
        assert_eq!(lock(&seen.0).len(), "direct\none\ntwo\n".len() + LIMIT + 1);
        // Dropped with lines pending: they are written.
        file.push(b"last\n");
        drop(file);
        assert!(lock(&seen.0).ends_with(b"last\n"));

        // With the writer thread, the park hook's nudge is enough: the lines arrive with no
        // flush on this thread.
        let (tx, rx) = std::sync::mpsc::channel();
        let file = batched(Box::new(Told(tx)), "test");
        assert!(start_writer());
        file.push(b"three\n");
        file.push(b"four\n");
        nudge();
        let got = rx.recv_timeout(Duration::from_secs(10));
        assert_eq!(got.as_deref(), Ok(&b"three\nfour\n"[..]), "in one write");
        // Again, once the writer has gone back to sleep or while it still looks.
        file.push(b"five\n");
        nudge();
        let got = rx.recv_timeout(Duration::from_secs(10));
        assert_eq!(got.as_deref(), Ok(&b"five\n"[..]));
        stop_gathering();
    }

    /// A `Write` that sends every write on a channel.
    struct Told(std::sync::mpsc::Sender<Vec<u8>>);
    impl Write for Told {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.send(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
