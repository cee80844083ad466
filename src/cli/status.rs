//! The live status line on a terminal (state, elapsed, codec, bitrate, packets, loss, jitter,
//! RTT, level meters) and the keys that act on the call. Rendering and key mapping are pure
//! functions; [`Live`] does the terminal work.

use super::events::state_name;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wakeline::{CallHandle, Event};

/// Whether the status line is drawn now (the log writer clears it before each log line).
static DRAWING: AtomicBool = AtomicBool::new(false);

/// What the status line shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusView {
    /// Call state name (`calling`, `ringing`, `connected`, ...).
    pub state: String,
    /// Time since the call started.
    pub elapsed: Duration,
    /// Negotiated codec, once known.
    pub codec: Option<String>,
    /// Time media has run (for the bitrate).
    pub media_elapsed: Duration,
    /// RTP payload octets sent.
    pub bytes_sent: u64,
    /// RTP payload octets received.
    pub bytes_received: u64,
    /// RTP packets sent.
    pub sent: u64,
    /// RTP packets received.
    pub received: u64,
    /// Packets lost from the peer.
    pub lost: i64,
    /// Interarrival jitter, ms.
    pub jitter_ms: f64,
    /// Round-trip time, ms.
    pub rtt_ms: Option<f64>,
    /// Our input level, 0–1.
    pub input_level: f32,
    /// The far end's level, 0–1.
    pub output_level: f32,
    /// Our audio is muted.
    pub muted: bool,
    /// The call is on hold.
    pub held: bool,
    /// Estimated MOS; `None` while no audio has been received.
    pub mos: Option<f64>,
    /// The audio is SRTP-protected (a lock before the codec).
    pub srtp: bool,
}

/// A level meter of `n` cells over −60…0 dBFS, e.g. `▮▮▮▯▯`.
pub fn meter(level: f32, n: usize) -> String {
    let db = if level > 0.0 {
        20.0 * level.log10()
    } else {
        -100.0
    };
    let filled = (((db + 60.0) / 60.0).clamp(0.0, 1.0) * n as f32).round() as usize;
    let mut s = "▮".repeat(filled);
    s.push_str(&"▯".repeat(n - filled));
    s
}

/// Loss in percent of the packets expected from the peer.
pub fn loss_percent(received: u64, lost: i64) -> f64 {
    let lost = lost.max(0) as f64;
    let expected = received as f64 + lost;
    if expected > 0.0 {
        100.0 * lost / expected
    } else {
        0.0
    }
}

fn kbps(bytes: u64, over: Duration) -> f64 {
    let s = over.as_secs_f64();
    if s > 0.0 {
        bytes as f64 * 8.0 / s / 1000.0
    } else {
        0.0
    }
}

/// The status line (no newline, no escape codes).
pub fn render(v: &StatusView) -> String {
    let secs = v.elapsed.as_secs();
    let mut s = format!("{:<11} {:02}:{:02}", v.state, secs / 60, secs % 60);
    if let Some(codec) = &v.codec {
        s.push_str(&format!(
            " | {}{} ↑{:.0} ↓{:.0} kb/s | pkts ↑{} ↓{} | loss {:.1}% | jitter {:.1} ms | rtt {}",
            if v.srtp { "🔒 " } else { "" },
            codec,
            kbps(v.bytes_sent, v.media_elapsed),
            kbps(v.bytes_received, v.media_elapsed),
            v.sent,
            v.received,
            loss_percent(v.received, v.lost),
            v.jitter_ms,
            v.rtt_ms
                .map(|r| format!("{r:.0} ms"))
                .unwrap_or_else(|| "-".into()),
        ));
        s.push_str(&format!(
            " | in {} out {}",
            meter(v.input_level, 5),
            meter(v.output_level, 5)
        ));
        match v.mos {
            Some(m) => s.push_str(&format!(" | MOS {m:.1}")),
            None => s.push_str(" | no audio"),
        }
    }
    if v.muted {
        s.push_str(" | MUTED");
    }
    if v.held {
        s.push_str(" | HELD");
    }
    s
}

/// What a key does to the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAction {
    /// `h`
    Hangup,
    /// `a`
    Answer,
    /// `r`
    Reject,
    /// `m`
    ToggleMute,
    /// `p`
    ToggleHold,
    /// `0-9*#`
    Dtmf(char),
    /// Ctrl-C (raw mode swallows the signal).
    Interrupt,
}

