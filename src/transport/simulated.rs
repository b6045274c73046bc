//! The simulated transport: an agent that lives in the master's process, for scale tests and
//! benchmarks (`transport = "simulated"`, `count = 10000` stands in for ten thousand machines).
//!
//! It speaks the real protocol: every message each way is encoded to its JSON line and decoded
//! on the other side, exactly as over a pipe, and the master's loop, store and scheduler are
//! the real ones. Only the work is simulated: a fold "runs" for the time its command names
//! (`sleep 3` → 3 s, `true` → at once) and succeeds (`false` exits 1), with no process, files or
//! inputs. Results wait for the master's ack; a dropped link loses what the agent held (as a
//! machine that rebooted would), and the master requeues those attempts.

use super::{Link, LinkEvent};
use crate::inventory::RunnerSpec;
use crate::model::{AttemptId, Metrics, Outcome};
use crate::protocol::{self, AttemptReport, Facts, FromAgent, ToAgent, PROTOCOL_VERSION};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long a simulated fold runs and how it ends, from its command.
pub fn simulate(command: &[String]) -> (Duration, Outcome) {
    let program = command
        .first()
        .map(|p| p.rsplit('/').next().unwrap_or(p))
        .unwrap_or("");
    match program {
        "sleep" => {
            let secs: f64 = command.get(1).and_then(|s| s.parse().ok()).unwrap_or(0.0);
            let secs = if secs.is_finite() {
                secs.clamp(0.0, 1e7)
            } else {
                0.0
            };
            (Duration::from_secs_f64(secs), Outcome::Success)
        }
        "false" => (Duration::ZERO, Outcome::ExitCode { code: 1 }),
        _ => (Duration::ZERO, Outcome::Success),
    }
}

/// Connects to a new simulated agent for `spec`.
pub fn connect(
    spec: &RunnerSpec,
    generation: u64,
    events: mpsc::UnboundedSender<LinkEvent>,
) -> Link {
    let (tx, mut to_agent) = mpsc::unbounded_channel::<ToAgent>();
    let (lines_tx, mut lines_rx) = mpsc::unbounded_channel::<String>();
    let facts = Facts {
        cpus: spec.cpus.unwrap_or(4.0),
        memory: spec.memory.unwrap_or(16 << 30),
        arch: std::env::consts::ARCH.to_string(),
        os: std::env::consts::OS.to_string(),
        hostname: spec.name.clone(),
        agent_version: format!("{} (simulated)", env!("CARGO_PKG_VERSION")),
        ..Facts::default()
    };
    // The agent: reads the master's lines, answers with its own.
    let (agent_in_tx, agent_in) = mpsc::unbounded_channel::<String>();
    tokio::spawn(agent(facts, agent_in, lines_tx));
    // The master's writer: encodes each message to its line, as over a pipe.
    tokio::spawn(async move {
        while let Some(msg) = to_agent.recv().await {
            if agent_in_tx.send(protocol::encode(&msg)).is_err() {
                break;
            }
        }
    });
    // The master's reader: decodes the agent's lines into events.
    let runner = spec.name.clone();
    tokio::spawn(async move {
        while let Some(line) = lines_rx.recv().await {
            match protocol::decode::<FromAgent>(&line) {
                Ok(msg) => {
                    let ev = LinkEvent::Message {
                        runner: runner.clone(),
                        generation,
                        msg,
                    };
                    if events.send(ev).is_err() {
                        return;
                    }
                }
                Err(e) => tracing::warn!("runner {runner}: {e}"),
            }
        }
        let _ = events.send(LinkEvent::Closed {
            runner,
            generation,
            reason: "the simulated agent stopped".into(),
        });
    });
    Link { generation, tx }
}

