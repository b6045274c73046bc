//! The master's connections to agents: connecting runners that are due (a local child or an
//! ssh session to the runner's daemon), heartbeats on ssh links, reconnecting with backoff, and
//! leases: a runner unheard of for longer than its lease loses its attempts, which are requeued
//! (a late result of such an attempt is then discarded by the store).

use super::*;
use crate::transport::{simulated, ssh, unix};

/// The longest wait between two connection attempts to a runner that keeps failing.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// How long a local agent may take to say hello before it is started again.
const LOCAL_HELLO_TIMEOUT: Duration = Duration::from_secs(15);

impl Master {
    /// How often a quiet ssh runner is pinged; three missed pings drop the connection (its
    /// folds keep running on the runner; the lease decides when they are given up).
    pub(super) fn heartbeat(&self) -> Duration {
        (self.cfg.lease / 6).clamp(Duration::from_millis(500), Duration::from_secs(10))
    }

    /// Connects runners that are due, pings quiet ones, drops silent ones, and ends the
    /// attempts of runners silent past their lease.
    pub(super) async fn tend_links(&mut self) -> anyhow::Result<()> {
        let now = Instant::now();
        let heartbeat = self.heartbeat();
        let mut lost = Vec::new();
        let mut dropped = Vec::new();
        for r in self.runners.values_mut() {
            if r.link.is_none() && !r.removed && r.reconnect_at.is_some_and(|t| t <= now) {
                self.generation += 1;
                let link = match r.spec.transport {
                    Transport::Local => {
                        let state_dir = self.cfg.data_dir.join("agents").join(&r.spec.name);
                        local::connect(
                            &self.cfg.agent_exe,
                            &state_dir,
                            &r.spec,
                            self.generation,
                            self.events_tx.clone(),
                        )
                        .map_err(|e| {
                            format!(
                                "cannot start the agent {}: {e}",
                                self.cfg.agent_exe.display()
                            )
                        })
                    }
                    Transport::Unix => Ok(unix::connect(
                        &r.spec,
                        self.generation,
                        self.events_tx.clone(),
                    )),
                    Transport::Simulated => Ok(simulated::connect(
                        &r.spec,
                        self.generation,
                        self.events_tx.clone(),
                    )),
                    Transport::Ssh => Ok(ssh::connect(
                        &r.spec,
                        self.cfg.ssh.clone(),
                        self.generation,
                        self.events_tx.clone(),
                    )),
                };
                match link {
                    Ok(link) => {
                        link.send(ToAgent::Hello {
                            version: PROTOCOL_VERSION,
                            runner: r.spec.name.clone(),
                        });
                        r.link = Some(link);
                        r.reconnect_at = None;
                        r.last_ping = None;
                        r.linked_at = Some(now);
                    }
                    Err(e) => {
                        // Said once per new error, not at every retry.
                        if r.last_error.as_deref() != Some(e.as_str()) {
                            tracing::warn!("runner {}: {e}; retrying every 5 s", r.spec.name);
                        }
                        r.last_error = Some(e);
                        r.reconnect_at = Some(now + Duration::from_secs(5));
                    }
                }
            }
            // A local agent that has not said hello long after it was started (seen stuck
            // at start-up under heavy load) is let go and started again.
            if r.spec.transport == Transport::Local
                && r.link.is_some()
                && !r.ready
                && r.linked_at
                    .is_some_and(|t| now.duration_since(t) > LOCAL_HELLO_TIMEOUT)
            {
                tracing::warn!(
                    "runner {}: its agent has not said hello in {} s; starting it again",
                    r.spec.name,
                    LOCAL_HELLO_TIMEOUT.as_secs()
                );
                r.link = None;
                r.linked_at = None;
                r.reconnect_at = Some(now);
            }
            if r.ready && r.spec.transport == Transport::Ssh {
                let silent = now.duration_since(r.last_seen);
                if silent > heartbeat * 3 {
                    let reason = format!(
                        "no answer for {:.1}s (heartbeat every {:.1}s)",
                        silent.as_secs_f64(),
                        heartbeat.as_secs_f64()
                    );
                    tracing::warn!("runner {}: {reason}; reconnecting", r.spec.name);
                    // Dropping the link ends its session; last_seen stays: the lease counts
                    // from when the runner was last heard.
                    r.link = None;
                    r.ready = false;
                    r.last_error = Some(reason.clone());
                    r.reconnect_at = Some(now);
                    dropped.push((r.spec.name.clone(), reason));
                } else if silent >= heartbeat
                    && r.last_ping
                        .is_none_or(|p| now.duration_since(p) >= heartbeat)
                {
                    self.generation += 1;
                    if let Some(link) = &r.link {
                        link.send(ToAgent::Ping {
                            seq: self.generation,
                        });
                    }
                    r.last_ping = Some(now);
                }
            }
            if !r.ready && r.busy() && now.duration_since(r.last_seen) > self.cfg.lease {
                let reason = format!(
                    "runner {} was unreachable for longer than its lease ({}s)",
                    r.spec.name,
                    self.cfg.lease.as_secs()
                );
                lost.extend(
                    r.grants
                        .keys()
                        .chain(r.queued.keys())
                        .map(|a| (*a, reason.clone())),
                );
                r.grants.clear();
                r.queued.clear();
                // Attempts it was cancelling no longer hold their folds back: they may run
                // elsewhere (the next hello cancels the stray copies again).
                r.cancelling.clear();
            }
        }
        for (runner, reason) in dropped {
            self.record_disconnect(runner, &reason).await?;
        }
        for (attempt, reason) in lost {
            tracing::warn!("attempt {attempt}: lost: {reason}");
            self.drop_progress(attempt);
            self.usage.ended(attempt, 0);
            self.store.mark_lost(attempt, reason).await?;
            self.dirty = true;
        }
        Ok(())
    }

