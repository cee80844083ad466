//! Causes in words: what the driver puts in a flow's close reason and in errors about sockets,
//! so the application can show the operation, the address and the OS cause in one line.

use crate::signaling::core::FlowId;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long an outgoing TCP connect may take before the flow is given up. The OS's own limit
/// (about two minutes on Linux) is longer than any command's bound.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An OS error as a short lowercase phrase without the `(os error N)` suffix:
/// `connection refused`, `address already in use`, `network is unreachable`.
pub fn io_cause(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => text.as_str(),
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => format!("{:?}", e.kind()).to_lowercase(),
    }
}

/// Timers that give up on outgoing connects that take longer than [`CONNECT_TIMEOUT`].
#[derive(Default)]
pub(crate) struct ConnectGuards {
    pending: HashMap<FlowId, JoinHandle<()>>,
}

impl ConnectGuards {
    /// Starts the timer of `flow`: when it fires after `after`, `closed(flow, why)` is sent on
    /// `tx`.
    pub(crate) fn arm<E: Send + 'static>(
        &mut self,
        flow: FlowId,
        target: String,
        after: Duration,
        tx: mpsc::UnboundedSender<E>,
        closed: fn(FlowId, String) -> E,
    ) {
        let timer = tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let why = format!(
                "connect {target}: timed out after {} s",
                after.as_secs_f64()
            );
            let _ = tx.send(closed(flow, why));
        });
        if let Some(old) = self.pending.insert(flow, timer) {
            old.abort();
        }
    }

    /// The connect of `flow` finished (either way), or the flow is gone: no timeout for it.
    pub(crate) fn disarm(&mut self, flow: FlowId) {
        if let Some(t) = self.pending.remove(&flow) {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_read_as_short_phrases() {
        let e = std::io::Error::from_raw_os_error(111);
        assert_eq!(io_cause(&e), "connection refused");
        let e = std::io::Error::from_raw_os_error(98);
        assert_eq!(io_cause(&e), "address already in use");
        let e = std::io::Error::other("Custom thing");
        assert_eq!(io_cause(&e), "custom thing");
    }

    #[tokio::test]
    async fn a_connect_that_hangs_is_closed_with_its_target_and_bound() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut g = ConnectGuards::default();
        let after = Duration::from_millis(20);
        g.arm(
            FlowId(1),
            "192.0.2.1:5060".into(),
            after,
            tx.clone(),
            |f, w| (f, w),
        );
        g.arm(FlowId(2), "192.0.2.2:5060".into(), after, tx, |f, w| (f, w));
        g.disarm(FlowId(2));
        let (flow, why) = rx.recv().await.unwrap();
        assert_eq!(flow, FlowId(1));
        assert_eq!(why, "connect 192.0.2.1:5060: timed out after 0.02 s");
        assert!(
            rx.try_recv().is_err(),
            "the disarmed flow must not time out"
        );
    }
}
