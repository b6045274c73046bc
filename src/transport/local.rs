//! The local transport: the agent runs as a child process (`datarun agent --stdio`) speaking
//! the protocol over its stdin/stdout. The child gets its own process group, so a Ctrl-C or a
//! kill of the master does not reach it: it finishes its folds and journals their results.

use super::{read_lines, Link, LinkEvent, ReadEnd};
use crate::inventory::{ExecutorKind, RunnerSpec};
use crate::protocol::{write_lines, ToAgent};
use std::path::Path;
use std::process::Stdio;
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
        .args(spec.warm.iter().flat_map(|w| w.agent_args()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .kill_on_drop(false)
        .spawn()?;
    tracing::debug!(
        "runner {}: agent started as pid {}",
        spec.name,
        child.id().unwrap_or(0)
    );
    let stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::unbounded_channel::<ToAgent>();
    // When the link is dropped the agent's input closes: it finishes its folds and exits.
    tokio::spawn(write_lines(rx, stdin));
    let name = spec.name.clone();
    tokio::spawn(async move {
        let reason = match read_lines(&name, generation, stdout, &events).await {
            ReadEnd::Eof => "the agent closed its output".to_string(),
            ReadEnd::Failed(e) => format!("reading from the agent failed: {e}"),
            ReadEnd::MasterGone => return,
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
