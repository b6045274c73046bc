//! Reaching runners over SSH: datarun's known_hosts file, a small russh client, and where the
//! agent lives on a runner (`layout`). (Playbook rendering and parallel provisioning runs build
//! on these.)

pub mod known_hosts;
pub mod layout;
pub mod ssh;

pub use known_hosts::{HostKeyPolicy, HostKeyStatus, KnownHosts, KnownHostsError};
pub use layout::RemoteLayout;
pub use ssh::{quote, ExecOutput, Session, SshError, SshOptions, SshTarget};
