//! The members of a JSON object written one by one, to an `--events` line or into a JSON
//! value (the `--summary` file's report): one list of members serves both.
//!
//! A line is written as serde_json would write it, for less: each value goes through
//! serde_json (the same escaping and number formatting), but the names are written as they
//! are, already quoted ([`key!`] makes `,"name":` at compile time), where a serializer
//! would escape every name of every line and keep a state machine between members.

use serde::Serialize;
use serde_json::{Map, Value};

/// Where members go: an event line ([`Line`]) or a JSON object ([`ValueMembers`]).
pub trait Members {
    /// Adds `value` under a name, given as it is written after another member: `,"name":`
    /// ([`key!`] writes it from the name).
    fn member<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T);

    /// Adds a string under a name, as [`member`](Self::member) would.
    fn text(&mut self, key: &'static str, value: &str);

    /// Adds a number under a name, as [`member`](Self::member) would.
    fn count(&mut self, key: &'static str, value: u64);

    /// Adds an `f64` under a name, as [`member`](Self::member) would.
    fn real(&mut self, key: &'static str, value: f64);

    /// Adds an object under a name (given as for [`member`](Self::member)); `fill` adds its
    /// members.
    fn object(&mut self, key: &'static str, fill: impl FnOnce(&mut Self));
}

/// `key!("name")`: a member's name as the [`Members`] methods take it, `,"name":`, made at
/// compile time; the name must need no escaping (a plain word).
macro_rules! key {
    ($name:literal) => {
        concat!(",\"", $name, "\":")
    };
}
pub(crate) use key;

/// The bare name in a key as [`key!`] makes it (`,"name":`).
fn name(key: &'static str) -> &'static str {
    key.strip_prefix(",\"")
        .and_then(|k| k.strip_suffix("\":"))
        .unwrap_or(key)
}

/// Whether serde_json escapes anything in `s` (a control character, `"`, `\\`); every byte is
/// looked at, which the compiler turns into a few wide comparisons.
fn needs_escape(s: &str) -> bool {
    s.bytes().fold(false, |any, b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    })
}

/// One `--events` line being written: `{"event":"<name>"`, the members, then [`Line::end`]
/// adds the time and closes it.
pub struct Line<'a> {
    out: &'a mut Vec<u8>,
    failed: Option<serde_json::Error>,
}

impl<'a> Line<'a> {
    /// Starts the line of event `event` (a plain word: nothing to escape) at the end of `out`.
    pub fn start(out: &'a mut Vec<u8>, event: &str) -> Self {
        out.extend_from_slice(b"{\"event\":\"");
        out.extend_from_slice(event.as_bytes());
        out.push(b'"');
        Line { out, failed: None }
    }

    /// The time the line was written, `,"ts":"..."}`; or the first error a value gave.
    pub fn end(self) -> serde_json::Result<()> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        self.out.extend_from_slice(b",\"ts\":\"");
        super::clock::push_now_ms(self.out);
        self.out.extend_from_slice(b"\"}");
        Ok(())
    }

    /// Adds the members of `body`, which serializes as a JSON object (for the rare events,
    /// which go through a JSON value).
    pub fn splice<T: Serialize + ?Sized>(&mut self, body: &T) {
        let open = self.out.len();
        if let Err(e) = serde_json::to_writer(&mut *self.out, body) {
            self.failed.get_or_insert(e);
            return;
        }
        if self.out.len() - open <= 2 {
            // `{}`: no members.
            self.out.truncate(open);
        } else {
            // `{"a":1}` becomes `,"a":1`.
            self.out[open] = b',';
            self.out.pop();
        }
    }
}

impl Members for Line<'_> {
    // Inlined: the name, a constant, is then copied without a call.
    #[inline(always)]
    fn member<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) {
        self.out.extend_from_slice(key.as_bytes());
        if let Err(e) = serde_json::to_writer(&mut *self.out, value) {
            self.failed.get_or_insert(e);
        }
    }

    #[inline(always)]
    fn text(&mut self, key: &'static str, value: &str) {
        if !needs_escape(value) {
            self.out.extend_from_slice(key.as_bytes());
            self.out.push(b'"');
            self.out.extend_from_slice(value.as_bytes());
            self.out.push(b'"');
        } else {
            self.member(key, value);
        }
    }

    #[inline(always)]
    fn count(&mut self, key: &'static str, value: u64) {
        if value < 10 {
            // Most counters of a short call are 0.
            self.out.extend_from_slice(key.as_bytes());
            self.out.push(b'0' + value as u8);
        } else {
            self.member(key, &value);
        }
    }

    #[inline(always)]
    fn real(&mut self, key: &'static str, value: f64) {
        if value == 0.0 && value.is_sign_positive() {
            // Many figures of a short call are 0, which serde_json writes so.
            self.out.extend_from_slice(key.as_bytes());
            self.out.extend_from_slice(b"0.0");
        } else {
            self.member(key, &value);
        }
    }

    fn object(&mut self, key: &'static str, fill: impl FnOnce(&mut Self)) {
        self.out.extend_from_slice(key.as_bytes());
        let open = self.out.len();
        fill(self);
        if self.out.len() == open {
            self.out.push(b'{');
        } else {
            // The first member's comma opens the object.
            self.out[open] = b'{';
        }
        self.out.push(b'}');
    }
}

