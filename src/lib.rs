//! datarun: an HTCondor-style batch scheduler for machine-learning folds.
//! See ARCHITECTURE.md for the codemap and the invariants.

pub mod agent;
pub mod inventory;
pub mod model;
pub mod scheduler;
pub mod units;
