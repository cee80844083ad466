//! The live line on stderr, about once a second: calls up, attempted/answered, INVITE→200
//! p50/p99, failures by code, mean MOS.

use super::stats::{self, CallResult};
use std::collections::BTreeMap;
use std::time::Duration;

/// What the line shows of the calls still running (with those that ended).
#[derive(Debug, Default)]
pub struct View {
    /// Calls answered and not ended.
    pub up: usize,
    /// Calls placed so far.
    pub attempted: usize,
    /// Calls to place in all.
    pub calls: usize,
    /// INVITE→200 of every call answered so far, ms.
    pub setup_ms: Vec<f64>,
    /// The latest MOS of every call that has one.
    pub mos: Vec<f64>,
}

/// Counts of ended calls, for the line.
#[derive(Debug, Default)]
pub struct Line {
    answered: usize,
    failed: BTreeMap<String, usize>,
}

impl Line {
    /// A call ended.
    pub fn ended(&mut self, r: &CallResult) {
        if r.answered {
            self.answered += 1;
        }
        if let Some(f) = &r.failure {
            *self.failed.entry(f.clone()).or_default() += 1;
        }
    }

    /// The line (no newline).
    pub fn render(&self, elapsed: Duration, v: &View) -> String {
        let s = stats::Percentiles::of(v.setup_ms.iter().copied());
        let ms = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.0}"));
        let mos = stats::Spread::of(v.mos.iter().copied());
        let failed = if self.failed.is_empty() {
            "0".to_string()
        } else {
            self.failed
                .iter()
                .map(|(k, n)| format!("{}×{n}", stats::failure_name(k)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        format!(
            "load {:>4}s: up {} | attempted {}/{} answered {} | setup p50 {} ms p99 {} ms | failed {} | MOS {}",
            elapsed.as_secs(),
            v.up,
            v.attempted,
            v.calls,
            self.answered + v.up,
            ms(s.p50),
            ms(s.p99),
            failed,
            mos.mean.map_or("-".into(), |m| format!("{m:.2}")),
        )
    }

    /// Prints the line on stderr.
    pub fn print(&self, elapsed: Duration, v: &View) {
        // After the log lines gathered so far (`cli/out.rs`).
        crate::cli::out::flush();
        eprintln!("{}", self.render(elapsed, v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_calls_setup_failures_and_mos() {
        let mut l = Line::default();
        l.ended(&CallResult {
            answered: true,
            ..CallResult::default()
        });
        l.ended(&CallResult {
            failure: Some("486".into()),
            ..CallResult::default()
        });
        let v = View {
            up: 3,
            attempted: 5,
            calls: 10,
            setup_ms: vec![2.0, 4.0, 3.0, 100.0],
            mos: vec![4.0, 4.4],
        };
        assert_eq!(
            l.render(Duration::from_secs(7), &v),
            "load    7s: up 3 | attempted 5/10 answered 4 | setup p50 3 ms p99 100 ms | \
             failed SIP 486×1 | MOS 4.20"
        );
        let empty = Line::default().render(Duration::ZERO, &View::default());
        assert!(
            empty.contains("setup p50 - ms") && empty.contains("MOS -"),
            "{empty}"
        );
    }
}
