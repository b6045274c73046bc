//! The local transport: the agent runs as a child process (`datarun agent --stdio`) speaking
//! the protocol over its stdin/stdout. The child gets its own process group, so a Ctrl-C or a
//! kill of the master does not reach it: it finishes its folds and journals their results.

use super::{Link, LinkEvent};
use crate::inventory::{ExecutorKind, RunnerSpec};
use crate::protocol::{self, FromAgent, ToAgent};
use std::path::Path;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

pub fn connect(
    agent_exe: &Path,
    state_dir: &Path,
    spec: &RunnerSpec,
    generation: u64,
    events: mpsc::UnboundedSender<LinkEvent>,
) -> std::io::Result<Link> {
    let mut child = Command::new(agent_exe)
        .arg("agent")
        .arg("--stdio")
        .arg("--state-dir")
        .arg(state_dir)
        .arg("--runner")
        .arg(&spec.name)
        .arg("--executor")
        .arg(match spec.executor {
            ExecutorKind::Process => "process",
            ExecutorKind::Docker => "docker",
        })
        .args(spec.images.iter().flat_map(|i| ["--image", i.as_str()]))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .kill_on_drop(false)
        .spawn()?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, mut rx) = mpsc::unbounded_channel::<ToAgent>();
    tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if stdin
                .write_all(protocol::encode(&msg).as_bytes())
                .await
                .is_err()
                || stdin.flush().await.is_err()
            {
                break;
            }
        }
        // Dropping stdin closes the agent's input: it finishes its folds and exits.
    });
    let name = spec.name.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        let reason = loop {
            match lines.next_line().await {
                Ok(Some(line)) => match protocol::decode::<FromAgent>(&line) {
                    Ok(msg) => {
                        if events
                            .send(LinkEvent::Message {
                                runner: name.clone(),
                                generation,
                                msg,
                            })
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(e) => tracing::warn!("runner {name}: {e}"),
                },
                Ok(None) => break "the agent closed its output".to_string(),
                Err(e) => break format!("reading from the agent failed: {e}"),
            }
        };
        let status = child
            .wait()
            .await
            .map(|s| s.to_string())
            .unwrap_or_else(|e| e.to_string());
        let _ = events.send(LinkEvent::Closed {
            runner: name,
            generation,
            reason: format!("{reason} ({status})"),
        });
    });
    Ok(Link { generation, tx })
}
