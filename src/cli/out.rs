//! Output gathered while the runtime works and written when it goes idle, spaced under load.
//!
//! Log lines (stderr) and `--events` lines written on the runtime's thread are kept in a
//! buffer and written together when the thread parks (tokio's `on_thread_park` calls
//! [`park_hook`]): a call set-up that logs three lines and records six events costs a few
//! `write`s, not nine, and nothing waits for them. Under a sustained load the parks are also
//! spaced: a park writes only while the [`WriteBudget`] has a write to spare ([`BURST`] after a
//! quiet spell, then one per [`SPACING`]); else the lines wait for a later park, or for
//! [`flusher`] after [`BACKSTOP`]. A tester or a test that places a few calls sees each line
//! when the thread goes idle, as before; under a sustained load a line waits 100 ms at most.
//! At fifty short calls a second the thread made three file writes per call instead of six
//! with a 20 ms spacing (a file `write` costs about what a TCP send does here: ext4 stamps the
//! file's times on each; CPU per call −2 %), and makes under one with 100 ms: in `perf`, the
//! log's and the events' writes had still been 6 % of a short call's CPU (CPU per call −5 %
//! in scripts/compare/ab.sh, with `media_sockets.rs` reading idle pairs through the reactor's
//! readiness in the same build). A buffer past [`LIMIT`] is written at once; `main` flushes once
//! more before it exits. Other threads (media workers, blocking tasks) write directly.

use std::cell::Cell;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

/// A buffer past this many bytes is written at once.
pub const LIMIT: usize = 64 * 1024;

/// Writes of gathered lines that parks may make back to back after a quiet spell.
pub const BURST: u32 = 50;

/// Under a sustained load, parks write gathered lines at most once per `SPACING`.
pub const SPACING: Duration = Duration::from_millis(100);

/// The most gathered lines wait for a park with a write to spare before [`flusher`] writes
/// them.
pub const BACKSTOP: Duration = Duration::from_millis(100);

thread_local! {
    static GATHER: Cell<bool> = const { Cell::new(false) };
    static BUDGET: Cell<WriteBudget> = const { Cell::new(WriteBudget::full()) };
    /// Whether [`flusher`] waits to write what a park left.
    static ASKED: Cell<bool> = const { Cell::new(false) };
}

/// Starts a [`flusher`] round.
static LATER: tokio::sync::Notify = tokio::sync::Notify::const_new();
/// Ends a [`flusher`] round early: the lines went out with a park.
static WROTE: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// A token bucket of writes: at most [`BURST`] in hand, one more earned per [`SPACING`].
/// Time comes in (`now`), so it is tested without a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteBudget {
    left: u32,
    /// Up to when the writes earned are counted in `left`; `None` before the first.
    counted: Option<Instant>,
}

impl WriteBudget {
    /// A full budget.
    pub const fn full() -> Self {
        WriteBudget {
            left: BURST,
            counted: None,
        }
    }

