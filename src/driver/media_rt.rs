//! The media workers: a fixed set of threads (one per core), each running its own
//! single-threaded tokio runtime, that run every call's media task. A call goes to the worker
//! with the fewest calls and stays there: its task, timers and sockets live on that one
//! thread, so starting or stopping a call wakes that worker and no other (a shared
//! work-stealing pool also woke an idle sibling to look for work on every such hand-over).
//! Call set-up never queues behind the media ticks of hundreds of calls on the signaling
//! thread; the kernel shares the CPU between the signaling thread and the media workers
//! instead. A call's UDP sockets are registered with its worker's reactor when its task
//! starts ([`MediaSockets::register`](super::media::MediaSockets::register)), and with no
//! other. When the call ends they stay registered, idle on the worker's pool
//! (`media_pool.rs`), and the next call that takes them runs on the same worker.
//!
//! The driver's own thread is a home for the media of its first [`HOME_CALLS`] calls at a
//! time, when the driver runs on a current-thread runtime (the binary's): starting and
//! stopping those calls then wakes no other thread, and their notes wake none. Waking the
//! worker at a call's start and its stop, and the driver at its end, cost a short call more
//! than a tenth of its CPU time. Beyond that many calls the workers take them, so the
//! driver's thread never carries the media ticks of hundreds of calls. A home has its own
//! pool of idle pairs, registered with the driver's reactor, and is dropped with the driver.

use super::media_pool::Pool;
use super::media_sockets::MediaIo;
use std::cell::Cell;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;
use tokio::runtime::{Builder, Handle, RuntimeFlavor};

/// One media worker: its runtime's handle and how many call tasks it runs now.
struct Worker {
    handle: Handle,
    calls: Arc<AtomicUsize>,
    /// Ended calls' socket pairs, registered with this worker's reactor.
    idle: IdlePairs,
}

/// A pool of idle socket pairs shared by the driver's thread and a media thread.
#[derive(Debug, Default)]
struct IdlePairs(Mutex<Pool<MediaIo>>);

impl IdlePairs {
    fn lock(&self) -> MutexGuard<'_, Pool<MediaIo>> {
        // A pool is consistent between any two of its calls: a panic elsewhere leaves it usable.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A pair on `ip` out of its quarantine at `now`; one expired pair is closed on the way.
    fn take(&self, ip: IpAddr, now: Instant) -> Option<MediaIo> {
        let (got, expired) = {
            let mut idle = self.lock();
            (idle.take(ip, now), idle.expired(now))
        };
        // Closed outside the lock.
        drop(expired);
        got
    }

    /// Keeps `io` idle from now; what no longer fits, and one expired pair, are closed.
    fn keep(&self, io: MediaIo) {
        let now = Instant::now();
        let ip = io.local.ip();
        let closed = {
            let mut idle = self.lock();
            (idle.give(ip, io, now), idle.expired(now))
        };
        drop(closed);
    }

    /// Closes every idle pair.
    fn clear(&self) {
        let all: Vec<MediaIo> = self.lock().clear().collect();
        drop(all);
    }
}

thread_local! {
    /// The index of the media worker this thread is (`None` on other threads).
    static CURRENT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The index of the media worker running the caller, if it runs on one.
pub(crate) fn current_worker() -> Option<usize> {
    CURRENT.get()
}

/// Starts worker `index`: a thread driving a single-threaded runtime until the process ends.
fn start_worker(index: usize) -> std::io::Result<Worker> {
    let rt = Builder::new_current_thread()
        .thread_name("wakeline-media")
        .enable_all()
        .build()?;
    let handle = rt.handle().clone();
    std::thread::Builder::new()
        .name("wakeline-media".into())
        .spawn(move || {
            CURRENT.set(Some(index));
            rt.block_on(std::future::pending::<()>())
        })?;
    Ok(Worker {
        handle,
        calls: Arc::new(AtomicUsize::new(0)),
        idle: IdlePairs::default(),
    })
}

static WORKERS: OnceLock<Vec<Worker>> = OnceLock::new();

/// The media workers, started on first use; empty when none could be started (the caller's
/// runtime then runs media, as before).
fn workers() -> &'static [Worker] {
    WORKERS.get_or_init(|| {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut started = Vec::with_capacity(n);
        for _ in 0..n {
            match start_worker(started.len()) {
                Ok(w) => started.push(w),
                Err(e) => {
                    tracing::warn!("media worker: {e}; {} started", started.len());
                    break;
                }
            }
        }
        started
    })
}

