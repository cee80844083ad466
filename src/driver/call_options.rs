//! Typed arguments of the per-call API: [`Hold`] and [`AudioSession`].

/// Hold or resume a call ([`Call::hold`](super::Call::hold)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hold {
    /// Put the call on hold: a re-INVITE with `a=sendonly` (the far end hears nothing).
    On,
    /// Resume it: a re-INVITE with `a=sendrecv`.
    Off,
}

impl Hold {
    /// `true` for [`Hold::On`].
    pub fn is_on(self) -> bool {
        self == Hold::On
    }
}

impl From<bool> for Hold {
    /// `true` is [`Hold::On`].
    fn from(on: bool) -> Self {
        if on {
            Hold::On
        } else {
            Hold::Off
        }
    }
}

/// Who starts a call's audio I/O (the device or file backends): wakeline, or the app.
///
/// CallKit (iOS) activates the audio session itself and tells the app in
/// `provider(_:didActivate:)`; the app must not touch the microphone or speaker before that.
/// With [`AudioSession::Manual`] RTP flows from the answer on — silence goes out, and what
/// arrives is decoded (statistics, DTMF and a recording keep working) and then discarded —
/// but the call's audio source and sink open only on
/// [`Call::audio_session_activated`](super::Call::audio_session_activated), close on
/// [`Call::audio_session_deactivated`](super::Call::audio_session_deactivated), and may be
/// activated again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AudioSession {
    /// The audio I/O starts with the call's media and stops when the call ends (the default).
    #[default]
    Automatic,
    /// The audio I/O runs only between the app's activated and deactivated calls.
    Manual,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_converts_from_the_old_flag() {
        assert_eq!(Hold::from(true), Hold::On);
        assert_eq!(Hold::from(false), Hold::Off);
        assert!(Hold::On.is_on() && !Hold::Off.is_on());
        assert_eq!(AudioSession::default(), AudioSession::Automatic);
    }
}