    /// The connection of `generation` to `runner` ended.
    pub(super) async fn on_closed(
        &mut self,
        runner: String,
        generation: u64,
        reason: String,
    ) -> anyhow::Result<()> {
        let Some(r) = self.runners.get_mut(&runner) else {
            return Ok(());
        };
        if r.link.as_ref().map(|l| l.generation) != Some(generation) {
            return Ok(());
        }
        let now = Instant::now();
        // Said once per change of state: a runner that keeps failing the same way is retried
        // quietly (10,000 unreachable runners must not flood the log or the store).
        let changed = r.ready || r.last_error.as_deref() != Some(reason.as_str());
        if r.ready {
            tracing::warn!("runner {runner}: connection closed: {reason}");
            // First missed now: the lease counts from here.
            r.last_seen = now;
            r.failures = 0;
        } else {
            if changed {
                tracing::warn!("runner {runner}: cannot connect: {reason} (retrying quietly)");
            } else {
                tracing::debug!("runner {runner}: cannot connect: {reason}");
            }
            r.failures = r.failures.saturating_add(1);
        }
        r.link = None;
        r.ready = false;
        r.last_error = Some(reason.clone());
        // 1 s after a live connection ends, then 2, 4, 8, 10, 10 ... s while connecting fails.
        let backoff = Duration::from_secs(1 << r.failures.min(4)).min(MAX_BACKOFF);
        r.reconnect_at = Some(now + backoff);
        if !changed {
            return Ok(());
        }
        self.record_disconnect(runner, &reason).await
    }

    async fn record_disconnect(&mut self, runner: String, reason: &str) -> anyhow::Result<()> {
        let Some(r) = self.runners.get(&runner) else {
            return Ok(());
        };
        let spec = serde_json::to_string(&r.spec).expect("runner spec serializes");
        self.store
            .upsert_runner(runner, spec, format!("disconnected: {reason}"), None)
            .await?;
        self.dirty = true;
        Ok(())
    }
}
