//! How the master reaches agents. Every transport yields the same thing: a sender of
//! `ToAgent` messages and a stream of `LinkEvent`s tagged with the runner and a generation
//! number (so events from a dead connection are told apart from its replacement's).

pub mod local;
pub mod ssh;

use crate::protocol::{FromAgent, ToAgent};
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
