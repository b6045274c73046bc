//! How the master reaches agents. Every transport yields the same thing: a sender of
//! `ToAgent` messages and a stream of `LinkEvent`s tagged with the runner and a generation
//! number (so events from a dead connection are told apart from its replacement's).

pub mod local;
pub mod simulated;
pub mod ssh;
pub mod unix;

use crate::protocol::{self, FromAgent, Line, ToAgent};
use tokio::io::{AsyncRead, BufReader};
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
/// output ends; a line that does not decode, or is longer than `protocol::MAX_LINE` (dropped
/// without being buffered), is logged and skipped.
async fn read_lines<R: AsyncRead + Unpin>(
    runner: &str,
    generation: u64,
    input: R,
    events: &mpsc::UnboundedSender<LinkEvent>,
) -> ReadEnd {
    let mut input = BufReader::new(input);
    loop {
        match protocol::read_line(&mut input, protocol::MAX_LINE).await {
            Ok(Line::TooLong(len)) => tracing::warn!(
                "runner {runner}: a message of {len} bytes, over the limit of {}, was dropped",
                protocol::MAX_LINE
            ),
            Ok(Line::Text(line)) => match protocol::decode::<FromAgent>(&line) {
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
            Ok(Line::Eof) => return ReadEnd::Eof,
            Err(e) => return ReadEnd::Failed(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn oversized_and_malformed_lines_from_an_agent_are_skipped() {
        let mut input = vec![b'x'; protocol::MAX_LINE + 1];
        input.extend_from_slice(b"\nnot json\n{\"type\":\"launch_missiles\"}\n");
        input.extend_from_slice(protocol::encode(&FromAgent::Pong { seq: 9 }).as_bytes());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let end = read_lines("r", 1, &input[..], &tx).await;
        assert!(matches!(end, ReadEnd::Eof));
        let Some(LinkEvent::Message { msg, .. }) = rx.recv().await else {
            panic!("the pong gets through")
        };
        assert_eq!(msg, FromAgent::Pong { seq: 9 });
        assert!(rx.try_recv().is_err(), "nothing else does");
    }
}
