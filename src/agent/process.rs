//! The `process` executor: runs a fold as a plain child process in its own process group,
//! with soft limit -> SIGTERM, hard limit -> SIGKILL, a memory cap, and measurements of wall
//! time, CPU time (whole tree) and peak RSS.

use super::exec::{ExecRequest, ExecResult};
use crate::model::Progress;
use tokio::sync::{mpsc, watch};

/// Runs one attempt to its end. `progress` gets live figures about once a second;
/// `cancel` turning true kills the fold (outcome Cancelled).
pub async fn run(
    _req: ExecRequest,
    _progress: mpsc::UnboundedSender<Progress>,
    _cancel: watch::Receiver<bool>,
) -> ExecResult {
    todo!("process executor helper")
}
