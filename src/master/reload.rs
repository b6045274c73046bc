//! Following the operators' hand edits of the inventory without a restart, and draining
//! runners for maintenance. An edit is picked up from the file (polled), on SIGHUP, or by
//! `datarun runners reload`; an invalid edit is rejected with its file:line:key error, shown in
//! `runners status`, and the previous inventory stays in force.

use super::runners::RunnerState;
use super::Master;
use crate::inventory::{self, RunnerSpec};
use serde::Serialize;
use std::time::{Instant, SystemTime};

/// What a reload changed.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ReloadReport {
    pub added: Vec<String>,
    /// Removed runners drain: no new folds; running ones finish, then the runner disconnects.
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: usize,
}

/// When and how big the inventory file was at the last look, to notice edits.
pub(super) type Stamp = Option<(SystemTime, u64)>;

pub(super) fn stamp(path: &std::path::Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// A changed entry whose agent must be restarted to apply it (it was started with these).
fn needs_new_agent(old: &RunnerSpec, new: &RunnerSpec) -> bool {
    old.executor != new.executor
        || old.images != new.images
        || old.transport != new.transport
        || old.host != new.host
        || old.port != new.port
        || old.user != new.user
        || old.identity_file != new.identity_file
        || old.state_dir != new.state_dir
}

impl Master {
    /// Reloads when the file changed since the last look.
    pub(super) async fn reload_if_edited(&mut self) -> anyhow::Result<()> {
        let Some(path) = self.cfg.inventory.source.clone() else {
            return Ok(());
        };
        let now = stamp(&path);
        if now != self.inventory_stamp {
            self.inventory_stamp = now;
            // The outcome is logged and shown in `runners status`; the loop goes on either way.
            let _ = self.reload().await?;
        }
        Ok(())
    }

    /// Re-reads the inventory file and applies it, or keeps the previous one on error.
    pub(super) async fn reload(&mut self) -> anyhow::Result<Result<ReloadReport, String>> {
        let Some(path) = self.cfg.inventory.source.clone() else {
            return Ok(Err("this master runs on the embedded default inventory; start it with --inventory FILE to edit runners".into()));
        };
        self.inventory_stamp = stamp(&path);
        // Specs may change: the next publish rebuilds every runner's view.
        self.publish_all();
        let inv = match inventory::load(&path) {
            Ok(inv) => inv,
            Err(e) => {
                let message = format!("{e} (the previous inventory stays in force)");
                tracing::error!("inventory reload rejected: {message}");
                if self.inventory_error.as_deref() != Some(message.as_str()) {
                    self.store
                        .log_event(None, None, "inventory_rejected".into(), message.clone())
                        .await?;
                }
                self.inventory_error = Some(message.clone());
                return Ok(Err(message));
            }
        };
        let mut report = ReloadReport::default();
        for spec in &inv.runners {
            match self.runners.get_mut(&spec.name) {
                None => {
                    report.added.push(spec.name.clone());
                    self.runners
                        .insert(spec.name.clone(), RunnerState::new(spec.clone()));
                }
                Some(r) if r.spec == *spec && !r.removed => report.unchanged += 1,
                Some(r) => {
                    if needs_new_agent(&r.spec, spec) {
                        // The journal keeps what runs; the next agent re-adopts or reports it.
                        r.link = None;
                        r.ready = false;
                        r.reconnect_at = Some(Instant::now());
                    }
                    r.spec = spec.clone();
                    r.removed = false;
                    report.changed.push(spec.name.clone());
                }
            }
        }
        let listed: std::collections::HashSet<&str> =
            inv.runners.iter().map(|s| s.name.as_str()).collect();
        for (name, r) in self.runners.iter_mut() {
            if !r.removed && !listed.contains(name.as_str()) {
                r.removed = true;
                report.removed.push(name.clone());
            }
        }
        let rows = report
            .added
            .iter()
            .chain(&report.changed)
            .map(|name| {
                let spec = serde_json::to_string(&self.runners[name].spec)
                    .expect("runner spec serializes");
                (name.clone(), spec, "connecting".to_string(), None)
            })
            .collect();
        self.store.upsert_runners(rows).await?;
        self.cfg.inventory = inv;
        self.inventory_error = None;
        self.dirty = true;
        if report.added.len() + report.removed.len() + report.changed.len() > 0 {
            let detail = format!(
                "inventory reloaded: added [{}], removed [{}], changed [{}], {} unchanged",
                report.added.join(", "),
                report.removed.join(", "),
                report.changed.join(", "),
                report.unchanged
            );
            tracing::info!("{detail}");
            self.store
                .log_event(None, None, "inventory_reloaded".into(), detail)
                .await?;
        }
        Ok(Ok(report))
    }

    /// Drops removed runners once their last attempt has ended.
    pub(super) fn retire_drained(&mut self) {
        self.runners.retain(|name, r| {
            let keep = !r.removed || r.busy();
            if !keep {
                tracing::info!(
                    "runner {name}: removed from the inventory and drained; disconnecting"
                );
            }
            keep
        });
    }

    /// `runners drain|resume NAME`: no new folds while drained; running ones finish.
    pub(super) async fn set_drained(
        &mut self,
        name: &str,
        drained: bool,
    ) -> anyhow::Result<Result<(), String>> {
        let Some(r) = self.runners.get_mut(name) else {
            let known: Vec<&str> = self.runners.keys().map(String::as_str).collect();
            return Ok(Err(format!(
                "no runner named {name:?} (runners: {})",
                known.join(", ")
            )));
        };
        r.drained = drained;
        self.store.set_drained(name.to_string(), drained).await?;
        let what = if drained { "drained" } else { "resumed" };
        self.store
            .log_event(
                None,
                None,
                format!("runner_{what}"),
                format!("runner {name} {what}"),
            )
            .await?;
        self.dirty = true;
        Ok(Ok(()))
    }
}