/// The simulated agent's loop. It ends when the master's link is dropped.
async fn agent(
    facts: Facts,
    mut input: mpsc::UnboundedReceiver<String>,
    out: mpsc::UnboundedSender<String>,
) {
    let send = |msg: &FromAgent| out.send(protocol::encode(msg)).is_ok();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<AttemptReport>();
    let mut running: HashMap<AttemptId, JoinHandle<()>> = HashMap::new();
    // Reported, not yet acknowledged (sent again on a new hello).
    let mut unacked: HashMap<AttemptId, AttemptReport> = HashMap::new();
    loop {
        tokio::select! {
            line = input.recv() => {
                let Some(line) = line else { break };
                let msg = match protocol::decode::<ToAgent>(&line) {
                    Ok(msg) => msg,
                    Err(message) => {
                        send(&FromAgent::Error { message });
                        continue;
                    }
                };
                match msg {
                    ToAgent::Hello { .. } => {
                        let hello = FromAgent::Hello {
                            version: PROTOCOL_VERSION,
                            facts: Box::new(facts.clone()),
                            running: running.keys().copied().collect(),
                            finished: unacked.values().cloned().collect(),
                        };
                        send(&hello);
                    }
                    ToAgent::Ping { seq } => {
                        send(&FromAgent::Pong { seq });
                    }
                    ToAgent::Run(run) => {
                        let attempt = run.attempt;
                        if running.contains_key(&attempt) || unacked.contains_key(&attempt) {
                            continue;
                        }
                        send(&FromAgent::Started { attempt });
                        let (wall, outcome) = simulate(&run.command);
                        let done = done_tx.clone();
                        running.insert(attempt, tokio::spawn(async move {
                            if !wall.is_zero() {
                                tokio::time::sleep(wall).await;
                            }
                            let _ = done.send(report(attempt, outcome, wall));
                        }));
                    }
                    ToAgent::Cancel { attempt } => {
                        if let Some(task) = running.remove(&attempt) {
                            task.abort();
                            let r = report(attempt, Outcome::Cancelled, Duration::ZERO);
                            send(&FromAgent::Finished(r.clone()));
                            unacked.insert(attempt, r);
                        }
                    }
                    ToAgent::Ack { attempt } => {
                        unacked.remove(&attempt);
                    }
                    // Simulated folds log nothing.
                    ToAgent::FetchLog { attempt, seq, offset, .. } => {
                        send(&FromAgent::LogChunk {
                            attempt, seq, offset, data: String::new(), size: 0, eof: false, live: false,
                        });
                    }
                    // Simulated folds read no inputs and write no outputs.
                    ToAgent::BlobChunk { .. }
                    | ToAgent::BlobMissing { .. }
                    | ToAgent::Fetch { .. } => {}
                }
            }
            Some(r) = done_rx.recv() => {
                if running.remove(&r.attempt).is_some() {
                    send(&FromAgent::Finished(r.clone()));
                    unacked.insert(r.attempt, r);
                }
            }
        }
    }
    for (_, task) in running {
        task.abort();
    }
}

fn report(attempt: AttemptId, outcome: Outcome, wall: Duration) -> AttemptReport {
    AttemptReport {
        attempt,
        outcome,
        metrics: Metrics {
            wall_ms: wall.as_millis() as u64,
            cpu_ms: 0,
            peak_memory: 0,
        },
        log: Default::default(),
        outputs: Vec::new(),
        ran: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_names_the_work() {
        let cmd = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            simulate(&cmd("sleep 3")),
            (Duration::from_secs(3), Outcome::Success)
        );
        assert_eq!(
            simulate(&cmd("/bin/sleep 0.25")),
            (Duration::from_millis(250), Outcome::Success)
        );
        assert_eq!(simulate(&cmd("true")), (Duration::ZERO, Outcome::Success));
        assert_eq!(
            simulate(&cmd("false")),
            (Duration::ZERO, Outcome::ExitCode { code: 1 })
        );
        assert_eq!(simulate(&cmd("sleep -4")).0, Duration::ZERO);
        assert_eq!(simulate(&cmd("sleep NaN")).0, Duration::ZERO);
    }
}