/// Maps a key (with Ctrl held or not) to its action.
pub fn key_action(c: char, ctrl: bool) -> Option<KeyAction> {
    if ctrl {
        return matches!(c, 'c' | 'C').then_some(KeyAction::Interrupt);
    }
    match c {
        'h' | 'H' => Some(KeyAction::Hangup),
        'a' | 'A' => Some(KeyAction::Answer),
        'r' | 'R' => Some(KeyAction::Reject),
        'm' | 'M' => Some(KeyAction::ToggleMute),
        'p' | 'P' => Some(KeyAction::ToggleHold),
        '0'..='9' | '*' | '#' => Some(KeyAction::Dtmf(c)),
        _ => None,
    }
}

/// Applies a key action to a call; toggles track the mute and hold flags.
pub async fn act(call: &wakeline::Call, action: KeyAction, view: &mut StatusView) {
    let r = match action {
        KeyAction::Hangup | KeyAction::Interrupt => call.hangup().await,
        KeyAction::Answer => call.answer().await,
        KeyAction::Reject => call.reject(486).await,
        KeyAction::ToggleMute => {
            let r = call.mute(!view.muted).await;
            if r.is_ok() {
                view.muted = !view.muted;
            }
            r
        }
        KeyAction::ToggleHold => {
            let r = call.hold(wakeline::Hold::from(!view.held)).await;
            if r.is_ok() {
                view.held = !view.held;
            }
            r
        }
        KeyAction::Dtmf(d) => {
            // send_dtmf completes when the digit is on the wire (~160 ms): not in the key loop.
            let call = call.clone();
            tokio::spawn(async move {
                if let Err(e) = call.send_dtmf(&d.to_string()).await {
                    tracing::warn!("DTMF {d}: {e}");
                }
            });
            Ok(())
        }
    };
    if let Err(e) = r {
        tracing::warn!("{action:?}: {e}");
    }
}

/// The live status of one call at a time, and the keyboard while the terminal is in raw mode.
pub struct Live {
    tty: bool,
    /// What is shown.
    pub view: StatusView,
    /// The call shown (the newest one).
    pub call: Option<CallHandle>,
    /// Every call not yet ended, oldest first: when the newest ends, keys act on the one before.
    calls: Vec<CallHandle>,
    started: Option<Instant>,
    keys: Option<tokio::sync::mpsc::UnboundedReceiver<KeyAction>>,
    stop_keys: Arc<AtomicBool>,
}

impl Live {
    /// Live when stderr is a terminal; otherwise every method does nothing visible.
    pub fn new() -> Self {
        Live::with_tty(std::io::stderr().is_terminal())
    }

