//! Time limits on the agent's own clock, shared by every executor: the soft limit sends
//! SIGTERM, the hard limit (or `TERM_GRACE` after SIGTERM when there is no hard limit) SIGKILL,
//! and the reason datarun signalled decides the outcome over the exit status.

use std::time::Duration;
use tokio::time::Instant;

/// Time between SIGTERM and SIGKILL when only a soft limit is set.
pub const TERM_GRACE: Duration = Duration::from_secs(10);

/// Why datarun signalled the fold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    SoftLimit,
    HardLimit,
    OutOfMemory,
    Cancelled,
    /// Its outputs went over the output limit.
    OutputLimit(super::outputs::Over),
}

/// The signals datarun sends a fold.
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

    pub fn number(self) -> libc::c_int {
        match self {
            Signal::Term => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
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
    /// Deadlines counted from `start`, the moment the fold started (for an adopted container,
    /// the engine's StartedAt mapped onto this clock).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_are_the_unix_ones() {
        assert_eq!(Signal::Term.number(), libc::SIGTERM);
        assert_eq!(Signal::Kill.number(), libc::SIGKILL);
    }

    #[test]
    fn soft_limit_alone_terms_then_kills_after_the_grace() {
        let t0 = Instant::now();
        let mut limits = Limits::new(t0, Some(Duration::from_secs(5)), None);
        assert_eq!(limits.next_deadline(), Some(t0 + Duration::from_secs(5)));
        assert_eq!(limits.due(t0 + Duration::from_secs(4)), None);
        let term_at = t0 + Duration::from_secs(6);
        assert_eq!(limits.due(term_at), Some(Signal::Term));
        assert_eq!(limits.next_deadline(), Some(term_at + TERM_GRACE));
        assert_eq!(limits.due(term_at + Duration::from_secs(1)), None);
        assert_eq!(limits.due(term_at + TERM_GRACE), Some(Signal::Kill));
        assert_eq!(limits.reason, Some(Reason::HardLimit));
        assert_eq!(limits.next_deadline(), None);
    }

    #[test]
    fn hard_limit_kills_once_and_other_kills_keep_their_reason() {
        let t0 = Instant::now();
        let (soft, hard) = (Some(Duration::from_secs(1)), Some(Duration::from_secs(3)));
        let mut limits = Limits::new(t0, soft, hard);
        assert_eq!(limits.due(t0 + Duration::from_secs(1)), Some(Signal::Term));
        assert_eq!(limits.next_deadline(), Some(t0 + Duration::from_secs(3)));
        assert_eq!(limits.kill(Reason::OutOfMemory), Some(Signal::Kill));
        assert_eq!(limits.due(t0 + Duration::from_secs(3)), None);
        assert_eq!(limits.kill(Reason::Cancelled), None);
        assert_eq!(limits.reason, Some(Reason::OutOfMemory));

        let mut hard_only = Limits::new(t0, None, hard);
        assert_eq!(
            hard_only.due(t0 + Duration::from_secs(3)),
            Some(Signal::Kill)
        );
        assert_eq!(hard_only.reason, Some(Reason::HardLimit));
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
}
