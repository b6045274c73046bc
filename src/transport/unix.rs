//! The unix transport: the master dials an agent daemon's Unix socket on this machine
//! (`transport = "unix"`, `socket = "/path/agent.sock"`; the daemon is `datarun agent --listen
//! SOCKET`, started by whoever runs the machine) and speaks the protocol over it, as the ssh
//! transport does through `agent --connect`. The daemon owns its folds: they outlive the
//! connection and the master, and any master that says hello next (a restarted one, or a
//! standby taking over) is told what runs and what finished. For runners that several masters
//! on one machine share (tests, small sites).

use super::{read_lines, Link, LinkEvent, ReadEnd};
use crate::inventory::RunnerSpec;
use crate::protocol::{write_lines, ToAgent};
use std::time::Duration;
use tokio::net::UnixStream;
use tokio::sync::mpsc;

/// How long dialing the socket may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to the runner's daemon; returns at once, a failure arrives as `Closed`.
pub fn connect(
    spec: &RunnerSpec,
    generation: u64,
    events: mpsc::UnboundedSender<LinkEvent>,
) -> Link {
    let (tx, rx) = mpsc::unbounded_channel::<ToAgent>();
    let name = spec.name.clone();
    let socket = spec.socket.clone().unwrap_or_default();
    tokio::spawn(async move {
        let closed = |reason: String| {
            let _ = events.send(LinkEvent::Closed {
                runner: name.clone(),
                generation,
                reason,
            });
        };
        let dialed = tokio::time::timeout(DIAL_TIMEOUT, UnixStream::connect(&socket)).await;
        let stream = match dialed {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                return closed(format!(
                    "no agent answers on {}: {e} (start it with `datarun agent --listen {}`)",
                    socket.display(),
                    socket.display()
                ))
            }
            Err(_) => {
                return closed(format!(
                    "the agent on {} did not accept within {DIAL_TIMEOUT:?}",
                    socket.display()
                ))
            }
        };
        let (from_daemon, to_daemon) = stream.into_split();
        // Dropping the link ends the writer, which shuts the socket's write side: the daemon
        // sees the master go and keeps its folds.
        tokio::spawn(write_lines(rx, to_daemon));
        let reason = match read_lines(&name, generation, from_daemon, &events).await {
            ReadEnd::Eof => format!("the agent on {} closed the connection", socket.display()),
            ReadEnd::Failed(e) => {
                format!("reading from the agent on {} failed: {e}", socket.display())
            }
            ReadEnd::MasterGone => return,
        };
        let _ = events.send(LinkEvent::Closed {
            runner: name,
            generation,
            reason,
        });
    });
    Link { generation, tx }
}