/// At most this many calls at a time have their media on the driver's thread.
pub(crate) const HOME_CALLS: usize = 8;

/// The driver's thread as a home for the media of a few calls (see the module doc).
#[derive(Debug)]
pub(crate) struct Home {
    calls: Arc<AtomicUsize>,
    idle: IdlePairs,
}

impl Home {
    /// A home on the current runtime if it is a current-thread one (its tasks all run on the
    /// thread that drives it) and not a media worker's; `None` otherwise.
    pub(crate) fn here() -> Option<Arc<Home>> {
        let runtime = Handle::try_current().ok()?;
        let single = runtime.runtime_flavor() == RuntimeFlavor::CurrentThread;
        (single && current_worker().is_none()).then(|| {
            Arc::new(Home {
                calls: Arc::new(AtomicUsize::new(0)),
                idle: IdlePairs::default(),
            })
        })
    }

    fn has_room(&self) -> bool {
        self.calls.load(Ordering::Relaxed) < HOME_CALLS
    }

    /// An idle pair of the home on `ip` out of its quarantine at `now`, when the home has
    /// room for another call.
    pub(crate) fn take_idle(&self, ip: IpAddr, now: Instant) -> Option<MediaIo> {
        self.has_room().then(|| self.idle.take(ip, now)).flatten()
    }

    /// Closes every idle pair of the home (the process needs their descriptors).
    pub(crate) fn close_idle(&self) {
        self.idle.clear();
    }
}

/// Where a call's media sockets want its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// New sockets: anywhere.
    Any,
    /// Registered with the driver's reactor.
    Home,
    /// Registered with this media worker's reactor.
    Worker(usize),
}

/// Where a call's media task runs.
#[derive(Debug)]
pub(crate) enum Placed {
    /// On the driver's thread.
    Home(Arc<Home>),
    /// On this media worker, or the least loaded one.
    Worker(Option<usize>),
}

/// Where the task of a call whose sockets want `want` runs: at `home` when they are
/// registered there, or when they are new and the home has room; else on a worker.
pub(crate) fn place(want: Place, home: Option<&Arc<Home>>) -> Placed {
    match (want, home) {
        (Place::Worker(i), _) => Placed::Worker(Some(i)),
        (Place::Home, Some(h)) => Placed::Home(Arc::clone(h)),
        (Place::Any, Some(h)) if h.has_room() => Placed::Home(Arc::clone(h)),
        _ => Placed::Worker(None),
    }
}

/// Counts a task out of its worker when it ends (or is dropped).
struct Leaving(Arc<AtomicUsize>);

