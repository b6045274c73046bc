//! The master's config file (`datarun serve --config FILE`): scheduled maintenance.
//!
//! ```toml
//! [maintenance.health_check]
//! schedule = "*/30 * * * * *"   # every 30 s (6 fields: seconds first)
//!
//! [maintenance.backup]
//! schedule = "0 3 * * *"        # 03:00 daily (a crontab line)
//! dir = "backups"               # relative to the data dir
//! keep = 7
//!
//! [maintenance.purge]
//! schedule = "0 4 * * *"
//! retention = "30d"             # outputs and logs of ended folds older than this go
//!
//! [policy]
//! max_losses = 5                # runner losses a fold may take; past them it is held
//!
//! [policy.out_of_memory]        # release folds held for OOM with a larger grant
//! grow = 2.0                    # new grant = old grant x grow ...
//! ceiling = "8G"                # ... up to this; at the ceiling the fold stays held
//! ```

use super::schedule::CronSchedule;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    maintenance: Maintenance,
    #[serde(default)]
    policy: Policy,
    fair_share: Option<FairRaw>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FairRaw {
    #[serde(default = "default_true")]
    enabled: bool,
    half_life: Option<String>,
    max_running_per_owner: Option<u32>,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Policy {
    out_of_memory: Option<OomRaw>,
    max_losses: Option<u32>,
}

/// The most `[policy] max_losses` may be.
pub const MAX_LOSSES_LIMIT: u32 = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OomRaw {
    grow: f64,
    ceiling: String,
}

/// Releases folds held for running out of memory with a larger grant, up to a ceiling.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OomPolicy {
    pub grow: f64,
    pub ceiling: u64,
}

impl OomPolicy {
    /// The next grant after `memory` ran out, or None at the ceiling.
    pub fn next_grant(&self, memory: u64) -> Option<u64> {
        let grown = ((memory as f64) * self.grow).min(self.ceiling as f64) as u64;
        (grown > memory).then_some(grown)
    }
}

/// Everything in the master's config file.
#[derive(Clone, Debug)]
pub struct MasterFile {
    pub jobs: Vec<Job>,
    pub oom: Option<OomPolicy>,
    /// Fair share's usage half-life; None turns fair share off (`[fair_share] enabled = false`).
    pub fair_share: Option<Duration>,
    /// At most this many folds of one owner run at once.
    pub owner_cap: Option<u32>,
    /// Runner losses (crashes, partitions) a fold may take before it is held `lost_too_often`.
    pub max_losses: u32,
}

/// Fair share is on by default, with usage halving every hour.
pub const DEFAULT_HALF_LIFE: Duration = Duration::from_secs(3600);

