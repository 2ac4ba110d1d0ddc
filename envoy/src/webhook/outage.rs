//! The webhook's record of its receiver's outages, so that failed attempts
//! are logged once per outage rather than once per action per retry: a
//! warning when the receiver first fails, a summary at most every
//! [`SUMMARY_EVERY`] while it stays down, and a line when it answers again.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The shortest time between two "still unreachable" summaries.
pub(super) const SUMMARY_EVERY: Duration = Duration::from_secs(30);

/// One receiver's outage, if it is down; shared by the deliveries of one
/// webhook envoy.
#[derive(Debug, Default)]
pub(super) struct Outages {
    down: Mutex<Option<Down>>,
}

/// An outage under way.
#[derive(Clone, Copy, Debug)]
struct Down {
    /// The first failed attempt.
    since: Instant,
    /// Failed attempts so far.
    failures: u64,
    /// When it was last logged.
    reported: Instant,
}

/// What to log about a failed attempt.
#[derive(Debug, PartialEq)]
pub(super) enum Report {
    /// The receiver has just gone down.
    Down,
    /// It is still down, for this long, after this many failed attempts.
    StillDown(Duration, u64),
    /// Nothing: it was logged recently.
    Quiet,
}

impl Outages {
    /// Notes a failed attempt at `now`.
    pub(super) fn failed(&self, now: Instant) -> Report {
        let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        let Some(d) = down.as_mut() else {
            *down = Some(Down { since: now, failures: 1, reported: now });
            return Report::Down;
        };
        d.failures += 1;
        if now.saturating_duration_since(d.reported) < SUMMARY_EVERY {
            return Report::Quiet;
        }
        d.reported = now;
        Report::StillDown(now.saturating_duration_since(d.since), d.failures)
    }

    /// Notes that the receiver answered at `now`: how long it was down and
    /// after how many failed attempts, if it was.
    pub(super) fn answered(&self, now: Instant) -> Option<(Duration, u64)> {
        let d = self.down.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        Some((now.saturating_duration_since(d.since), d.failures))
    }
}

/// `d` in seconds, one decimal: `12.3 s`.
pub(super) fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_outage_then_a_summary_at_most_every_30_s() {
        let o = Outages::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(o.answered(t0), None, "it was never down");
        assert_eq!(o.failed(at(0)), Report::Down);
        for s in 1..30 {
            assert_eq!(o.failed(at(s)), Report::Quiet);
        }
        assert_eq!(o.failed(at(31)), Report::StillDown(Duration::from_secs(31), 31));
        assert_eq!(o.failed(at(40)), Report::Quiet);
        assert_eq!(o.failed(at(61)), Report::StillDown(Duration::from_secs(61), 33));
        assert_eq!(o.answered(at(70)), Some((Duration::from_secs(70), 33)));
        assert_eq!(o.answered(at(71)), None, "the outage is over");
        assert_eq!(o.failed(at(80)), Report::Down, "a new outage");
    }
}
