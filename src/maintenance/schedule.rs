//! Crontab lines: the classic 5 fields (minute hour day month weekday) as well as the `cron`
//! crate's 6 or 7 (seconds first, optional year).

use chrono::{DateTime, Utc};
use std::str::FromStr;

#[derive(Clone, Debug)]
pub struct CronSchedule {
    pub text: String,
    schedule: cron::Schedule,
}

impl CronSchedule {
    pub fn parse(text: &str) -> Result<CronSchedule, String> {
        let fields = text.split_whitespace().count();
        let full = match fields {
            5 => format!("0 {}", text.trim()),
            6 | 7 => text.trim().to_string(),
            n => {
                return Err(format!(
                    "schedule {text:?} has {n} fields; write a crontab line (\"0 3 * * *\" = 03:00 daily) or 6-7 fields with seconds first"
                ))
            }
        };
        let schedule =
            cron::Schedule::from_str(&full).map_err(|e| format!("schedule {text:?}: {e}"))?;
        Ok(CronSchedule {
            text: text.trim().to_string(),
            schedule,
        })
    }

    /// The first run strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule.after(&after).next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn five_six_and_seven_fields() {
        let at = Utc.with_ymd_and_hms(2026, 11, 25, 2, 59, 30).unwrap();
        let daily = CronSchedule::parse("0 3 * * *").unwrap();
        assert_eq!(
            daily.next_after(at).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 25, 3, 0, 0).unwrap()
        );
        let every_10s = CronSchedule::parse("*/10 * * * * *").unwrap();
        assert_eq!(
            every_10s.next_after(at).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 25, 2, 59, 40).unwrap()
        );
        let yearly = CronSchedule::parse("0 0 0 1 1 * 2027").unwrap();
        assert_eq!(
            yearly.next_after(at).unwrap(),
            Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()
        );
    }

    #[test]
    fn bad_lines_say_what_is_expected() {
        assert!(CronSchedule::parse("* * *")
            .unwrap_err()
            .contains("3 fields"));
        assert!(CronSchedule::parse("0 25 * * *").is_err());
        assert!(CronSchedule::parse("every day").is_err());
    }
}
