//! When the OS-level keep-alive *handler* runs, and what one run of it does.
//!
//! This is not the RFC 5626 ping timer inside the signaling core (which runs while the app is
//! awake): it is the periodic wake the OS grants a suspended VoIP app (iOS: at least every
//! 600 s, with a hard budget per run; Android: an alarm or a foreground-service timer). One run
//! must do only what fits in the budget:
//!
//! ```text
//!   flow up?  ──yes──> SendPing (4 bytes) ──pong (2 bytes)──────────────> Done(ping_ok)
//!     │                      │ no pong before the pong deadline, or the flow drops
//!     no                     v
//!     └──────────────> Reconnect ──flow up──> Reregister ──registered──> Done(reconnected, reregistered)
//!                       (any step still open at budget − margin: abort ─> Done(aborted))
//! ```
//!
//! Both types are sans-IO: the caller passes `now` and executes the [`RunAction`]s.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Bytes of one RFC 5626 ping (CRLF CRLF).
pub const PING_BYTES: usize = 4;
/// Bytes of one RFC 5626 pong (CRLF).
pub const PONG_BYTES: usize = 2;

/// Identifies one run of the keep-alive handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId(pub u64);

/// What a run achieved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunOutcome {
    /// The pong came back on the existing flow.
    pub ping_ok: bool,
    /// A new control flow was connected.
    pub reconnected: bool,
    /// The registration was refreshed on the new flow.
    pub reregistered: bool,
    /// A step would have overrun the budget and was abandoned.
    pub aborted: bool,
}

/// How a run went, for the log and the measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunReport {
    /// Which run.
    pub id: RunId,
    /// From the start of the run to its end.
    pub elapsed: Duration,
    /// `elapsed <= budget`.
    pub within_budget: bool,
    /// What it did.
    pub outcome: RunOutcome,
    /// Keep-alive bytes written (pings).
    pub bytes_out: usize,
    /// Keep-alive bytes read (pongs).
    pub bytes_in: usize,
}

/// The handler's schedule: a minimum period between runs and a hard budget per run.
#[derive(Debug, Clone)]
pub struct KeepAliveSchedule {
    /// The OS's minimum period (iOS: [`KeepAliveSchedule::IOS_MIN_PERIOD`]).
    pub min_period: Duration,
    /// Hard wall-clock budget of one run ([`KeepAliveSchedule::DEFAULT_BUDGET`] by default).
    pub budget: Duration,
    period: Duration,
    anchor: Option<Instant>,
    running: Option<(RunId, Instant)>,
    next_id: u64,
    runs: u64,
}

impl KeepAliveSchedule {
    /// iOS runs the handler no more often than every 600 s.
    pub const IOS_MIN_PERIOD: Duration = Duration::from_secs(600);
    /// Apple documents 10 s for the handler (older texts say 30 s).
    pub const DEFAULT_BUDGET: Duration = Duration::from_secs(10);

    /// A schedule asking for `period`, clamped to `min_period`, with `budget` per run.
    pub fn new(period: Duration, min_period: Duration, budget: Duration) -> Self {
        KeepAliveSchedule {
            min_period,
            budget,
            period,
            anchor: None,
            running: None,
            next_id: 1,
            runs: 0,
        }
    }

    /// The iOS schedule: every 600 s, 10 s budget.
    pub fn ios() -> Self {
        Self::new(
            Self::IOS_MIN_PERIOD,
            Self::IOS_MIN_PERIOD,
            Self::DEFAULT_BUDGET,
        )
    }

    /// The period actually used: the requested one, never below `min_period`.
    pub fn period(&self) -> Duration {
        self.period.max(self.min_period)
    }

    /// Asks for a new period (clamped like [`KeepAliveSchedule::new`]).
    pub fn set_period(&mut self, period: Duration) {
        self.period = period;
    }

    /// Starts counting periods from `now` (on entering background).
    pub fn arm(&mut self, now: Instant) {
        self.anchor = Some(now);
    }

    /// Stops the schedule (on entering foreground).
    pub fn disarm(&mut self) {
        self.anchor = None;
    }

    /// When the next run is due: one period after the last run started (or after
    /// [`KeepAliveSchedule::arm`]); never earlier than `now`; `None` when not armed.
    pub fn next_run(&self, now: Instant) -> Option<Instant> {
        self.anchor.map(|a| (a + self.period()).max(now))
    }

