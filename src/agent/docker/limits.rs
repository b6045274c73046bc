//! How an ended container becomes an Outcome (the time limits themselves are shared by every
//! executor: `agent::limits`).

use crate::model::Outcome;
use std::time::SystemTime;
use tokio::time::Instant;

pub use crate::agent::limits::{Limits, Reason, Signal};

/// How an ended container's attempt ended. The engine's OOMKilled flag (any process of the
/// container killed by the cgroup's OOM killer) means OutOfMemory whatever the exit code: the
/// fold went over its grant. Exit codes are reported as they are: 137 is not guessed to be
/// an OOM kill nor a signal (the container's init exits with 128+n when its child dies of n).
pub fn outcome(reason: Option<Reason>, oom_killed: bool, exit_code: i64) -> Outcome {
    match reason {
        Some(Reason::Cancelled) => Outcome::Cancelled,
        Some(Reason::OutputLimit(over)) => over.outcome(),
        _ if oom_killed => Outcome::OutOfMemory,
        Some(Reason::HardLimit) => Outcome::TimedOutHard,
        Some(Reason::SoftLimit) => Outcome::TimedOutSoft,
        Some(Reason::OutOfMemory) => Outcome::OutOfMemory,
        None if exit_code == 0 => Outcome::Success,
        None => Outcome::ExitCode {
            code: i32::try_from(exit_code).unwrap_or(i32::MAX),
        },
    }
}

/// Whether an ended container's state may still turn into an OOM kill the engine has not
/// reported yet: it died of SIGKILL (137) that datarun did not send (the soft limit's
/// SIGTERM does not explain a SIGKILL) and the engine does not say OOMKilled (yet).
pub fn may_be_late_oom(reason: Option<Reason>, oom_killed: bool, exit_code: i64) -> bool {
    matches!(reason, None | Some(Reason::SoftLimit)) && exit_code == 137 && !oom_killed
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
    use std::time::Duration;

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
    fn only_a_sigkill_datarun_did_not_send_waits_for_a_late_oom_report() {
        // Nothing signalled, or only the soft limit's SIGTERM: a 137 may be the OOM killer.
        assert!(may_be_late_oom(None, false, 137));
        assert!(may_be_late_oom(Some(Reason::SoftLimit), false, 137));
        // The engine already said so, or the exit was not a SIGKILL.
        assert!(!may_be_late_oom(None, true, 137));
        assert!(!may_be_late_oom(None, false, 0));
        assert!(!may_be_late_oom(None, false, 143));
        assert!(!may_be_late_oom(Some(Reason::SoftLimit), false, 143));
        // datarun's own SIGKILL explains it.
        for r in [Reason::HardLimit, Reason::Cancelled, Reason::OutOfMemory] {
            assert!(!may_be_late_oom(Some(r), false, 137), "{r:?}");
        }
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
