//! The ssh transport: the master connects out to the runner (nothing on a runner reaches the
//! master), checks that the agent daemon answers (`datarun agent --ping`), then runs
//! `datarun agent --connect SOCKET` on a channel and speaks the protocol over its stdin/stdout,
//! exactly as over a local child's. When the connection dies the daemon keeps its folds
//! running; the next connection's hello tells the master what ran and what finished.
//!
//! A host without systemd whose agent is not running (after a reboot) gets its supervisor
//! started again by the link, which then pings once more.
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

/// Starts the agent's supervisor on a host without systemd when it is there and not running;
/// true when it was started.
async fn start_supervisor(session: &Session, target: &SshTarget, layout: &RemoteLayout) -> bool {
    let script = format!(
        "sup={sup}; pidfile={pid}; log={log}; [ -x \"$sup\" ] || exit 3; \
         pid=$(cat \"$pidfile\" 2>/dev/null) && [ -n \"$pid\" ] && kill -0 \"$pid\" 2>/dev/null && \
         grep -q datarun-supervise \"/proc/$pid/cmdline\" 2>/dev/null && exit 4; \
         setsid \"$sup\" </dev/null >>\"$log\" 2>&1 & echo started",
        sup = quote(&layout.supervisor().to_string_lossy()),
        pid = quote(&layout.pid().to_string_lossy()),
        log = quote(&layout.log().to_string_lossy()),
    );
    let mut command = format!("sh -c {}", quote(&script));
    if target.user != "root" {
        command = format!("sudo -n {command}");
    }
    match session.exec(&command).await {
        Ok(out) if out.success() => {
            tracing::warn!(host = %target.label(), "no agent answered and its supervisor was not \
                running (a reboot without systemd?): started it");
            true
        }
        Ok(_) => false,
        Err(e) => {
            tracing::debug!(host = %target.label(), "cannot start the agent's supervisor: {e}");
            false
        }
    }
}

/// Pings the agent until it answers or `wait` has passed; the last answer.
async fn ping_until(
    session: &Session,
    layout: &RemoteLayout,
    wait: std::time::Duration,
) -> Result<crate::provision::ExecOutput, String> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let ping = session
            .exec(&agent_command(layout, "--ping"))
            .await
            .map_err(|e| e.to_string())?;
        if ping.success() || tokio::time::Instant::now() >= deadline {
            return Ok(ping);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
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
    let mut ping = session
        .exec(&agent_command(layout, "--ping"))
        .await
        .map_err(|e| e.to_string())?;
    if !ping.success() && ping.status != Some(127) {
        // No agent answers, e.g. after a reboot of a host without systemd: start its
        // supervisor (written by `provision`) when it is not running, and ask again.
        if start_supervisor(&session, target, layout).await {
            ping = ping_until(&session, layout, std::time::Duration::from_secs(10)).await?;
        }
    }
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
