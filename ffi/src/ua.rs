//! The user agent and call objects: a tokio runtime of their own, commands that block the
//! foreign caller until the driver accepts or refuses them, and a thread that hands events to
//! the foreign listener.

use crate::config::{MediaConfig, UaConfig};
use crate::error::WakelineError;
use crate::events::{CallEvent, EventListener};
use std::future::Future;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
use tokio::runtime::{Handle, Runtime};

/// How long dropping a [`UserAgent`] waits for its calls to hang up and its binding to go.
const DROP_SHUTDOWN: Duration = Duration::from_secs(5);

/// A running SIP user agent.
#[derive(uniffi::Object)]
pub struct UserAgent {
    /// `None` only while dropping.
    runtime: Option<Runtime>,
    ua: wakeline::UserAgent,
    /// The events thread: its id, and a message when it has delivered the last event and let
    /// go of the listener (see [`UserAgent::shutdown`]).
    delivered: (std::thread::ThreadId, Mutex<mpsc::Receiver<()>>),
}

/// One call of a [`UserAgent`].
#[derive(uniffi::Object)]
pub struct Call {
    runtime: Handle,
    call: wakeline::Call,
}

/// Hold or resume a call ([`Call::hold`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Hold {
    /// On hold (a re-INVITE with `a=sendonly`).
    On,
    /// Resumed (a re-INVITE with `a=sendrecv`).
    Off,
}

/// What one keep-alive run did.
#[derive(Debug, Clone, uniffi::Record)]
pub struct KeepAliveResult {
    /// How long the run took.
    pub elapsed_ms: u64,
    /// Whether it finished within the budget.
    pub within_budget: bool,
    /// What it did (ping answered, reconnected, ...).
    pub outcome: String,
}

/// Runs `f` to completion on `rt` from a foreign (non-runtime) thread.
fn block<T, E: Into<WakelineError>>(
    rt: &Handle,
    f: impl Future<Output = Result<T, E>>,
) -> Result<T, WakelineError> {
    if Handle::try_current().is_ok() {
        return Err(WakelineError::Failed {
            message: "called from inside an async runtime; call from a plain thread".into(),
        });
    }
    rt.block_on(f).map_err(Into::into)
}

impl UserAgent {
    fn rt(&self) -> Result<&Handle, WakelineError> {
        self.runtime
            .as_ref()
            .map(Runtime::handle)
            .ok_or(WakelineError::Stopped)
    }

    /// Waits (at most [`DROP_SHUTDOWN`]) until the events thread has delivered the last event
    /// and let go of the listener; returns at once on that thread itself, or when it is done.
    fn wait_delivered(&self) {
        let (events_thread, delivered) = &self.delivered;
        if std::thread::current().id() != *events_thread {
            let delivered = delivered.lock().unwrap_or_else(|p| p.into_inner());
            let _ = delivered.recv_timeout(DROP_SHUTDOWN);
        }
    }

    fn wrap(&self, call: wakeline::Call) -> Result<Arc<Call>, WakelineError> {
        Ok(Arc::new(Call {
            runtime: self.rt()?.clone(),
            call,
        }))
    }
}

#[uniffi::export]
impl UserAgent {
    /// Starts a user agent (its runtime, the listener if `config.listen` is set) and delivers
    /// its events to `listener`. Registration is not started: call [`UserAgent::register`].
    #[uniffi::constructor]
    pub fn new(
        config: UaConfig,
        listener: Box<dyn EventListener>,
    ) -> Result<Arc<Self>, WakelineError> {
        let (core_config, listen, media_ip) = config.to_parts()?;
        let media = config.media.to_options()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("wakeline")
            .enable_all()
            .build()?;
        let mut builder = wakeline::UserAgent::builder(core_config).media(media);
        if let Some(addr) = listen {
            builder = builder.listen(addr);
        }
        if let Some(ip) = media_ip {
            builder = builder.media_ip(ip);
        }
        let (ua, mut events) = block(runtime.handle(), builder.start())?;
        let handle = runtime.handle().clone();
        let (done, delivered) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("wakeline-events".into())
            .spawn(move || {
                // Outside the runtime, so the listener may call back in (which blocks).
                while let Some(event) = handle.block_on(events.next()) {
                    if let Some(event) = CallEvent::of(event) {
                        listener.on_event(event);
                    }
                }
                // Letting go of a foreign listener calls into the foreign side too.
                drop(listener);
                let _ = done.send(());
            })?;
        Ok(Arc::new(UserAgent {
            runtime: Some(runtime),
            ua,
            delivered: (thread.thread().id(), Mutex::new(delivered)),
        }))
    }

