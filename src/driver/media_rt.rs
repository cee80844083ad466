//! The media workers: one tokio runtime, apart from the signaling one, with a fixed set of
//! worker threads (one per core) that runs every call's media task. Call set-up never queues
//! behind the media ticks of hundreds of calls on the same workers; the kernel shares the CPU
//! between the signaling threads and the media workers instead. A call's UDP sockets are
//! registered with the media runtime's reactor when its task starts
//! ([`MediaSockets::register`](super::media::MediaSockets::register)), and with no other.

use std::future::Future;
use std::sync::OnceLock;
use tokio::runtime::{Builder, Runtime};

/// The media runtime, built on first use; `None` when it could not be built (the caller's
/// runtime then runs media, as before).
fn runtime() -> Option<&'static Runtime> {
    static RT: OnceLock<Option<Runtime>> = OnceLock::new();
    RT.get_or_init(|| {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("wakeline-media")
            .enable_all()
            .build()
            .inspect_err(|e| tracing::warn!("media workers: {e}; media runs with signaling"))
            .ok()
    })
    .as_ref()
}

/// Runs `task` on the media workers (or on the current runtime when there are none).
pub(crate) fn spawn<F>(task: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    match runtime() {
        Some(rt) => drop(rt.spawn(task)),
        None => drop(tokio::spawn(task)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::media::MediaSockets;
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn media_tasks_run_on_the_media_workers_with_their_sockets() {
        let sockets = MediaSockets::reserve("127.0.0.1".parse().unwrap()).unwrap();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = sockets.local_rtp();
        let (tx, rx) = tokio::sync::oneshot::channel();
        spawn(async move {
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
