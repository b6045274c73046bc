//! How a runner's address, the inventory and the ssh config make a target.

use std::path::{Path, PathBuf};

use super::{resolve, Given, SshConfig};

fn config(text: &str) -> SshConfig {
    SshConfig::parse(text, Path::new("cfg")).unwrap()
}

fn nothing() -> Given {
    Given {
        user: None,
        port: None,
        identity: None,
    }
}

const CONFIG: &str = "\
Host lab-*
  HostName %h.lab
  User deploy
  Port 2200
  IdentityFile /keys/lab
  IdentityAgent /run/agent.sock
  ProxyJump ops@gate:2022,inner
Host gate
  HostName gate.example.org
  IdentityFile /keys/gate
  ProxyJump outer
Host outer inner
  User jumper
  IdentityFile /keys/jump
Host loop
  IdentityFile /keys/x
  ProxyJump loop
";

#[test]
fn the_config_fills_in_what_the_inventory_does_not_say() {
    let cfg = config(CONFIG);
    let t = resolve("lab-1", nothing(), Some(&cfg), 0).unwrap();
    assert_eq!(
        (t.host.as_str(), t.port, t.user.as_str()),
        ("lab-1.lab", 2200, "deploy")
    );
    assert_eq!(t.identity_files, [PathBuf::from("/keys/lab")]);
    assert_eq!(t.agent, Some(PathBuf::from("/run/agent.sock")));
    assert!(t.trusted_known_hosts[0].ends_with(".ssh/known_hosts"));
    let none = config("Host *\n  IdentityFile /k\n  UserKnownHostsFile none\n");
    let t2 = resolve("x", nothing(), Some(&none), 0).unwrap();
    assert!(t2.trusted_known_hosts.is_empty());
    if let Ok(t3) = resolve("x", nothing(), None, 0) {
        assert!(
            t3.trusted_known_hosts.is_empty(),
            "no ssh config, no OpenSSH files"
        );
    }
    // gate's own ProxyJump (outer) comes first; inner is reached through gate.
    let hops: Vec<(String, u16, String)> = t
        .jumps
        .iter()
        .map(|j| (j.host.clone(), j.port, j.user.clone()))
        .collect();
    assert_eq!(
        hops,
        [
            ("outer".to_string(), 22, "jumper".to_string()),
            ("gate.example.org".to_string(), 2022, "ops".to_string()),
            ("inner".to_string(), 22, "jumper".to_string()),
        ]
    );
    assert!(t.jumps.iter().all(|j| j.jumps.is_empty()));
    assert_eq!(t.jumps[1].identity_files, [PathBuf::from("/keys/gate")]);

    // The inventory wins.
    let given = Given {
        user: Some("root".into()),
        port: Some(2022),
        identity: Some(PathBuf::from("/inv/key")),
    };
    let t = resolve("lab-1", given, Some(&cfg), 0).unwrap();
    assert_eq!((t.port, t.user.as_str()), (2022, "root"));
    assert_eq!(t.identity_files, [PathBuf::from("/inv/key")]);
    assert_eq!(t.host, "lab-1.lab");
}

#[test]
fn a_proxy_jump_loop_is_an_error() {
    let err = resolve("loop", nothing(), Some(&config(CONFIG)), 0).unwrap_err();
    assert!(err.contains("more than 8 ProxyJump hops"), "{err}");
}
