//! Where the agent's messages go. A daemon outlives its master connections, so attempt tasks
//! do not hold a connection: they send to the outbox, which forwards to the connection that is
//! current, or drops the message when there is none. Nothing is lost by dropping: results stay
//! in the journal until acknowledged and are reported again in the next hello, and the next
//! hello lists what runs.
//!
//! A new connection first *greets*: messages produced while its hello is being put together
//! are held back and sent after the hello, so a master never sees a result before the hello
//! that tells it what this agent knows. (A result may then come twice, in the hello and after
//! it; the master records a result once per attempt and ignores the duplicate.)

use crate::protocol::FromAgent;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc::UnboundedSender;

#[derive(Default)]
enum State {
    #[default]
    Closed,
    Greeting {
        tx: UnboundedSender<FromAgent>,
        held: Vec<FromAgent>,
    },
    Open(UnboundedSender<FromAgent>),
}

#[derive(Clone, Default)]
pub struct Outbox(Arc<Mutex<State>>);

impl Outbox {
    /// Sends `msg` to the current connection; false when there is none (or it is gone).
    pub fn send(&self, msg: FromAgent) -> bool {
        match &mut *self.0.lock().expect("outbox lock") {
            State::Closed => false,
            State::Greeting { held, .. } => {
                held.push(msg);
                true
            }
            State::Open(tx) => tx.send(msg).is_ok(),
        }
    }

    /// A new connection said hello: hold messages back until [`Outbox::open`].
    pub fn greet(&self, tx: UnboundedSender<FromAgent>) {
        *self.0.lock().expect("outbox lock") = State::Greeting {
            tx,
            held: Vec::new(),
        };
    }

    /// Sends the hello, then what was held back, and forwards from now on.
    pub fn open(&self, hello: FromAgent) {
        let mut state = self.0.lock().expect("outbox lock");
        let next = match std::mem::take(&mut *state) {
            State::Greeting { tx, held } => {
                let _ = tx.send(hello);
                for msg in held {
                    let _ = tx.send(msg);
                }
                State::Open(tx)
            }
            State::Open(tx) => {
                let _ = tx.send(hello);
                State::Open(tx)
            }
            State::Closed => State::Closed,
        };
        *state = next;
    }

    /// The connection behind `tx` went away: drop messages until the next one greets.
    pub fn close(&self, tx: &UnboundedSender<FromAgent>) {
        let mut state = self.0.lock().expect("outbox lock");
        let current = match &*state {
            State::Greeting { tx: t, .. } | State::Open(t) => t.same_channel(tx),
            State::Closed => false,
        };
        if current {
            *state = State::Closed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    fn pong(seq: u64) -> FromAgent {
        FromAgent::Pong { seq }
    }

    #[test]
    fn holds_messages_until_the_hello_then_forwards() {
        let outbox = Outbox::default();
        assert!(!outbox.send(pong(0)), "no connection: dropped");
        let (tx, mut rx) = mpsc::unbounded_channel();
        outbox.greet(tx.clone());
        assert!(outbox.send(pong(1)));
        assert!(rx.try_recv().is_err(), "held back while greeting");
        outbox.open(pong(99));
        outbox.send(pong(2));
        let got: Vec<FromAgent> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(got, vec![pong(99), pong(1), pong(2)]);

        // A second connection replaces the first; closing the first then changes nothing.
        let (tx2, mut rx2) = mpsc::unbounded_channel();
        outbox.greet(tx2.clone());
        outbox.open(pong(98));
        outbox.close(&tx);
        outbox.send(pong(3));
        assert_eq!(rx2.try_recv().ok(), Some(pong(98)));
        assert_eq!(rx2.try_recv().ok(), Some(pong(3)));
        assert!(rx.try_recv().is_err());
        outbox.close(&tx2);
        assert!(!outbox.send(pong(4)));
    }
}