    /// Takes a write at `now`: `false` when none is left. A `now` before the last one earns
    /// nothing.
    pub fn take(&mut self, now: Instant) -> bool {
        let counted = *self.counted.get_or_insert(now);
        let earned = now
            .checked_duration_since(counted)
            .map_or(0, |d| d.as_nanos() / SPACING.as_nanos());
        match u32::try_from(earned) {
            Ok(n) if self.left.saturating_add(n) < BURST => {
                self.left += n;
                self.counted = Some(counted + SPACING * n);
            }
            // Full again: what is earned from here on counts from `now`.
            _ => {
                self.left = BURST;
                self.counted = Some(now);
            }
        }
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        true
    }
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

/// The runtime's park hook: writes what is gathered if the [`WriteBudget`] allows, else
/// leaves it for a later park or [`flusher`] (see the module doc).
pub fn park_hook() {
    if !PENDING.load(Ordering::Acquire) {
        return;
    }
    let mut budget = BUDGET.get();
    let now_ok = budget.take(Instant::now());
    BUDGET.set(budget);
    if now_ok {
        flush();
    } else if !ASKED.replace(true) {
        LATER.notify_one();
    }
}

/// Writes what parks left when none has written it within [`BACKSTOP`]: spawned once on the
/// gathering runtime. Its timer is dropped as soon as a park writes.
///
/// It keeps waiting for as long as it is asked ([`ASKED`], read again after every wake-up),
/// and [`flush`] wakes only a flusher that is waiting then (`notify_waiters`). Before, a stale
/// wake-up could end a wait early. The timer fell due in the turn in which a park wrote, and
/// `select!` took the timer's branch. tokio then kept the park's wake-up for the next waiter
/// (`notify_one` does), and the next round ended on it at once. Lines stayed unwritten on an
/// idle thread: media reports were missing after 300 calls ended together.
pub async fn flusher() {
    loop {
        LATER.notified().await;
        while ASKED.get() {
            tokio::select! {
                () = tokio::time::sleep(BACKSTOP) => {
                    if ASKED.replace(false) {
                        flush();
                    }
                }
                () = WROTE.notified() => {}
            }
        }
    }
}

/// Writes every gathered log line and event line now: [`park_hook`], [`flusher`], and `main`
/// before it exits.
pub fn flush() {
    if ASKED.replace(false) {
        // Only a flusher waiting now is woken; none is kept for later.
        WROTE.notify_waiters();
    }
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

    /// The tests share the process's gathered buffers and wake-ups: one at a time.
    fn serial() -> std::sync::MutexGuard<'static, ()> {
        static SERIAL: Mutex<()> = Mutex::new(());
        lock(&SERIAL)
    }

    #[test]
    fn gathered_lines_wait_for_the_flush_others_go_at_once() {
        let _one = serial();
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

    #[test]
    fn the_budget_allows_a_burst_then_one_write_per_spacing() {
        let t0 = Instant::now();
        let mut b = WriteBudget::full();
        for i in 0..BURST {
            assert!(b.take(t0), "write {i} of the burst");
        }
        assert!(!b.take(t0), "the burst is spent");
        assert!(!b.take(t0 + SPACING / 2));
        // One write per SPACING from here.
        assert!(b.take(t0 + SPACING));
        assert!(!b.take(t0 + SPACING));
        assert!(b.take(t0 + SPACING * 2));
        // Ten spacings later: ten writes, not more.
        let t1 = t0 + SPACING * 12;
        for i in 0..10 {
            assert!(b.take(t1), "earned write {i}");
        }
        assert!(!b.take(t1));
        // A clock read from before the last one earns nothing and does not panic.
        assert!(!b.take(t0));
        // After a quiet spell the budget is full again, and no fuller.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..BURST {
            assert!(b.take(t2));
        }
        assert!(!b.take(t2));
    }

    #[test]
    fn a_stale_wake_up_does_not_leave_asked_lines_behind() {
        let _one = serial();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            gather_on_this_thread();
            let seen = Shared::default();
            let file = batched(Box::new(seen.clone()), "test");
            let flusher = tokio::spawn(flusher());
            tokio::task::yield_now().await;
            for round in 0..3 {
                // A wake-up nobody waits for, as a notified waiter dropped unseen forwards.
                WROTE.notify_one();
                // A park finds no write to spare and asks the flusher; no park writes after.
                BUDGET.set(WriteBudget {
                    left: 0,
                    counted: Some(Instant::now()),
                });
                let line = format!("round {round}\n");
                file.push(line.as_bytes());
                park_hook();
                tokio::time::sleep(BACKSTOP / 2).await;
                assert!(
                    !lock(&seen.0).ends_with(line.as_bytes()),
                    "round {round}: the flusher waits BACKSTOP"
                );
                tokio::time::sleep(BACKSTOP).await;
                assert!(
                    lock(&seen.0).ends_with(line.as_bytes()),
                    "round {round}: the flusher wrote it"
                );
            }
            flusher.abort();
            stop_gathering();
        });
    }
}
