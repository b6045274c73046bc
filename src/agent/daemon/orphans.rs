//! Orphans: attempts whose agent process died without a result. Found by `hello` (the
//! journal's owner pid is dead) or, for an attempt adopted from a live predecessor, by
//! [`watch_adopted`] when that predecessor dies. An orphan is never reported lost while it may
//! still run: its container, if it exists, is re-adopted; otherwise what is left of it (its
//! process group, its container) is killed first.

use super::*;

impl Agent {
    /// The attempt containers of this agent (docker runners; none otherwise).
    pub(super) async fn containers(&self) -> Vec<(AttemptId, bool)> {
        match &self.backend {
            Backend::Docker(d) => d.list_attempt_containers().await.unwrap_or_else(|e| {
                tracing::warn!("cannot list containers: {e}");
                Vec::new()
            }),
            _ => Vec::new(),
        }
    }

    /// An attempt whose agent process died without a result. A container that still exists
    /// is re-adopted (docker: limits and monitoring resume). Anything else is killed first —
    /// what is left of its process group, or its container — and then ends lost, so it never
    /// runs on beside its rerun. Returns the lost report, journaled.
    pub(super) async fn orphan(
        &mut self,
        attempt: AttemptId,
        has_container: bool,
    ) -> std::io::Result<Option<AttemptReport>> {
        match self.journal.run(attempt) {
            Some(run) if has_container => {
                self.start(run, true);
                Ok(None)
            }
            _ => {
                self.journal.kill_leftovers(attempt);
                if let Backend::Docker(d) = &self.backend {
                    if let Err(e) = d.remove_attempt(attempt).await {
                        tracing::warn!("cannot remove the container of attempt {attempt}: {e}");
                    }
                }
                let report = AttemptReport::bare(
                    attempt,
                    Outcome::Lost {
                        reason: "the agent running it died before it ended".into(),
                    },
                );
                self.journal.finish_async(&report).await?;
                Ok(Some(report))
            }
        }
    }

    /// The predecessor that ran adopted `attempt` died without a result (`watch_adopted`).
    pub(super) async fn orphaned(&mut self, attempt: AttemptId) {
        if !self.adopted.remove(&attempt) || !self.journal.exists(attempt) {
            return; // acknowledged meanwhile
        }
        if let Some(report) = self.journal.result(attempt) {
            return self.send(FromAgent::Finished(report));
        }
        let has_container = self.containers().await.iter().any(|(a, _)| *a == attempt);
        match self.orphan(attempt, has_container).await {
            Ok(Some(report)) => self.send(FromAgent::Finished(report)),
            Ok(None) => {}
            Err(e) => tracing::error!("attempt {attempt}: cannot journal its loss: {e}"),
        }
    }
}

/// How often an adopted attempt's journal and owner are looked at.
const WATCH_EVERY: Duration = Duration::from_millis(200);

/// Waits for the result of an attempt run by a previous agent process. If that process dies
/// without one, the attempt is an orphan: the agent loop kills or re-adopts it
/// ([`Notice::Orphaned`]), since nothing else would stop it or enforce its limits.
pub(super) async fn watch_adopted(
    journal: Arc<Journal>,
    attempt: AttemptId,
    pid: u32,
    out: Outbox,
    notices: mpsc::UnboundedSender<Notice>,
) {
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        if !journal.exists(attempt) {
            return;
        }
        if let Some(report) = journal.result(attempt) {
            let _ = out.send(FromAgent::Finished(report));
            return;
        }
        if !pid_alive(pid) {
            // Its agent died; give a result it was writing a moment to land.
            tokio::time::sleep(WATCH_EVERY).await;
            match journal.result(attempt) {
                Some(report) => {
                    let _ = out.send(FromAgent::Finished(report));
                }
                None => {
                    let _ = notices.send(Notice::Orphaned(attempt));
                }
            }
            return;
        }
    }
}
