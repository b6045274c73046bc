//! datarun: an HTCondor-style batch scheduler for machine-learning folds.
//! See ARCHITECTURE.md for the codemap and the invariants.

pub mod agent;
pub mod api;
pub mod cli;
pub mod dashboard;
pub mod dataset;
pub mod edge;
pub mod expr;
pub mod inventory;
pub mod maintenance;
pub mod master;
pub mod metrics;
pub mod model;
pub mod protocol;
pub mod provision;
pub mod scheduler;
pub mod shares;
pub mod store;
pub mod submission;
pub mod table;
pub mod transfer;
pub mod transport;
pub mod units;
pub mod webhooks;
pub mod workflow;
