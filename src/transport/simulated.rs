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
use crate::protocol::{
    self, AttemptReport, Facts, FromAgent, RunAttempt, ToAgent, PROTOCOL_VERSION,
};
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
    // Runs queued behind another (`RunAttempt::after`), as the real agent keeps them.
    let mut queued: Vec<RunAttempt> = Vec::new();
    let start = |run: RunAttempt, running: &mut HashMap<AttemptId, JoinHandle<()>>| {
        let attempt = run.attempt;
        send(&FromAgent::Started { attempt });
        let (wall, outcome) = simulate(&run.command);
        let done = done_tx.clone();
        running.insert(
            attempt,
            tokio::spawn(async move {
                if !wall.is_zero() {
                    tokio::time::sleep(wall).await;
                }
                let _ = done.send(report(attempt, outcome, wall));
            }),
        );
    };
    // Starts every queued run whose predecessor holds no slot any more (the agent's rule).
    let start_ready = |queued: &mut Vec<RunAttempt>,
                       running: &mut HashMap<AttemptId, JoinHandle<()>>| loop {
        let Some(i) = queued
            .iter()
            .position(|q| !q.after.is_some_and(|a| holds_slot(running, queued, a)))
        else {
            return;
        };
        let run = queued.remove(i);
        start(run, running);
    };
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
                        queued.clear();
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
                        if running.contains_key(&attempt)
                            || unacked.contains_key(&attempt)
                            || queued.iter().any(|q| q.attempt == attempt)
                        {
                            continue;
                        }
                        if run.after.is_some_and(|a| holds_slot(&running, &queued, a)) {
                            queued.push(run);
                        } else {
                            start(run, &mut running);
                        }
                    }
                    ToAgent::Cancel { attempt } => {
                        if let Some(i) = queued.iter().position(|q| q.attempt == attempt) {
                            let gone = queued.remove(i);
                            for q in &mut queued {
                                if q.after == Some(attempt) {
                                    q.after = gone.after;
                                }
                            }
                            let r = report(attempt, Outcome::Cancelled, Duration::ZERO);
                            send(&FromAgent::Finished(r.clone()));
                            unacked.insert(attempt, r);
                        } else if let Some(task) = running.remove(&attempt) {
                            task.abort();
                            let r = report(attempt, Outcome::Cancelled, Duration::ZERO);
                            send(&FromAgent::Finished(r.clone()));
                            unacked.insert(attempt, r);
                        }
                        start_ready(&mut queued, &mut running);
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
                    start_ready(&mut queued, &mut running);
                }
            }
        }
    }
    for (_, task) in running {
        task.abort();
    }
}

/// Whether `attempt` takes a slot of the simulated agent: running, or queued itself.
fn holds_slot(
    running: &HashMap<AttemptId, JoinHandle<()>>,
    queued: &[RunAttempt],
    attempt: AttemptId,
) -> bool {
    running.contains_key(&attempt) || queued.iter().any(|q| q.attempt == attempt)
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

    async fn next(lines: &mut mpsc::UnboundedReceiver<String>) -> String {
        let line = tokio::time::timeout(Duration::from_secs(5), lines.recv())
            .await
            .expect("the agent answers")
            .expect("the agent runs");
        match protocol::decode::<FromAgent>(&line).unwrap() {
            FromAgent::Started { attempt } => format!("started {attempt}"),
            FromAgent::Finished(r) => format!("finished {} {}", r.attempt, r.outcome.kind()),
            FromAgent::Hello { running, .. } => format!("hello {running:?}"),
            other => format!("{other:?}"),
        }
    }

    /// Runs queued behind another start only when it ends, in line; one cancelled while
    /// queued hands its place to what followed it; a hello forgets the queue.
    #[tokio::test]
    async fn queued_runs_start_when_the_one_they_follow_ends() {
        let (to_agent, input) = mpsc::unbounded_channel::<String>();
        let (out, mut lines) = mpsc::unbounded_channel::<String>();
        tokio::spawn(agent(Facts::default(), input, out));
        let send = |msg: ToAgent| to_agent.send(protocol::encode(&msg)).unwrap();
        let run = |attempt: AttemptId, secs: &str, after: Option<AttemptId>| {
            let mut r = crate::agent::journal::test_run(attempt);
            r.command = vec!["sleep".into(), secs.into()];
            r.after = after;
            ToAgent::Run(r)
        };
        send(ToAgent::Hello {
            version: PROTOCOL_VERSION,
            runner: "s".into(),
        });
        assert_eq!(next(&mut lines).await, "hello []");
        send(run(1, "0.2", None));
        send(run(2, "0", Some(1)));
        send(run(3, "0", Some(2)));
        send(run(4, "0", Some(3)));
        send(ToAgent::Cancel { attempt: 3 });
        assert_eq!(next(&mut lines).await, "started 1");
        assert_eq!(next(&mut lines).await, "finished 3 cancelled");
        assert_eq!(next(&mut lines).await, "finished 1 success");
        assert_eq!(next(&mut lines).await, "started 2");
        assert_eq!(next(&mut lines).await, "finished 2 success");
        assert_eq!(
            next(&mut lines).await,
            "started 4",
            "4 followed 3, which followed 2"
        );
        assert_eq!(next(&mut lines).await, "finished 4 success");
        // Behind an attempt the agent does not hold: at once.
        send(run(5, "0", Some(99)));
        assert_eq!(next(&mut lines).await, "started 5");
        assert_eq!(next(&mut lines).await, "finished 5 success");
        // A new hello forgets what was queued.
        send(run(6, "0.3", None));
        send(run(7, "0", Some(6)));
        assert_eq!(next(&mut lines).await, "started 6");
        send(ToAgent::Hello {
            version: PROTOCOL_VERSION,
            runner: "s".into(),
        });
        assert_eq!(next(&mut lines).await, "hello [6]");
        assert_eq!(next(&mut lines).await, "finished 6 success");
        assert!(
            tokio::time::timeout(Duration::from_millis(300), lines.recv())
                .await
                .is_err(),
            "7 was forgotten"
        );
    }
}
