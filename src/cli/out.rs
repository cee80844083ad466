//! Output gathered while the runtime works and written when it goes idle.
//!
//! Log lines (stderr) and `--events` lines written on the runtime's thread are kept in a
//! buffer and written together just before the thread parks (tokio's `on_thread_park` calls
//! [`flush`]): a call set-up that logs three lines and records six events costs a few
//! `write`s, not nine, and nothing waits for them. A line is on its way at the latest when the
//! thread next has nothing to do, or at once when a buffer passes [`LIMIT`]; `main` flushes
//! once more before it exits. Other threads (media workers, blocking tasks) write directly.

use std::cell::Cell;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// A buffer past this many bytes is written at once.
pub const LIMIT: usize = 64 * 1024;

thread_local! {
    static GATHER: Cell<bool> = const { Cell::new(false) };
}

/// From now on, lines written on this thread are gathered until [`flush`].
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

/// A file (or stdout) and the bytes not yet written to it.
struct Batched {
    out: Box<dyn Write + Send>,
    pending: Vec<u8>,
    what: &'static str,
}

impl Batched {
    /// Appends `bytes`; writes everything at once when this thread does not gather or the
    /// buffer is past [`LIMIT`].
    fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        if !gathering() || self.pending.len() > LIMIT {
            self.write_out();
        } else {
            PENDING.store(true, Ordering::Release);
        }
    }

    fn write_out(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let done = self
            .out
            .write_all(&self.pending)
            .and_then(|()| self.out.flush());
        self.pending.clear();
        if let Err(e) = done {
            tracing::warn!("{}: {e}", self.what);
        }
    }
}

/// The open batched files, flushed by [`flush`].
static FILES: Mutex<Vec<Weak<Mutex<Batched>>>> = Mutex::new(Vec::new());
/// Log lines waiting for stderr.
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());
/// Whether a line was gathered since the last [`flush`] (set after the line is in its
/// buffer): the runtime parks many times with nothing to write.
static PENDING: AtomicBool = AtomicBool::new(false);

/// A batched `out`, written by [`flush`] (and when dropped, see [`BatchedFile`]); `what`
/// names it in a write error.
pub fn batched(out: Box<dyn Write + Send>, what: &'static str) -> BatchedFile {
    let file = Arc::new(Mutex::new(Batched {
        out,
        pending: Vec::new(),
        what,
    }));
    lock(&FILES).push(Arc::downgrade(&file));
    BatchedFile(file)
}

/// A batched file; dropping it writes what is pending.
pub struct BatchedFile(Arc<Mutex<Batched>>);

impl BatchedFile {
    /// Appends `bytes`; written at once when this thread does not gather or the pending
    /// bytes pass [`LIMIT`], else by the next [`flush`].
    pub fn push(&self, bytes: &[u8]) {
        lock(&self.0).push(bytes);
    }
}

impl Drop for BatchedFile {
    fn drop(&mut self) {
        lock(&self.0).write_out();
    }
}

/// Keeps a log line for stderr (written at once with the others past [`LIMIT`]); `false`
/// when this thread does not gather and the caller writes it.
pub fn gather_log(line: &[u8]) -> bool {
    if !gathering() {
        return false;
    }
    let due = {
        let mut logs = lock(&LOGS);
        logs.extend_from_slice(line);
        (logs.len() > LIMIT).then(|| std::mem::take(&mut *logs))
    };
    PENDING.store(true, Ordering::Release);
    if let Some(due) = due {
        super::status::write_log(&due);
    }
    true
}

/// Writes every gathered log line and event line now: the runtime's park hook, and `main`
/// before it exits.
pub fn flush() {
    if !PENDING.swap(false, Ordering::AcqRel) {
        return;
    }
    {
        // Written under the lock, which only a gathering thread takes: the buffer keeps its
        // capacity.
        let mut logs = lock(&LOGS);
        if !logs.is_empty() {
            super::status::write_log(&logs);
            logs.clear();
        }
    }
    let mut all = lock(&FILES);
    all.retain(|f| f.strong_count() > 0);
    for f in all.iter().filter_map(Weak::upgrade) {
        lock(&f).write_out();
    }
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
    fn gathered_lines_wait_for_the_flush_others_go_at_once() {
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
        stop_gathering();
    }
}