    fn with_tty(tty: bool) -> Self {
        Live {
            tty,
            view: StatusView::default(),
            call: None,
            calls: Vec::new(),
            started: None,
            keys: None,
            stop_keys: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether the status line and keys are active.
    pub fn is_tty(&self) -> bool {
        self.tty
    }

    /// Follows a call's events.
    pub fn on_event(&mut self, ev: &Event) {
        match ev {
            Event::Incoming { call, .. } => self.start(*call, "incoming"),
            // An older call's progress does not take the line (and the keys) from the newest.
            Event::State { call, .. } if self.call != Some(*call) && self.calls.contains(call) => {}
            Event::State { call, state, .. } => {
                if self.call != Some(*call) {
                    self.start(*call, state_name(*state));
                }
                self.view.state = state_name(*state).into();
                if *state == wakeline::CallState::Connected {
                    self.start_keys();
                }
            }
            Event::Media { call, media, .. } if self.call == Some(*call) => {
                self.view.codec = Some(format!("{:?}", media.codec).to_ascii_lowercase());
                self.view.srtp = media.srtp.is_some();
            }
            Event::MediaStats { call, snapshot, .. } if self.call == Some(*call) => {
                let s = &snapshot.stats;
                let v = &mut self.view;
                v.codec = Some(s.codec.to_ascii_lowercase());
                v.media_elapsed = snapshot.elapsed;
                v.bytes_sent = s.bytes_sent;
                v.bytes_received = s.bytes_received;
                v.sent = s.rtp_sent;
                v.received = s.rtp_received;
                v.lost = s.lost;
                v.jitter_ms = s.jitter_ms;
                v.rtt_ms = s.rtt_ms;
                v.input_level = snapshot.input_level;
                v.output_level = snapshot.output_level;
                v.muted = snapshot.muted;
                v.mos = s.mos;
            }
            Event::Ended { call, .. } => {
                self.calls.retain(|c| c != call);
                if self.call == Some(*call) {
                    self.clear();
                    self.call = None;
                    self.started = None;
                    if let Some(&previous) = self.calls.last() {
                        self.start(previous, "up");
                    }
                }
            }
            _ => {}
        }
    }

    fn start(&mut self, call: CallHandle, state: &str) {
        if !self.calls.contains(&call) {
            self.calls.push(call);
        }
        self.call = Some(call);
        self.started = Some(Instant::now());
        self.view = StatusView {
            state: state.into(),
            ..StatusView::default()
        };
        self.start_keys();
    }

    /// Redraws the line (about 4×/s from the caller's timer).
    pub fn tick(&mut self) {
        if !self.tty || self.call.is_none() {
            return;
        }
        if let Some(t) = self.started {
            self.view.elapsed = t.elapsed();
        }
        let width = crossterm::terminal::size()
            .ok()
            .map(|(w, _)| usize::from(w))
            .filter(|w| *w > 10)
            .unwrap_or(200);
        let line: String = render(&self.view)
            .chars()
            .take(width.saturating_sub(1))
            .collect();
        // Gathered log lines first, so the line drawn stays under them.
        super::out::flush();
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
        DRAWING.store(true, Ordering::Relaxed);
    }

    fn clear(&self) {
        if self.tty && DRAWING.swap(false, Ordering::Relaxed) {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }

    fn start_keys(&mut self) {
        if !self.tty || self.keys.is_some() || !std::io::stdin().is_terminal() {
            return;
        }
        if crossterm::terminal::enable_raw_mode().is_err() {
            return;
        }
        install_panic_hook();
        tracing::info!("keys: h hang up, a answer, r reject, m mute, p hold/resume, 0-9*# DTMF");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let stop = self.stop_keys.clone();
        std::thread::spawn(move || {
            use crossterm::event::{poll, read, Event as TermEvent, KeyEventKind, KeyModifiers};
            while !stop.load(Ordering::Relaxed) {
                match poll(Duration::from_millis(100)) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(_) => break,
                }
                let Ok(TermEvent::Key(k)) = read() else {
                    continue;
                };
                if k.kind != KeyEventKind::Press {
                    continue;
                }
                if let crossterm::event::KeyCode::Char(c) = k.code {
                    let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
                    if let Some(a) = key_action(c, ctrl) {
                        if tx.send(a).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        self.keys = Some(rx);
    }

    /// The next key action; never resolves when there is no keyboard.
    pub async fn key(&mut self) -> KeyAction {
        match &mut self.keys {
            Some(rx) => match rx.recv().await {
                Some(a) => a,
                None => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }

    /// Prints a line on stdout without tearing the status line.
    pub fn say(&self, line: &str) {
        self.clear();
        let raw = crossterm::terminal::is_raw_mode_enabled().unwrap_or(false);
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "{line}{}", if raw { "\r\n" } else { "\n" });
        let _ = out.flush();
    }

    /// Clears the line and gives the terminal back.
    pub fn finish(&mut self) {
        self.clear();
        if self.keys.take().is_some() {
            self.stop_keys.store(true, Ordering::Relaxed);
            let _ = crossterm::terminal::disable_raw_mode();
        }
    }
}

impl Default for Live {
    fn default() -> Self {
        Live::new()
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.finish();
    }
}

fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = crossterm::terminal::disable_raw_mode();
            previous(info);
        }));
    });
}

/// The log writer: gathers a line written on the runtime's thread until it parks
/// (`out.rs`); otherwise writes it at once with [`write_log`].
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !super::out::gather_log(buf) {
            write_log(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Writes log lines to stderr: clears the status line first, and ends lines with `\r\n`
/// in raw mode (which does not return the carriage on `\n`).
pub fn write_log(buf: &[u8]) {
    let mut err = std::io::stderr().lock();
    if DRAWING.swap(false, Ordering::Relaxed) {
        let _ = err.write_all(b"\r\x1b[2K");
    }
    if crossterm::terminal::is_raw_mode_enabled().unwrap_or(false) {
        for (i, part) in buf.split(|b| *b == b'\n').enumerate() {
            if i > 0 {
                let _ = err.write_all(b"\r\n");
            }
            let _ = err.write_all(part);
        }
    } else {
        let _ = err.write_all(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connected() -> StatusView {
        StatusView {
            state: "connected".into(),
            elapsed: Duration::from_secs(65),
            codec: Some("opus".into()),
            media_elapsed: Duration::from_secs(10),
            bytes_sent: 40_000,
            bytes_received: 20_000,
            sent: 500,
            received: 495,
            lost: 5,
            jitter_ms: 2.345,
            rtt_ms: Some(12.4),
            input_level: 1.0,
            output_level: 0.0,
            muted: true,
            held: false,
            mos: Some(4.32),
            srtp: false,
        }
    }

    #[test]
    fn render_shows_every_field() {
        let s = render(&connected());
        assert!(s.starts_with("connected   01:05"), "{s}");
        assert!(s.contains("opus ↑32 ↓16 kb/s"), "{s}");
        assert!(s.contains("pkts ↑500 ↓495"), "{s}");
        assert!(s.contains("loss 1.0%"), "{s}");
        assert!(s.contains("jitter 2.3 ms"), "{s}");
        assert!(s.contains("rtt 12 ms"), "{s}");
        assert!(s.contains("in ▮▮▮▮▮ out ▯▯▯▯▯"), "{s}");
        assert!(s.contains("| MOS 4.3"), "{s}");
        assert!(s.ends_with("| MUTED"), "{s}");
        assert!(!s.contains('\n') && !s.contains('\r'));
    }

    #[test]
    fn render_before_media_is_short() {
        let v = StatusView {
            state: "ringing".into(),
            elapsed: Duration::from_millis(2500),
            ..StatusView::default()
        };
        assert_eq!(render(&v), "ringing     00:02");
        let v = StatusView {
            rtt_ms: None,
            held: true,
            muted: false,
            ..connected()
        };
        let s = render(&v);
        assert!(s.contains("rtt -") && s.ends_with("| HELD"), "{s}");
        let v = StatusView {
            received: 0,
            mos: None,
            ..connected()
        };
        let s = render(&v);
        assert!(s.contains("| no audio") && !s.contains("MOS"), "{s}");
        let locked = render(&StatusView {
            srtp: true,
            ..connected()
        });
        assert!(locked.contains("| 🔒 opus ↑32"), "{locked}");
    }

    #[test]
    fn keys_follow_the_newest_call_and_fall_back_to_the_one_before() {
        let mut live = Live::with_tty(false);
        let inc = |n| Event::Incoming {
            call: CallHandle::testing(n),
            call_id: format!("c{n}"),
            from: "a".into(),
            to: "b".into(),
            pushed: false,
        };
        let state = |n, state| Event::State {
            call: CallHandle::testing(n),
            call_id: format!("c{n}"),
            state,
        };
        live.on_event(&inc(1));
        live.on_event(&inc(2));
        assert_eq!(live.call, Some(CallHandle::testing(2)));
        live.on_event(&state(1, wakeline::CallState::Connected));
        assert_eq!(
            live.call,
            Some(CallHandle::testing(2)),
            "the older call keeps quiet"
        );
        live.on_event(&Event::Ended {
            call: CallHandle::testing(2),
            call_id: "c2".into(),
            status: Some(200),
            reason: "BYE".into(),
            outcome: wakeline::CallOutcome::Answered,
        });
        assert_eq!(
            live.call,
            Some(CallHandle::testing(1)),
            "back to the one before"
        );
    }

    #[test]
    fn meter_scales_in_db() {
        assert_eq!(meter(1.0, 5), "▮▮▮▮▮");
        assert_eq!(meter(0.0, 5), "▯▯▯▯▯");
        assert_eq!(meter(0.001, 4), "▯▯▯▯"); // −60 dBFS
        assert_eq!(meter(0.0316, 4), "▮▮▯▯"); // −30 dBFS
        assert_eq!(meter(5.0, 3), "▮▮▮");
    }

    #[test]
    fn loss_percent_handles_edges() {
        assert_eq!(loss_percent(0, 0), 0.0);
        assert_eq!(loss_percent(90, 10), 10.0);
        assert_eq!(loss_percent(10, -3), 0.0);
    }

    #[test]
    fn keys_map_to_actions() {
        assert_eq!(key_action('h', false), Some(KeyAction::Hangup));
        assert_eq!(key_action('a', false), Some(KeyAction::Answer));
        assert_eq!(key_action('r', false), Some(KeyAction::Reject));
        assert_eq!(key_action('m', false), Some(KeyAction::ToggleMute));
        assert_eq!(key_action('p', false), Some(KeyAction::ToggleHold));
        assert_eq!(key_action('7', false), Some(KeyAction::Dtmf('7')));
        assert_eq!(key_action('*', false), Some(KeyAction::Dtmf('*')));
        assert_eq!(key_action('#', false), Some(KeyAction::Dtmf('#')));
        assert_eq!(key_action('c', true), Some(KeyAction::Interrupt));
        assert_eq!(key_action('h', true), None);
        assert_eq!(key_action('x', false), None);
    }

    #[test]
    fn without_a_terminal_events_only_update_the_view() {
        let mut live = Live::with_tty(false);
        live.tick();
        assert!(!live.is_tty());
        assert!(live.keys.is_none());
    }
}
