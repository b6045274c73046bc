//! The runner side: executors, limit enforcement and the agent's local journal.

pub mod exec;
pub mod process;
