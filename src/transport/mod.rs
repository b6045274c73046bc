//! How the master reaches agents. Every transport yields the same thing: a sender of
//! `ToAgent` messages and a stream of `LinkEvent`s tagged with the runner and a generation
//! number (so events from a dead connection are told apart from its replacement's).

pub mod local;
pub mod simulated;
pub mod ssh;

use crate::protocol::{self, FromAgent, ToAgent};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;

#[derive(Debug)]
pub enum LinkEvent {
    Message {
        runner: String,
        generation: u64,
        msg: FromAgent,
    },
    Closed {
        runner: String,
        generation: u64,
        reason: String,
    },
}

/// The master's end of one agent connection. Dropping it closes the agent's input.
pub struct Link {
    pub generation: u64,
    pub tx: mpsc::UnboundedSender<ToAgent>,
}

impl Link {
    pub fn send(&self, msg: ToAgent) -> bool {
        self.tx.send(msg).is_ok()
    }
}

/// How reading an agent's lines ended.
enum ReadEnd {
    /// The agent closed its output.
    Eof,
    Failed(std::io::Error),
    /// Nobody listens to the events any more (the master stopped).
    MasterGone,
}

/// Turns the agent's lines into `LinkEvent::Message`s of `runner` / `generation` until its
/// output ends; a line that does not decode is logged and skipped.
async fn read_lines<R: AsyncRead + Unpin>(
    runner: &str,
    generation: u64,
    input: R,
    events: &mpsc::UnboundedSender<LinkEvent>,
) -> ReadEnd {
    let mut lines = BufReader::new(input).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => match protocol::decode::<FromAgent>(&line) {
                Ok(msg) => {
                    let ev = LinkEvent::Message {
                        runner: runner.to_string(),
                        generation,
                        msg,
                    };
                    if events.send(ev).is_err() {
                        return ReadEnd::MasterGone;
                    }
                }
                Err(e) => tracing::warn!("runner {runner}: {e}"),
            },
            Ok(None) => return ReadEnd::Eof,
            Err(e) => return ReadEnd::Failed(e),
        }
    }
}
