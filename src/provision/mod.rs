//! Reaching and bootstrapping runners over SSH: datarun's known_hosts file, a small russh
//! client, where the agent lives on a runner (`layout`), the bootstrap playbook (`playbook`,
//! templates in `playbooks/`). The engine questions it asks (version, image presence, export) are
//! answered by `agent::docker::engine`, the one place that speaks to Docker.

pub mod known_hosts;
pub mod layout;
pub mod playbook;
pub mod report;
pub mod run;
pub mod select;
pub mod ssh;

pub use known_hosts::{HostKeyPolicy, HostKeyStatus, KnownHosts, KnownHostsError};
pub use layout::RemoteLayout;
pub use ssh::{quote, ExecOutput, Session, SshError, SshOptions, SshTarget};