/// Members gathered into a JSON object, each value as `serde_json::to_value` makes it.
#[derive(Default)]
pub struct ValueMembers(pub Map<String, Value>);

impl Members for ValueMembers {
    fn member<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) {
        let value = serde_json::to_value(value).unwrap_or(Value::Null);
        self.0.insert(name(key).to_owned(), value);
    }

    fn text(&mut self, key: &'static str, value: &str) {
        self.0
            .insert(name(key).to_owned(), Value::String(value.to_owned()));
    }

    fn count(&mut self, key: &'static str, value: u64) {
        self.0.insert(name(key).to_owned(), Value::from(value));
    }

    fn real(&mut self, key: &'static str, value: f64) {
        self.member(key, &value);
    }

    fn object(&mut self, key: &'static str, fill: impl FnOnce(&mut Self)) {
        let mut inner = ValueMembers::default();
        fill(&mut inner);
        self.0.insert(name(key).to_owned(), Value::Object(inner.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill<M: Members>(m: &mut M) {
        m.member(key!("text"), "a \"b\"\n");
        m.text(key!("plain"), "sip:é@h;tag=1");
        m.text(key!("escaped"), "\\ \"q\" \t\u{1}");
        m.member(key!("n"), &7u64);
        m.count(key!("zero"), 0);
        m.count(key!("nine"), 9);
        m.count(key!("ten"), 10);
        m.count(key!("big"), u64::MAX);
        m.real(key!("zero_f"), 0.0);
        m.real(key!("minus_zero"), -0.0);
        m.real(key!("nan"), f64::NAN);
        m.real(key!("third"), 1.0 / 3.0);
        m.member(key!("x"), &0.1f64);
        m.member(key!("none"), &None::<f64>);
        m.object(key!("inner"), |m| {
            m.member(key!("one"), &1u8);
            m.member(key!("two"), &-2i64);
        });
        m.object(key!("empty"), |_| {});
    }

    #[test]
    fn only_what_serde_json_escapes_needs_escaping() {
        for s in [
            "",
            "plain é 日本 \u{7f} \u{9b}",
            "\"",
            "\\",
            "\n",
            "\u{1f}",
            "a\tb",
        ] {
            let plain = format!("\"{s}\"");
            assert_eq!(
                !needs_escape(s),
                serde_json::to_string(s).unwrap() == plain,
                "{s:?}"
            );
        }
    }

    #[test]
    fn a_line_reads_as_serde_json_writes_the_same_members() {
        let mut out = Vec::new();
        let mut line = Line::start(&mut out, "test");
        fill(&mut line);
        line.splice(&serde_json::json!({"last": true}));
        line.splice(&serde_json::json!({}));
        line.end().unwrap();
        let text = String::from_utf8(out).unwrap();
        let (body, _) = text.rsplit_once(",\"ts\":").unwrap();
        assert_eq!(
            body,
            r#"{"event":"test","text":"a \"b\"\n","plain":"sip:é@h;tag=1","escaped":"\\ \"q\" \t\u0001","n":7,"zero":0,"nine":9,"ten":10,"big":18446744073709551615,"zero_f":0.0,"minus_zero":-0.0,"nan":null,"third":0.3333333333333333,"x":0.1,"none":null,"inner":{"one":1,"two":-2},"empty":{},"last":true"#
        );
        let mut value = ValueMembers::default();
        fill(&mut value);
        value.0.insert("last".into(), Value::Bool(true));
        let parsed: Value = serde_json::from_str(&text).unwrap();
        for (k, v) in &value.0 {
            assert_eq!(&parsed[k], v, "{k}");
        }
    }
}
