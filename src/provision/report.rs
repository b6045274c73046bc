//! What a provisioning run reports: per host and step, live progress lines, and the summary
//! table.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::table::Table;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Nothing to change.
    Ok,
    /// Something changed (or, with `--check`, would change).
    Changed,
    Failed,
    /// The host's sshd could not be reached (no route, refused, timed out, handshake lost).
    Unreachable,
}

impl Status {
    pub fn word(self, check: bool) -> &'static str {
        match (self, check) {
            (Status::Ok, _) => "ok",
            (Status::Changed, false) => "changed",
            (Status::Changed, true) => "would change",
            (Status::Failed, _) => "failed",
            (Status::Unreachable, _) => "unreachable",
        }
    }
}

/// One step on one host.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepReport {
    pub step: String,
    pub status: Status,
    pub changes: Vec<String>,
    pub notes: Vec<String>,
    /// What the step found, for people (`Linux x86_64, debian 12`, the engine's version).
    pub detail: Option<String>,
    pub elapsed_ms: u64,
}

/// Why a host failed: the step (`connect` for SSH itself), the reason, and the end of the
/// step's output.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Failure {
    pub step: String,
    pub reason: String,
    pub output: String,
}

/// One host's run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HostReport {
    pub name: String,
    pub address: String,
    pub status: Status,
    /// `step: what` for every change made (or, with `--check`, that would be made).
    pub changes: Vec<String>,
    pub steps: Vec<StepReport>,
    pub facts: BTreeMap<String, String>,
    pub elapsed_ms: u64,
    pub failure: Option<Failure>,
}

impl HostReport {
    pub fn new(name: &str, address: &str) -> HostReport {
        HostReport {
            name: name.to_string(),
            address: address.to_string(),
            status: Status::Ok,
            changes: Vec::new(),
            steps: Vec::new(),
            facts: BTreeMap::new(),
            elapsed_ms: 0,
            failure: None,
        }
    }

    pub fn push(&mut self, step: StepReport) {
        self.changes.extend(
            step.changes
                .iter()
                .map(|what| format!("{}: {what}", step.step)),
        );
        if step.status == Status::Changed && self.status == Status::Ok {
            self.status = Status::Changed;
        }
        self.steps.push(step);
    }

    pub fn fail(&mut self, failure: Failure) {
        self.status = Status::Failed;
        self.failure = Some(failure);
    }

    pub fn unreachable(&mut self, failure: Failure) {
        self.status = Status::Unreachable;
        self.failure = Some(failure);
    }

    /// `agent, user (4), service (2)`: the steps that changed, with their count of changes.
    fn changed_steps(&self) -> String {
        let steps: Vec<String> = self
            .steps
            .iter()
            .filter(|s| !s.changes.is_empty())
            .map(|s| match s.changes.len() {
                1 => s.step.clone(),
                n => format!("{} ({n})", s.step),
            })
            .collect();
        if steps.is_empty() {
            "-".into()
        } else {
            steps.join(", ")
        }
    }
}

/// A live progress line: `[lab-2] docker ... ok (24.0.7 (API 1.43))`.
pub fn progress_line(host: &str, step: &StepReport, check: bool) -> String {
    let mut line = format!("[{host}] {} ... {}", step.step, step.status.word(check));
    if let Some(detail) = &step.detail {
        line += &format!(" ({detail})");
    }
    if !step.changes.is_empty() {
        line += &format!(": {}", step.changes.join("; "));
    }
    line
}

/// The line of a failed step: `[lab-2] docker ... failed: REASON` (`unreachable: REASON` for
/// a host that could not be reached).
pub fn failure_line(host: &str, failure: &Failure, status: Status) -> String {
    format!(
        "[{host}] {} ... {}: {}",
        failure.step,
        status.word(false),
        failure.reason
    )
}

/// `provision`'s exit code, as Ansible's: 0 every host ok or changed, 2 some host failed, 4
/// some host unreachable (and none failed: a failure is the louder news), 1 for errors before
/// any host ran (a bad inventory).
pub fn exit_code(reports: &[HostReport]) -> u8 {
    if reports.iter().any(|r| r.status == Status::Failed) {
        2
    } else if reports.iter().any(|r| r.status == Status::Unreachable) {
        4
    } else {
        0
    }
}

fn seconds(ms: u64) -> String {
    format!("{:.2} s", Duration::from_millis(ms).as_secs_f64())
}

