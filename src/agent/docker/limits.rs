//! Time limits on the agent's own clock, and how an ended container becomes an Outcome.

use crate::model::Outcome;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// Time between SIGTERM and SIGKILL when only a soft limit is set.
pub const TERM_GRACE: Duration = Duration::from_secs(10);

/// Why datarun signalled the fold; it decides the outcome over the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    SoftLimit,
    HardLimit,
    Cancelled,
}

/// The signals a container gets from the engine's kill call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Term,
    Kill,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Term => "SIGTERM",
            Signal::Kill => "SIGKILL",
        }
    }
}

/// The time limits and the signals sent so far.
#[derive(Debug)]
pub struct Limits {
    pub soft_at: Option<Instant>,
    pub hard_at: Option<Instant>,
    pub reason: Option<Reason>,
    pub killed: bool,
}

impl Limits {
    /// Deadlines counted from `start`, the moment the container started (for an adopted
    /// container, the engine's StartedAt mapped onto this clock).
    pub fn new(start: Instant, soft: Option<Duration>, hard: Option<Duration>) -> Limits {
        Limits {
            soft_at: soft.map(|d| start + d),
            hard_at: hard.map(|d| start + d),
            reason: None,
            killed: false,
        }
    }

    /// When a limit next falls due, if one is left.
    pub fn next_deadline(&self) -> Option<Instant> {
        match (self.killed, self.reason) {
            (true, _) => None,
            (false, Some(_)) => self.hard_at, // SIGTERM sent: only the hard kill is left
            (false, None) => [self.soft_at, self.hard_at].into_iter().flatten().min(),
        }
    }

    /// The signal the time limits call for at `now`, recorded as sent.
    pub fn due(&mut self, now: Instant) -> Option<Signal> {
        if self.hard_at.is_some_and(|t| now >= t) {
            return self.kill(Reason::HardLimit);
        }
        if self.reason.is_none() && self.soft_at.is_some_and(|t| now >= t) {
            self.reason = Some(Reason::SoftLimit);
            self.hard_at.get_or_insert(now + TERM_GRACE);
            return Some(Signal::Term);
        }
        None
    }

    /// SIGKILL for `reason`, unless the fold was already killed.
    pub fn kill(&mut self, reason: Reason) -> Option<Signal> {
        if self.killed {
            return None;
        }
        self.killed = true;
        self.reason = Some(reason);
        Some(Signal::Kill)
    }
}

/// How an ended container's attempt ended. The engine's OOMKilled flag (any process of the
/// container killed by the cgroup's OOM killer) means OutOfMemory whatever the exit code: the
/// fold went over its grant. Exit codes are reported as they are: 137 is not guessed to be
/// an OOM kill nor a signal (the container's init exits with 128+n when its child dies of n).
pub fn outcome(reason: Option<Reason>, oom_killed: bool, exit_code: i64) -> Outcome {
    match reason {
        Some(Reason::Cancelled) => Outcome::Cancelled,
        _ if oom_killed => Outcome::OutOfMemory,
        Some(Reason::HardLimit) => Outcome::TimedOutHard,
        Some(Reason::SoftLimit) => Outcome::TimedOutSoft,
        None if exit_code == 0 => Outcome::Success,
        None => Outcome::ExitCode {
            code: i32::try_from(exit_code).unwrap_or(i32::MAX),
        },
    }
}

/// An engine timestamp ("2024-05-01T10:11:12.123456789Z"); None for the zero time
/// ("0001-01-01T00:00:00Z", never started or not finished) and anything unreadable.
pub fn parse_time(text: &str) -> Option<SystemTime> {
    let t = humantime::parse_rfc3339_weak(text).ok()?;
    (t > SystemTime::UNIX_EPOCH).then_some(t)
}

/// `then` on the wall clock as an Instant on the monotonic clock.
pub fn instant_of(then: SystemTime) -> Instant {
    let now = Instant::now();
    match SystemTime::now().duration_since(then) {
        Ok(ago) => now.checked_sub(ago).unwrap_or(now),
        Err(ahead) => now + ahead.duration(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_limit_alone_terms_then_kills_after_the_grace() {
        let t0 = Instant::now();
        let mut limits = Limits::new(t0, Some(Duration::from_secs(5)), None);
        assert_eq!(limits.next_deadline(), Some(t0 + Duration::from_secs(5)));
        assert_eq!(limits.due(t0 + Duration::from_secs(4)), None);
        let term_at = t0 + Duration::from_secs(6);
        assert_eq!(limits.due(term_at), Some(Signal::Term));
        assert_eq!(limits.next_deadline(), Some(term_at + TERM_GRACE));
        assert_eq!(limits.due(term_at + TERM_GRACE), Some(Signal::Kill));
        assert_eq!(limits.reason, Some(Reason::HardLimit));
        assert_eq!(limits.next_deadline(), None);
    }

    #[test]
    fn deadlines_in_the_past_fall_due_at_once() {
        // An adopted container that started long ago: the hard limit wins over the soft.
        let now = Instant::now();
        let start = now - Duration::from_secs(100);
        let mut limits = Limits::new(
            start,
            Some(Duration::from_secs(5)),
            Some(Duration::from_secs(9)),
        );
        assert!(limits.next_deadline().unwrap() <= now);
        assert_eq!(limits.due(now), Some(Signal::Kill));
        assert_eq!(limits.reason, Some(Reason::HardLimit));
        assert_eq!(limits.kill(Reason::Cancelled), None);
    }

    #[test]
    fn outcomes_read_the_state_not_the_exit_code() {
        assert_eq!(outcome(None, false, 0), Outcome::Success);
        assert_eq!(outcome(None, false, 3), Outcome::ExitCode { code: 3 });
        assert_eq!(outcome(None, false, 137), Outcome::ExitCode { code: 137 });
        assert_eq!(outcome(None, true, 137), Outcome::OutOfMemory);
        assert_eq!(outcome(None, true, 0), Outcome::OutOfMemory);
        assert_eq!(
            outcome(Some(Reason::SoftLimit), false, 0),
            Outcome::TimedOutSoft
        );
        assert_eq!(
            outcome(Some(Reason::HardLimit), false, 137),
            Outcome::TimedOutHard
        );
        assert_eq!(
            outcome(Some(Reason::HardLimit), true, 137),
            Outcome::OutOfMemory
        );
        assert_eq!(
            outcome(Some(Reason::Cancelled), true, 137),
            Outcome::Cancelled
        );
    }

    #[test]
    fn engine_timestamps() {
        let t = parse_time("2024-05-01T10:11:12.5Z").unwrap();
        let u = parse_time("2024-05-01T10:11:14.75Z").unwrap();
        assert_eq!(u.duration_since(t).unwrap(), Duration::from_millis(2250));
        let nanos = parse_time("2024-05-01T10:11:12.123456789Z").unwrap();
        assert_eq!(
            t.duration_since(nanos).unwrap(),
            Duration::from_nanos(376_543_211)
        );
        assert_eq!(parse_time("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_time(""), None);
        let ago = SystemTime::now() - Duration::from_secs(30);
        let i = instant_of(ago);
        let elapsed = i.elapsed();
        assert!(elapsed >= Duration::from_secs(29) && elapsed < Duration::from_secs(31));
    }
}
