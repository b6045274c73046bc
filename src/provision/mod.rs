//! Reaching runners over SSH: datarun's known_hosts file and a small russh client. (Playbook
//! rendering and parallel provisioning runs build on these.)

pub mod known_hosts;
pub mod ssh;

pub use known_hosts::{HostKeyPolicy, HostKeyStatus, KnownHosts, KnownHostsError};
pub use ssh::{quote, ExecOutput, Session, SshError, SshOptions, SshTarget};
