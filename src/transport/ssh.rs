//! The ssh transport: the master connects out to the runner (nothing on a runner reaches the
//! master), checks that the agent daemon answers (`datarun agent --ping`), then runs
//! `datarun agent --connect SOCKET` on a channel and speaks the protocol over its stdin/stdout,
//! exactly as over a local child's. When the connection dies the daemon keeps its folds
//! running; the next connection's hello tells the master what ran and what finished.
//!
//! `connect` returns at once: messages sent before the session is up wait in the link's
//! channel; a failure to connect arrives as `LinkEvent::Closed` with the reason.

use super::{read_lines, Link, LinkEvent, ReadEnd};
use crate::inventory::RunnerSpec;
use crate::protocol::{write_lines, ToAgent};
use crate::provision::{quote, RemoteLayout, Session, SshOptions, SshTarget};
use tokio::sync::mpsc;

/// `<agent> agent VERB <socket>` on the runner.
fn agent_command(layout: &RemoteLayout, verb: &str) -> String {
    format!(
        "{} agent {verb} {}",
        quote(&layout.bin().to_string_lossy()),
        quote(&layout.socket().to_string_lossy())
    )
}

pub fn connect(
    spec: &RunnerSpec,
    opts: SshOptions,
    generation: u64,
    events: mpsc::UnboundedSender<LinkEvent>,
) -> Link {
    let (tx, rx) = mpsc::unbounded_channel::<ToAgent>();
    let target = SshTarget::for_runner(spec, &opts);
    let layout = RemoteLayout::for_runner(spec);
    let name = spec.name.clone();
    tokio::spawn(async move {
        let ran = match &target {
            Ok(target) => run(&name, target, &opts, &layout, generation, rx, &events).await,
            Err(e) => Err(e.clone()),
        };
        let reason = match ran {
            Ok(reason) | Err(reason) => reason,
        };
        let _ = events.send(LinkEvent::Closed {
            runner: name,
            generation,
            reason,
        });
    });
    Link { generation, tx }
}

/// Runs one connection to its end; returns why it ended.
async fn run(
    name: &str,
    target: &SshTarget,
    opts: &SshOptions,
    layout: &RemoteLayout,
    generation: u64,
    rx: mpsc::UnboundedReceiver<ToAgent>,
    events: &mpsc::UnboundedSender<LinkEvent>,
) -> Result<String, String> {
    let session = Session::connect(target, opts)
        .await
        .map_err(|e| e.to_string())?;
    let ping = session
        .exec(&agent_command(layout, "--ping"))
        .await
        .map_err(|e| e.to_string())?;
    if !ping.success() {
        let err = ping.stderr_lossy();
        session.close().await;
        return Err(match ping.status {
            Some(127) => format!(
                "datarun is not installed at {} on {}; run `datarun provision`",
                layout.bin().display(),
                target.label()
            ),
            _ => format!(
                "the agent on {} is not healthy: {}",
                target.label(),
                err.trim()
            ),
        });
    }
    let (writer, reader) = session
        .open_stream(&agent_command(layout, "--connect"))
        .await
        .map_err(|e| e.to_string())?;
    // When the link is dropped, EOF tells the bridge (and so the daemon) we are gone.
    let mut pump = tokio::spawn(write_lines(rx, writer));
    let reason = tokio::select! {
        end = read_lines(name, generation, reader, events) => match end {
            ReadEnd::Eof => format!("the agent on {} closed the connection", target.label()),
            ReadEnd::Failed(e) => format!("the connection to {} failed: {e}", target.label()),
            ReadEnd::MasterGone => "the master stopped".to_string(),
        },
        _ = &mut pump => "the master closed the connection".to_string(),
    };
    pump.abort();
    session.close().await;
    Ok(reason)
}