impl Drop for Leaving {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The index of the smallest count (the first of equals), `None` for none.
fn least_loaded(counts: impl Iterator<Item = usize>) -> Option<usize> {
    counts
        .enumerate()
        .min_by_key(|&(i, n)| (n, i))
        .map(|(i, _)| i)
}

/// `task`, counted out of its worker when it ends. The task is boxed: an async block keeps a
/// future it captured and then awaits twice (as the capture and as the awaited value), which
/// doubled the memory of every media task.
fn counted<F>(task: F, leaving: Leaving) -> impl Future<Output = ()> + Send + 'static
where
    F: Future<Output = ()> + Send + 'static,
{
    let task = Box::pin(task);
    async move {
        let _leaving = leaving;
        task.await;
    }
}

/// Runs `task` where [`place`] put it: at home on the current runtime (the driver's), or on
/// media worker `on` when there is one (the worker its sockets are registered with), else on
/// the one with the fewest tasks (or on the current runtime when there are no workers).
pub(crate) fn spawn<F>(placed: Placed, task: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let on = match placed {
        Placed::Home(home) => {
            home.calls.fetch_add(1, Ordering::Relaxed);
            let leaving = Leaving(Arc::clone(&home.calls));
            drop(tokio::spawn(counted(task, leaving)));
            return;
        }
        Placed::Worker(on) => on,
    };
    let all = workers();
    let chosen = on
        .filter(|&i| i < all.len())
        .or_else(|| least_loaded(all.iter().map(|w| w.calls.load(Ordering::Relaxed))));
    match chosen.map(|i| &all[i]) {
        Some(w) => {
            w.calls.fetch_add(1, Ordering::Relaxed);
            let leaving = Leaving(Arc::clone(&w.calls));
            drop(w.handle.spawn(counted(task, leaving)));
        }
        None => drop(tokio::spawn(task)),
    }
}

/// An ended call's pair on `ip` out of its quarantine at `now`, from the pool of the least
/// loaded worker first; `None` when no pool has one (or no worker has started).
pub(crate) fn take_idle(ip: IpAddr, now: Instant) -> Option<MediaIo> {
    let all = WORKERS.get()?;
    let first = least_loaded(all.iter().map(|w| w.calls.load(Ordering::Relaxed)))?;
    (0..all.len()).find_map(|k| all[(first + k) % all.len()].idle.take(ip, now))
}

/// Keeps an ended call's pair idle on the pool of the worker it is registered with, or of
/// its `home` (closes it when it belongs to neither).
pub(crate) fn keep_idle(io: MediaIo, home: Option<&Home>) {
    match io.worker {
        Some(i) => {
            if let Some(w) = WORKERS.get().and_then(|all| all.get(i)) {
                w.idle.keep(io);
            }
        }
        None => {
            if let Some(home) = home {
                home.idle.keep(io);
            }
        }
    }
}

/// Closes every idle pair (the process needs their descriptors).
pub(crate) fn close_idle() {
    for w in WORKERS.get().into_iter().flatten() {
        w.idle.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::super::media::MediaSockets;
    use super::super::media_pool::QUARANTINE;
    use super::*;

    #[test]
    fn a_call_goes_to_the_worker_with_fewest_calls() {
        assert_eq!(least_loaded([3, 1, 2].into_iter()), Some(1));
        assert_eq!(
            least_loaded([2, 0, 0].into_iter()),
            Some(1),
            "first of equals"
        );
        assert_eq!(least_loaded(std::iter::empty()), None);
    }

    #[test]
    fn a_task_leaving_its_worker_is_counted_out() {
        let calls = Arc::new(AtomicUsize::new(2));
        drop(Leaving(Arc::clone(&calls)));
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_counted_task_is_not_kept_twice() {
        let big = [7u8; 4096];
        let task = async move {
            std::hint::black_box(&big);
        };
        let size = std::mem::size_of_val(&task);
        let calls = Arc::new(AtomicUsize::new(1));
        let wrapped = counted(task, Leaving(Arc::clone(&calls)));
        assert!(size >= 4096);
        assert!(
            std::mem::size_of_val(&wrapped) < 128,
            "the task is boxed, not inline"
        );
        drop(wrapped);
        assert_eq!(calls.load(Ordering::Relaxed), 0, "counted out when dropped");
    }

    /// The whole round: a call's pair registered on a worker, kept idle there when the call
    /// ends, not reused during its quarantine, then taken for a later call (what reached it
    /// meanwhile dropped), whose task runs on the same worker and gets its datagrams.
    #[tokio::test(flavor = "current_thread")]
    async fn an_ended_calls_pair_serves_a_later_call_on_its_worker() {
        // No other test uses this address, so the pool's pairs on it are this test's.
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        let first = MediaSockets::reserve(ip).unwrap();
        let local = first.local_rtp();
        let peer = std::net::UdpSocket::bind((ip, 0)).unwrap();
        let old = peer.try_clone().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        spawn(Placed::Worker(None), async move {
            let io = first.register().unwrap();
            let worker = io.worker;
            // The old call's last packet, seen by the worker's reactor before the call ends.
            old.send_to(b"old", local).unwrap();
            io.rtp.readable().await.unwrap();
            keep_idle(io, None);
            let _ = tx.send(worker);
        });
        let worker = rx.await.unwrap();
        assert!(worker.is_some(), "registered with a media worker");
        let ended = Instant::now();
        let young = MediaSockets::reserve_at(ip, ended, None).unwrap();
        assert_ne!(
            young.local_rtp(),
            local,
            "in quarantine: a new pair instead"
        );
        assert_eq!(young.place(), Place::Any);
        let later = MediaSockets::reserve_at(ip, ended + QUARANTINE, None).unwrap();
        assert_eq!(later.local_rtp(), local);
        assert_eq!(later.place(), worker.map_or(Place::Home, Place::Worker));
        let (tx, rx) = tokio::sync::oneshot::channel();
        spawn(place(later.place(), None), async move {
            let on = current_worker();
            let io = later.register().unwrap();
            let mut buf = [0u8; 8];
            let got = io
                .rtp
                .recv_from(&mut buf)
                .await
                .map(|(n, _)| buf[..n].to_vec());
            let _ = tx.send((on, got.ok()));
        });
        peer.send_to(b"new", local).unwrap();
        let (on, got) = rx.await.unwrap();
        assert_eq!(on, worker, "the task runs where its sockets are registered");
        assert_eq!(
            got.as_deref(),
            Some(&b"new"[..]),
            "the old datagram was dropped"
        );
    }

    /// On a current-thread runtime the driver's thread is a home for a few calls: their
    /// tasks run on it, their pairs come back to its pool, and beyond `HOME_CALLS` calls the
    /// workers take the new ones.
    #[tokio::test(flavor = "current_thread")]
    async fn the_first_calls_run_at_home_and_the_rest_on_the_workers() {
        let home = Home::here().expect("a current-thread runtime is a home");
        // No other test uses this address.
        let ip: IpAddr = "127.0.0.3".parse().unwrap();
        let first = MediaSockets::reserve_at(ip, Instant::now(), Some(&home)).unwrap();
        let local = first.local_rtp();
        let placed = place(first.place(), Some(&home));
        assert!(matches!(placed, Placed::Home(_)));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let h = Arc::clone(&home);
        spawn(placed, async move {
            let io = first.register().unwrap();
            let on = (std::thread::current().id(), io.worker);
            keep_idle(io, Some(&h));
            let _ = tx.send(on);
        });
        let (thread, worker) = rx.await.unwrap();
        assert_eq!((thread, worker), (std::thread::current().id(), None));
        let later = Instant::now() + QUARANTINE;
        let again = MediaSockets::reserve_at(ip, later, Some(&home)).unwrap();
        assert_eq!((again.local_rtp(), again.place()), (local, Place::Home));
        assert!(matches!(place(again.place(), Some(&home)), Placed::Home(_)));
        // A full home: new calls go to the workers, and its idle pairs wait.
        let (hold, wait) = tokio::sync::watch::channel(());
        for _ in 0..HOME_CALLS {
            let mut wait = wait.clone();
            spawn(Placed::Home(Arc::clone(&home)), async move {
                let _ = wait.changed().await;
            });
        }
        assert!(matches!(
            place(Place::Any, Some(&home)),
            Placed::Worker(None)
        ));
        keep_idle(again.register().unwrap(), Some(&home));
        assert!(home.take_idle(ip, later + QUARANTINE).is_none(), "no room");
        drop(hold);
        tokio::task::yield_now().await;
        assert!(
            home.take_idle(ip, later + QUARANTINE).is_some(),
            "room again"
        );
        assert!(matches!(
            place(Place::Worker(1), Some(&home)),
            Placed::Worker(Some(1))
        ));
    }

    #[test]
    fn a_multi_thread_runtime_is_no_home() {
        assert!(Home::here().is_none(), "no runtime");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        assert!(rt.block_on(async { Home::here() }).is_none());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn media_tasks_run_on_the_media_workers_with_their_sockets() {
        let sockets = MediaSockets::reserve("127.0.0.1".parse().unwrap()).unwrap();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = sockets.local_rtp();
        let (tx, rx) = tokio::sync::oneshot::channel();
        spawn(Placed::Worker(None), async move {
            let name = std::thread::current().name().map(str::to_owned);
            let s = sockets.register().unwrap();
            let mut buf = [0u8; 16];
            let got = s
                .rtp
                .recv_from(&mut buf)
                .await
                .map(|(n, _)| buf[..n].to_vec());
            let _ = tx.send((name, got.ok()));
        });
        peer.send_to(b"rtp", to).unwrap();
        let (name, got) = rx.await.unwrap();
        assert_eq!(name.as_deref(), Some("wakeline-media"));
        assert_eq!(got.as_deref(), Some(&b"rtp"[..]));
    }
}
