//! The runner side: the agent loop, executors, limit enforcement and the agent's local journal.

pub mod bridge;
pub mod daemon;
pub mod docker;
pub mod exec;
pub mod facts;
pub mod journal;
pub mod limits;
mod outbox;
mod outputs;
pub mod process;
pub mod provenance;
mod recent;
pub mod serve;
pub mod tail;