/// The summary: a table of hosts, then each failure with its step's output, then one line of
/// totals.
pub fn summary(reports: &[HostReport], check: bool, elapsed: Duration) -> String {
    let mut t = Table::new(&["HOST", "ADDRESS", "STATUS", ">TIME", "CHANGED"]);
    for r in reports {
        t.row([
            r.name.clone(),
            r.address.clone(),
            r.status.word(check).to_string(),
            seconds(r.elapsed_ms),
            r.changed_steps(),
        ]);
    }
    let mut out = t.render();
    for r in reports {
        if let Some(f) = &r.failure {
            let what = match r.status {
                Status::Unreachable => "unreachable",
                _ => "failed",
            };
            out += &format!("\n{} {what} at {}: {}\n", r.name, f.step, f.reason);
            for line in f.output.lines() {
                out += &format!("  | {line}\n");
            }
        }
    }
    let count = |s: Status| reports.iter().filter(|r| r.status == s).count();
    let (ok, changed, failed, unreachable) = (
        count(Status::Ok),
        count(Status::Changed),
        count(Status::Failed),
        count(Status::Unreachable),
    );
    let hosts = match reports.len() {
        1 => "1 host".to_string(),
        n => format!("{n} hosts"),
    };
    let took = elapsed.as_secs_f64();
    out += "\n";
    if changed == 0 && failed == 0 && unreachable == 0 {
        out += &format!("{hosts}: all ok, nothing changed ({took:.2} s)\n");
    } else {
        let verb = if check { "would change" } else { "changed" };
        out += &format!("{hosts}: {ok} ok, {changed} {verb}, {failed} failed");
        if unreachable > 0 {
            out += &format!(", {unreachable} unreachable");
        }
        out += &format!(" ({took:.2} s)\n");
    }
    if check {
        out += "check mode: nothing was changed\n";
    }
    out
}

/// The last `lines` lines of a step's stdout and stderr, for a failure report.
pub fn tail(stdout: &str, stderr: &str, lines: usize) -> String {
    let all: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .filter(|l| !l.trim().is_empty())
        .collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, changes: &[&str]) -> StepReport {
        StepReport {
            step: name.into(),
            status: if changes.is_empty() {
                Status::Ok
            } else {
                Status::Changed
            },
            changes: changes.iter().map(|c| c.to_string()).collect(),
            notes: vec![],
            detail: None,
            elapsed_ms: 12,
        }
    }

    #[test]
    fn summary_names_changes_and_failures() {
        let mut a = HostReport::new("a", "10.0.0.1:22");
        a.push(step("facts", &[]));
        a.push(step("user", &["create user datarun", "create /x"]));
        a.push(step("agent", &["install"]));
        let mut b = HostReport::new("b", "10.0.0.2:22");
        b.fail(Failure {
            step: "connect".into(),
            reason: "ssh 10.0.0.2:22: cannot connect".into(),
            output: "line 1\nline 2".into(),
        });
        let c = HostReport::new("c", "10.0.0.3:22");
        assert_eq!(exit_code(&[a.clone(), c.clone()]), 0);
        assert_eq!(exit_code(&[a.clone(), b.clone()]), 2);
        let mut d = HostReport::new("d", "10.0.0.4:22");
        d.unreachable(Failure {
            step: "connect".into(),
            reason: "ssh 10.0.0.4:22: cannot connect".into(),
            output: String::new(),
        });
        assert_eq!(exit_code(&[a.clone(), d.clone()]), 4);
        assert_eq!(exit_code(&[b.clone(), d.clone()]), 2);
        let text = summary(&[d], false, Duration::from_millis(10));
        assert!(text.contains("d unreachable at connect"), "{text}");
        assert!(
            text.contains("1 host: 0 ok, 0 changed, 0 failed, 1 unreachable"),
            "{text}"
        );
        let text = summary(
            &[a.clone(), b, c.clone()],
            false,
            Duration::from_millis(1500),
        );
        assert!(text.contains("user (2), agent"), "{text}");
        assert!(
            text.contains(
                "b failed at connect: ssh 10.0.0.2:22: cannot connect\n  | line 1\n  | line 2"
            ),
            "{text}"
        );
        assert!(
            text.contains("3 hosts: 1 ok, 1 changed, 1 failed"),
            "{text}"
        );
        assert_eq!(a.changes[0], "user: create user datarun");

        let text = summary(&[c], true, Duration::from_millis(10));
        assert!(text.contains("1 host: all ok, nothing changed"), "{text}");
        assert!(text.contains("check mode: nothing was changed"), "{text}");
        assert_eq!(tail("a\nb\n", "c\n\nd\n", 2), "c\nd");
    }
}