    /// The listener's address (`IP:port`), if one was bound.
    pub fn local_addr(&self) -> Option<String> {
        self.ua.local_addr().map(|a| a.to_string())
    }

    /// Starts registering with the account; progress arrives as `Registered` /
    /// `RegistrationFailed`.
    pub fn register(&self) -> Result<(), WakelineError> {
        block(self.rt()?, self.ua.register())
    }

    /// Removes the binding (REGISTER with Expires: 0).
    pub fn unregister(&self) -> Result<(), WakelineError> {
        block(self.rt()?, self.ua.unregister())
    }

    /// Places a call to a SIP URI, e.g. `sip:bob@127.0.0.1:5080;transport=tcp`.
    pub fn call(&self, uri: String) -> Result<Arc<Call>, WakelineError> {
        let call = block(self.rt()?, self.ua.call(&uri))?;
        self.wrap(call)
    }

    /// Places a call with its own media (instead of the user agent's `UaConfig.media`), e.g.
    /// with `manual_audio_session` for a call CallKit runs.
    pub fn call_with(&self, uri: String, media: MediaConfig) -> Result<Arc<Call>, WakelineError> {
        let media = media.to_options()?;
        let call = block(self.rt()?, self.ua.call_with(&uri, media))?;
        self.wrap(call)
    }

    /// The call with this handle (from an event's `call` field).
    pub fn call_for(&self, id: u64) -> Result<Arc<Call>, WakelineError> {
        self.wrap(self.ua.call_by_number(id))
    }

    /// A VoIP push (PushKit/FCM) announced the call with this SIP Call-ID: the call exists at
    /// once (report it to CallKit / the ConnectionService now) and binds to its INVITE.
    pub fn handle_push(
        &self,
        sip_call_id: String,
        from: Option<String>,
    ) -> Result<Arc<Call>, WakelineError> {
        let call = block(
            self.rt()?,
            self.ua.handle_push(&sip_call_id, from.as_deref()),
        )?;
        self.wrap(call)
    }

    /// Background mode on or off; in background no timer fires more often than
    /// `keepalive_period_ms` and refreshes ride on [`UserAgent::run_keepalive`].
    pub fn set_background(&self, on: bool, keepalive_period_ms: u64) -> Result<(), WakelineError> {
        let period = Duration::from_millis(keepalive_period_ms);
        block(self.rt()?, self.ua.set_background(on, period))
    }

    /// One keep-alive handler run (ping/pong or reconnect and re-register) within the budget.
    pub fn run_keepalive(&self, budget_ms: u64) -> Result<KeepAliveResult, WakelineError> {
        let budget = Duration::from_millis(budget_ms);
        let r = block(self.rt()?, self.ua.run_keepalive(budget))?;
        Ok(KeepAliveResult {
            elapsed_ms: u64::try_from(r.elapsed.as_millis()).unwrap_or(u64::MAX),
            within_budget: r.within_budget,
            outcome: format!("{:?}", r.outcome),
        })
    }

    /// The network changed: new control flow, re-registration, re-INVITE of every call.
    pub fn network_changed(&self) -> Result<(), WakelineError> {
        block(self.rt()?, self.ua.network_changed())
    }

    /// Hangs up every call, removes the registration and stops; the listener gets the
    /// remaining events (`MediaReport`, `Ended`, `Unregistered`) before this returns, and no
    /// more after (waiting at most 5 s for it; called from the listener itself, it cannot
    /// wait for its own thread and returns once the user agent has stopped). A foreign
    /// runtime may then exit: no thread of ours calls into it again (Python ends a thread
    /// that enters it while it finalizes, which aborted the process).
    pub fn shutdown(&self) -> Result<(), WakelineError> {
        block(self.rt()?, self.ua.shutdown())?;
        self.wait_delivered();
        Ok(())
    }
}

impl Drop for UserAgent {
    fn drop(&mut self) {
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        if Handle::try_current().is_ok() {
            // Dropped on a runtime thread: a blocking shutdown is impossible here.
            runtime.shutdown_background();
            return;
        }
        let ua = self.ua.clone();
        let stop = async move { tokio::time::timeout(DROP_SHUTDOWN, ua.shutdown()).await };
        let _ = runtime.block_on(stop);
        self.wait_delivered();
        runtime.shutdown_timeout(Duration::from_secs(1));
    }
}

#[uniffi::export]
impl Call {
    /// This call's handle (the `call` field of its events).
    pub fn id(&self) -> u64 {
        self.call.handle().number()
    }