    /// A run starts now. A run still open is abandoned (the OS started a new one).
    pub fn start_run(&mut self, now: Instant) -> RunId {
        let id = RunId(self.next_id);
        self.next_id += 1;
        self.running = Some((id, now));
        self.anchor = Some(now);
        self.runs += 1;
        id
    }

    /// The hard deadline of the open run, if any.
    pub fn deadline(&self) -> Option<Instant> {
        self.running.map(|(_, start)| start + self.budget)
    }

    /// Number of runs started.
    pub fn runs(&self) -> u64 {
        self.runs
    }

    /// Starts a run and builds its state machine (see [`KeepAliveRun::new`]).
    pub fn begin(&mut self, now: Instant, flow_up: bool, timing: RunTiming) -> KeepAliveRun {
        let id = self.start_run(now);
        KeepAliveRun::new(id, now, self.budget, timing, flow_up)
    }

    /// The open run ended at `now` with `outcome`.
    pub fn finish_run(&mut self, now: Instant, outcome: RunOutcome) -> RunReport {
        let (id, start) = self.running.take().unwrap_or((RunId(0), now));
        let elapsed = now.saturating_duration_since(start);
        RunReport {
            id,
            elapsed,
            within_budget: elapsed <= self.budget,
            outcome,
            bytes_out: 0,
            bytes_in: 0,
        }
    }
}

/// Time limits inside one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunTiming {
    /// How long to wait for the pong (capped by the budget).
    pub pong_wait: Duration,
    /// Kept free at the end of the budget so the run can report and the app can go back to
    /// sleep before the OS kills it.
    pub margin: Duration,
    /// A reconnect + re-register is not started with less than this left before
    /// `budget - margin` (it could not finish).
    pub min_recovery: Duration,
}

impl Default for RunTiming {
    /// 3 s for the pong, 1 s margin, 1 s minimum for a recovery.
    fn default() -> Self {
        RunTiming {
            pong_wait: Duration::from_secs(3),
            margin: Duration::from_secs(1),
            min_recovery: Duration::from_secs(1),
        }
    }
}

/// What the executor of a run must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunAction {
    /// Write a ping ([`PING_BYTES`] bytes, CRLF CRLF) on the control flow.
    SendPing,
    /// Close whatever is left of the control flow and connect a new one.
    Reconnect,
    /// Send REGISTER on the new flow (same instance-id and reg-id).
    Reregister,
    /// The run is over; the app may be suspended again.
    Done(RunReport),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    WaitPong { until: Instant },
    WaitFlow,
    WaitRegistered,
    Done,
}

/// One run of the keep-alive handler.
#[derive(Debug)]
pub struct KeepAliveRun {
    id: RunId,
    started: Instant,
    budget: Duration,
    /// `started + budget - margin`: every step is over by then.
    hard_stop: Instant,
    timing: RunTiming,
    state: State,
    outcome: RunOutcome,
    bytes_out: usize,
    bytes_in: usize,
    actions: VecDeque<RunAction>,
}

impl KeepAliveRun {
    /// A run that starts at `now`: ping if the flow is up, else go straight to recovery.
    pub fn new(
        id: RunId,
        now: Instant,
        budget: Duration,
        timing: RunTiming,
        flow_up: bool,
    ) -> Self {
        let hard_stop = now + budget.saturating_sub(timing.margin);
        let mut run = KeepAliveRun {
            id,
            started: now,
            budget,
            hard_stop,
            timing,
            state: State::WaitFlow,
            outcome: RunOutcome::default(),
            bytes_out: 0,
            bytes_in: 0,
            actions: VecDeque::new(),
        };
        if flow_up {
            run.actions.push_back(RunAction::SendPing);
            run.bytes_out += PING_BYTES;
            run.state = State::WaitPong {
                until: (now + timing.pong_wait).min(hard_stop),
            };
        } else {
            run.recover(now);
        }
        run
    }

    /// Which run this is.
    pub fn id(&self) -> RunId {
        self.id
    }