impl Default for MasterFile {
    fn default() -> Self {
        MasterFile {
            jobs: Vec::new(),
            oom: None,
            fair_share: Some(DEFAULT_HALF_LIFE),
            owner_cap: None,
            max_losses: crate::store::DEFAULT_MAX_LOSSES,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Maintenance {
    health_check: Option<HealthRaw>,
    backup: Option<BackupRaw>,
    purge: Option<PurgeRaw>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthRaw {
    schedule: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupRaw {
    schedule: String,
    dir: PathBuf,
    #[serde(default = "default_keep")]
    keep: usize,
}

fn default_keep() -> usize {
    7
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeRaw {
    schedule: String,
    retention: String,
}

#[derive(Clone, Debug)]
pub enum Task {
    HealthCheck,
    Backup { dir: PathBuf, keep: usize },
    Purge { retention: Duration },
}

#[derive(Clone, Debug)]
pub struct Job {
    pub name: &'static str,
    pub schedule: CronSchedule,
    pub task: Task,
}

/// Parses a config file's text. `data_dir` anchors relative paths; `file` names errors.
pub fn parse(text: &str, file: &str, data_dir: &Path) -> Result<MasterFile, String> {
    let raw: File = toml::from_str(text).map_err(|e| format!("{file}: {e}"))?;
    let oom = match raw.policy.out_of_memory {
        None => None,
        Some(o) => {
            if !(o.grow.is_finite() && o.grow > 1.0) {
                return Err(format!("{file}: policy.out_of_memory.grow: {} must be more than 1 (e.g. 2.0 doubles the grant)", o.grow));
            }
            let ceiling = crate::units::parse_size(&o.ceiling)
                .map_err(|e| format!("{file}: policy.out_of_memory.ceiling: {e}"))?;
            Some(OomPolicy {
                grow: o.grow,
                ceiling,
            })
        }
    };
    let max_losses = raw
        .policy
        .max_losses
        .unwrap_or(crate::store::DEFAULT_MAX_LOSSES);
    if max_losses > MAX_LOSSES_LIMIT {
        return Err(format!(
            "{file}: policy.max_losses: {max_losses} is more than {MAX_LOSSES_LIMIT}"
        ));
    }
    let at = |what: &str, e: String| format!("{file}: maintenance.{what}: {e}");
    let mut jobs = Vec::new();
    let m = raw.maintenance;
    if let Some(h) = m.health_check {
        let schedule =
            CronSchedule::parse(&h.schedule).map_err(|e| at("health_check.schedule", e))?;
        jobs.push(Job {
            name: "health_check",
            schedule,
            task: Task::HealthCheck,
        });
    }
    if let Some(b) = m.backup {
        let schedule = CronSchedule::parse(&b.schedule).map_err(|e| at("backup.schedule", e))?;
        if b.keep == 0 {
            return Err(at("backup.keep", "must keep at least 1 backup".into()));
        }
        let dir = if b.dir.is_absolute() {
            b.dir
        } else {
            data_dir.join(b.dir)
        };
        jobs.push(Job {
            name: "backup",
            schedule,
            task: Task::Backup { dir, keep: b.keep },
        });
    }
    if let Some(p) = m.purge {
        let schedule = CronSchedule::parse(&p.schedule).map_err(|e| at("purge.schedule", e))?;
        let retention =
            crate::units::parse_duration(&p.retention).map_err(|e| at("purge.retention", e))?;
        jobs.push(Job {
            name: "purge",
            schedule,
            task: Task::Purge { retention },
        });
    }
    let owner_cap = raw
        .fair_share
        .as_ref()
        .and_then(|f| f.max_running_per_owner);
    if owner_cap == Some(0) {
        return Err(format!(
            "{file}: fair_share.max_running_per_owner: must be at least 1"
        ));
    }
    let fair_share = match raw.fair_share {
        None => Some(DEFAULT_HALF_LIFE),
        Some(FairRaw { enabled: false, .. }) => None,
        Some(FairRaw {
            half_life: None, ..
        }) => Some(DEFAULT_HALF_LIFE),
        Some(FairRaw {
            half_life: Some(h), ..
        }) => {
            let h = crate::units::parse_duration(&h)
                .map_err(|e| format!("{file}: fair_share.half_life: {e}"))?;
            if h.is_zero() {
                return Err(format!(
                    "{file}: fair_share.half_life: must be longer than 0s"
                ));
            }
            Some(h)
        }
    };
    Ok(MasterFile {
        jobs,
        oom,
        fair_share,
        owner_cap,
        max_losses,
    })
}

pub fn load(path: &Path, data_dir: &Path) -> Result<MasterFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read it: {e}", path.display()))?;
    parse(&text, &path.display().to_string(), data_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_config() {
        let text = "[maintenance.health_check]\nschedule = \"*/30 * * * * *\"\n[maintenance.backup]\nschedule = \"0 3 * * *\"\ndir = \"b\"\nkeep = 3\n[maintenance.purge]\nschedule = \"0 4 * * *\"\nretention = \"30d\"\n";
        let jobs = parse(text, "m.toml", Path::new("/data")).unwrap().jobs;
        assert_eq!(
            jobs.iter().map(|j| j.name).collect::<Vec<_>>(),
            ["health_check", "backup", "purge"]
        );
        assert!(
            matches!(&jobs[1].task, Task::Backup { dir, keep: 3 } if dir == Path::new("/data/b"))
        );
        assert!(
            matches!(jobs[2].task, Task::Purge { retention } if retention.as_secs() == 30 * 86400)
        );
    }

    #[test]
    fn oom_policy() {
        let cfg = parse(
            "[policy.out_of_memory]\ngrow = 2.0\nceiling = \"1G\"\n",
            "m.toml",
            Path::new("/d"),
        )
        .unwrap();
        let p = cfg.oom.unwrap();
        assert_eq!(p.next_grant(256 << 20), Some(512 << 20));
        assert_eq!(p.next_grant(768 << 20), Some(1 << 30));
        assert_eq!(p.next_grant(1 << 30), None, "at the ceiling");
        let e = parse(
            "[policy.out_of_memory]\ngrow = 0.5\nceiling = \"1G\"\n",
            "m.toml",
            Path::new("/d"),
        )
        .unwrap_err();
        assert!(e.contains("policy.out_of_memory.grow"), "{e}");
    }

    #[test]
    fn max_losses_policy() {
        let d = Path::new("/d");
        assert_eq!(parse("", "m.toml", d).unwrap().max_losses, 5, "the default");
        let cfg = parse("[policy]\nmax_losses = 0\n", "m.toml", d).unwrap();
        assert_eq!(cfg.max_losses, 0, "0: the first loss holds the fold");
        let e = parse("[policy]\nmax_losses = 1001\n", "m.toml", d).unwrap_err();
        assert!(
            e.contains("m.toml: policy.max_losses") && e.contains("1000"),
            "{e}"
        );
        let e = parse("[policy]\nmax_losses = -1\n", "m.toml", d).unwrap_err();
        assert!(e.contains("max_losses"), "{e}");
    }

    #[test]
    fn errors_name_the_file_and_key() {
        let e = parse(
            "[maintenance.backup]\nschedule = \"0 3 * * *\"\ndir = \"b\"\ncolour = 1\n",
            "m.toml",
            Path::new("/d"),
        )
        .unwrap_err();
        assert!(
            e.contains("m.toml") && e.contains("colour") && e.contains("line 4"),
            "{e}"
        );
        let e = parse(
            "[maintenance.purge]\nschedule = \"0 4 * *\"\nretention = \"1d\"\n",
            "m.toml",
            Path::new("/d"),
        )
        .unwrap_err();
        assert!(e.contains("maintenance.purge.schedule"), "{e}");
        let e = parse(
            "[maintenance.purge]\nschedule = \"0 4 * * *\"\nretention = \"soon\"\n",
            "m.toml",
            Path::new("/d"),
        )
        .unwrap_err();
        assert!(e.contains("maintenance.purge.retention"), "{e}");
    }
}