    /// Sends 180 Ringing (incoming calls).
    pub fn ring(&self) -> Result<(), WakelineError> {
        block(&self.runtime, self.call.ring())
    }

    /// Answers an incoming call.
    pub fn answer(&self) -> Result<(), WakelineError> {
        block(&self.runtime, self.call.answer())
    }

    /// Answers with this call's own media (instead of the user agent's `UaConfig.media`), e.g.
    /// with `manual_audio_session` when CallKit runs the call's audio session.
    pub fn answer_with(&self, media: MediaConfig) -> Result<(), WakelineError> {
        let media = media.to_options()?;
        block(&self.runtime, self.call.answer_with(media))
    }

    /// The app's audio session is active (CallKit `provider(_:didActivate:)`): the call's mic
    /// and speaker open now, or as soon as its media starts.
    pub fn audio_session_activated(&self) -> Result<(), WakelineError> {
        block(&self.runtime, self.call.audio_session_activated())
    }

    /// The app's audio session is gone (CallKit `provider(_:didDeactivate:)`): the call's mic
    /// and speaker close; RTP keeps flowing. A later activation opens them again.
    pub fn audio_session_deactivated(&self) -> Result<(), WakelineError> {
        block(&self.runtime, self.call.audio_session_deactivated())
    }

    /// Rejects an incoming call with a 3xx-6xx status.
    pub fn reject(&self, status: u16) -> Result<(), WakelineError> {
        let code = wakeline::RejectCode::new(status).ok_or_else(|| {
            WakelineError::invalid(format!("reject status {status} is not 300-699"))
        })?;
        block(&self.runtime, self.call.reject_with(code))
    }

    /// Ends the call: CANCEL, reject or BYE, whichever fits its state.
    pub fn hangup(&self) -> Result<(), WakelineError> {
        block(&self.runtime, self.call.hangup())
    }

    /// Puts the call on hold ([`Hold::On`]) or resumes it ([`Hold::Off`]).
    pub fn hold(&self, hold: Hold) -> Result<(), WakelineError> {
        let hold = match hold {
            Hold::On => wakeline::Hold::On,
            Hold::Off => wakeline::Hold::Off,
        };
        block(&self.runtime, self.call.hold(hold))
    }

    /// Sends DTMF digits (`0-9*#A-D`) as RFC 4733 telephone-events.
    pub fn send_dtmf(&self, digits: String) -> Result<(), WakelineError> {
        block(&self.runtime, self.call.send_dtmf(&digits))
    }

    /// Mutes (`true`) or unmutes our audio.
    pub fn mute(&self, on: bool) -> Result<(), WakelineError> {
        block(&self.runtime, self.call.mute(on))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MediaConfig;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// Counts events; says when it is dropped (the foreign side's listener freed).
    struct Listener {
        events: Arc<AtomicUsize>,
        dropped: Arc<AtomicBool>,
    }

    impl EventListener for Listener {
        fn on_event(&self, _event: CallEvent) {
            // A foreign listener is slow: the events thread is still busy when shutdown's
            // driver part is over.
            std::thread::sleep(Duration::from_millis(50));
            self.events.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Drop for Listener {
        fn drop(&mut self) {
            self.dropped.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn after_shutdown_no_thread_of_ours_calls_the_listener_again() {
        let (events, dropped) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let config = UaConfig {
            listen: Some("127.0.0.1:0".into()),
            media_ip: None,
            local_user: "u".into(),
            account: None,
            media: MediaConfig {
                mic: "silence".into(),
                speaker: "null".into(),
                record: None,
                manual_audio_session: false,
            },
        };
        let listener = Listener {
            events: events.clone(),
            dropped: dropped.clone(),
        };
        let ua = UserAgent::new(config, Box::new(listener)).unwrap();
        // A connection to the listener gives the events thread a flow_up and a flow_down.
        let addr = ua.local_addr().unwrap();
        drop(std::net::TcpStream::connect(addr).unwrap());
        std::thread::sleep(Duration::from_millis(100));
        ua.shutdown().unwrap();
        let seen = events.load(Ordering::SeqCst);
        assert!(seen >= 1, "{seen} events");
        assert!(
            dropped.load(Ordering::SeqCst),
            "the events thread still holds the listener after shutdown returned"
        );
        // Again: `Stopped` at once, nothing more delivered.
        assert!(matches!(ua.shutdown(), Err(WakelineError::Stopped)));
        assert_eq!(events.load(Ordering::SeqCst), seen);
    }
}