    /// The run has reported `Done`.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<RunAction> {
        self.actions.pop_front()
    }

    /// When to call [`KeepAliveRun::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::WaitPong { until } => Some(until),
            State::WaitFlow | State::WaitRegistered => Some(self.hard_stop),
            State::Done => None,
        }
    }

    /// A pong arrived on the control flow.
    pub fn handle_pong(&mut self, now: Instant) {
        if let State::WaitPong { .. } = self.state {
            self.bytes_in += PONG_BYTES;
            self.outcome.ping_ok = true;
            self.finish(now);
        }
    }

    /// The control flow went down (EOF, error) during the run.
    pub fn handle_flow_down(&mut self, now: Instant) {
        match self.state {
            State::WaitPong { .. } => self.recover(now),
            // The new flow failed; there is no time to loop: wait for the hard stop or a
            // retried connect reported by the executor.
            State::WaitFlow | State::WaitRegistered | State::Done => {}
        }
    }

    /// The new control flow is connected.
    pub fn handle_flow_up(&mut self, _now: Instant) {
        if self.state == State::WaitFlow {
            self.outcome.reconnected = true;
            self.actions.push_back(RunAction::Reregister);
            self.state = State::WaitRegistered;
        }
    }

    /// The registrar accepted the REGISTER.
    pub fn handle_registered(&mut self, now: Instant) {
        if matches!(self.state, State::WaitRegistered | State::WaitFlow) {
            self.outcome.reregistered = true;
            self.finish(now);
        }
    }

    /// Call at [`KeepAliveRun::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::WaitPong { until } if now >= until => self.recover(now),
            State::WaitFlow | State::WaitRegistered if now >= self.hard_stop => {
                self.outcome.aborted = true;
                self.finish(now);
            }
            _ => {}
        }
    }

    /// No pong or no flow: reconnect if that can still finish, else abort now.
    fn recover(&mut self, now: Instant) {
        if now + self.timing.min_recovery > self.hard_stop {
            self.outcome.aborted = true;
            self.finish(now);
            return;
        }
        self.actions.push_back(RunAction::Reconnect);
        self.state = State::WaitFlow;
    }

    fn finish(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.started);
        self.state = State::Done;
        self.actions.push_back(RunAction::Done(RunReport {
            id: self.id,
            elapsed,
            within_budget: elapsed <= self.budget,
            outcome: self.outcome,
            bytes_out: self.bytes_out,
            bytes_in: self.bytes_in,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(run: &mut KeepAliveRun) -> Vec<RunAction> {
        std::iter::from_fn(|| run.poll_action()).collect()
    }

    fn done(actions: &[RunAction]) -> RunReport {
        match actions.last() {
            Some(RunAction::Done(r)) => *r,
            other => panic!("not done: {other:?}"),
        }
    }

    #[test]
    fn pong_path_is_four_bytes_out_two_in() {
        let t0 = Instant::now();
        let mut s = KeepAliveSchedule::ios();
        let mut run = s.begin(t0, true, RunTiming::default());
        assert_eq!(drain(&mut run), vec![RunAction::SendPing]);
        assert_eq!(run.poll_timeout(), Some(t0 + Duration::from_secs(3)));
        run.handle_pong(t0 + Duration::from_millis(40));
        let a = drain(&mut run);
        let r = done(&a);
        assert_eq!(a.len(), 1);
        assert!(r.outcome.ping_ok && !r.outcome.reconnected && !r.outcome.aborted);
        assert_eq!((r.bytes_out, r.bytes_in), (4, 2));
        assert_eq!(r.elapsed, Duration::from_millis(40));
        assert!(r.within_budget);
        assert!(run.is_done());
        assert_eq!(run.poll_timeout(), None);
        let sr = s.finish_run(t0 + Duration::from_millis(40), r.outcome);
        assert_eq!(sr.id, run.id());
        assert!(sr.within_budget);
    }

    #[test]
    fn missing_pong_reconnects_and_reregisters() {
        let t0 = Instant::now();
        let mut run = KeepAliveRun::new(
            RunId(1),
            t0,
            Duration::from_secs(10),
            RunTiming::default(),
            true,
        );
        assert_eq!(drain(&mut run), vec![RunAction::SendPing]);
        let t = run.poll_timeout().unwrap();
        run.handle_timeout(t);
        assert_eq!(drain(&mut run), vec![RunAction::Reconnect]);
        run.handle_flow_up(t + Duration::from_millis(5));
        assert_eq!(drain(&mut run), vec![RunAction::Reregister]);
        run.handle_registered(t + Duration::from_millis(10));
        let r = done(&drain(&mut run));
        assert!(!r.outcome.ping_ok && r.outcome.reconnected && r.outcome.reregistered);
        assert_eq!(r.elapsed, Duration::from_millis(3010));
        assert_eq!((r.bytes_out, r.bytes_in), (4, 0));
    }

    #[test]
    fn dead_flow_goes_straight_to_recovery() {
        let t0 = Instant::now();
        let mut s = KeepAliveSchedule::ios();
        let mut run = s.begin(t0, false, RunTiming::default());
        assert_eq!(drain(&mut run), vec![RunAction::Reconnect]);
        run.handle_flow_up(t0 + Duration::from_millis(2));
        assert_eq!(drain(&mut run), vec![RunAction::Reregister]);
        run.handle_registered(t0 + Duration::from_millis(4));
        let r = done(&drain(&mut run));
        assert!(r.outcome.reconnected && r.outcome.reregistered && !r.outcome.ping_ok);
        assert_eq!(r.bytes_out, 0);
    }

    #[test]
    fn flow_dropping_while_waiting_for_pong_recovers() {
        let t0 = Instant::now();
        let mut run = KeepAliveRun::new(
            RunId(1),
            t0,
            Duration::from_secs(10),
            RunTiming::default(),
            true,
        );
        drain(&mut run);
        run.handle_flow_down(t0 + Duration::from_millis(1));
        assert_eq!(drain(&mut run), vec![RunAction::Reconnect]);
    }

    #[test]
    fn overrun_aborts_at_the_budget_minus_margin() {
        let t0 = Instant::now();
        let budget = Duration::from_secs(10);
        let mut run = KeepAliveRun::new(RunId(7), t0, budget, RunTiming::default(), true);
        drain(&mut run);
        run.handle_timeout(run.poll_timeout().unwrap());
        assert_eq!(drain(&mut run), vec![RunAction::Reconnect]);
        // The server never accepts: the run gives up at 9 s (10 s budget, 1 s margin).
        let stop = run.poll_timeout().unwrap();
        assert_eq!(stop, t0 + Duration::from_secs(9));
        run.handle_timeout(stop - Duration::from_millis(1));
        assert!(drain(&mut run).is_empty());
        run.handle_timeout(stop);
        let r = done(&drain(&mut run));
        assert!(r.outcome.aborted && !r.outcome.reregistered);
        assert_eq!(r.elapsed, Duration::from_secs(9));
        assert!(r.within_budget);
        // Late events change nothing.
        run.handle_flow_up(stop + Duration::from_secs(1));
        run.handle_registered(stop + Duration::from_secs(1));
        assert!(drain(&mut run).is_empty());
    }

    #[test]
    fn recovery_that_cannot_fit_is_not_started() {
        let t0 = Instant::now();
        let timing = RunTiming {
            pong_wait: Duration::from_secs(30),
            ..RunTiming::default()
        };
        let mut run = KeepAliveRun::new(RunId(1), t0, Duration::from_secs(10), timing, true);
        drain(&mut run);
        // The pong wait is capped at the hard stop; then there is no time to reconnect.
        assert_eq!(run.poll_timeout(), Some(t0 + Duration::from_secs(9)));
        run.handle_timeout(t0 + Duration::from_secs(9));
        let a = drain(&mut run);
        assert_eq!(a.len(), 1, "no Reconnect: {a:?}");
        let r = done(&a);
        assert!(r.outcome.aborted);
        assert_eq!(r.elapsed, Duration::from_secs(9));
    }

    #[test]
    fn min_period_is_enforced() {
        let t0 = Instant::now();
        let mut s = KeepAliveSchedule::new(
            Duration::from_secs(30),
            KeepAliveSchedule::IOS_MIN_PERIOD,
            KeepAliveSchedule::DEFAULT_BUDGET,
        );
        assert_eq!(s.period(), Duration::from_secs(600));
        assert_eq!(s.next_run(t0), None);
        s.arm(t0);
        assert_eq!(s.next_run(t0), Some(t0 + Duration::from_secs(600)));
        let at = t0 + Duration::from_secs(600);
        s.start_run(at);
        assert_eq!(s.deadline(), Some(at + Duration::from_secs(10)));
        let r = s.finish_run(at + Duration::from_secs(12), RunOutcome::default());
        assert!(!r.within_budget);
        assert_eq!(s.next_run(at), Some(at + Duration::from_secs(600)));
        // A longer period is kept as asked.
        s.set_period(Duration::from_secs(900));
        assert_eq!(s.next_run(at), Some(at + Duration::from_secs(900)));
        // Never in the past.
        let late = at + Duration::from_secs(5000);
        assert_eq!(s.next_run(late), Some(late));
        assert_eq!(s.runs(), 1);
    }
}
