//! Tests of the ssh config parser.

use super::*;

fn parse(text: &str) -> Result<SshConfig, ConfigError> {
    SshConfig::parse(text, Path::new("cfg"))
}

#[test]
fn first_value_wins_and_identity_files_add_up() {
    let cfg = parse(
        "# comment\nUser everyone\n\nHost lab-* !lab-9\n  HostName %h.example.org\n  Port=2200\n  \
         IdentityFile ~/.ssh/lab\nHost lab-1 bastion\n  User deploy\n  Port 2222\n  \
         IdentityFile \"/keys/with space\"\n  ProxyJump jump@gate:2022,ssh://[::1]:22\n\
         Host *\n  Port 22\n  IdentityAgent none\nMatch host lab-1\n  User never\n",
    )
    .unwrap();
    let lab1 = cfg.resolve("LAB-1");
    assert_eq!(lab1.host_name.as_deref(), Some("LAB-1.example.org"));
    assert_eq!(
        lab1.user.as_deref(),
        Some("everyone"),
        "the global line is first"
    );
    assert_eq!(lab1.port, Some(2200));
    assert_eq!(
        lab1.identity_files,
        [
            PathBuf::from("~/.ssh/lab"),
            PathBuf::from("/keys/with space")
        ]
    );
    assert_eq!(lab1.identity_agent, Some(None));
    let jumps = lab1.proxy_jump.unwrap();
    assert_eq!(
        jumps,
        [
            Jump {
                user: Some("jump".into()),
                host: "gate".into(),
                port: Some(2022)
            },
            Jump {
                user: None,
                host: "::1".into(),
                port: Some(22)
            }
        ]
    );
    let lab9 = cfg.resolve("lab-9");
    assert_eq!(lab9.host_name, None, "negated");
    assert_eq!(lab9.port, Some(22));
    assert_eq!(cfg.resolve("other").proxy_jump, None);
}

#[test]
fn errors_name_file_and_line() {
    for (text, line, what) in [
        ("Host a\n  Port 70000\n", 2, "bad port"),
        ("\n\nPort\n", 3, "Port needs"),
        ("Host\n", 1, "at least one pattern"),
        ("Host a\nProxyJump a@\n", 2, "bad ProxyJump hop"),
        ("Host a\nIdentityFile \"x\n", 2, "unbalanced"),
        ("IdentityAgent\n", 1, "IdentityAgent needs"),
    ] {
        let err = parse(text).unwrap_err().to_string();
        assert!(err.starts_with(&format!("cfg:{line}: ")), "{err}");
        assert!(err.contains(what), "{err}");
    }
    // Unknown keywords are OpenSSH's business, not errors.
    parse("ForwardAgent yes\nServerAliveInterval 30\n").unwrap();
}

#[test]
fn globs_and_paths() {
    assert!(glob("*", "x"));
    assert!(glob("10.0.?.*", "10.0.1.25"));
    assert!(!glob("10.0.?.*", "10.0.12.5"));
    assert!(glob("a*b*c", "aXXbYc"));
    assert!(!glob("a*b", "abc"));
    let home = std::env::var("HOME").unwrap_or_default();
    assert_eq!(
        expand_path(Path::new("~/.ssh/%h-%r%%"), "box", "root"),
        PathBuf::from(format!("{home}/.ssh/box-root%"))
    );
}

#[test]
fn includes_are_followed_in_the_scope_of_their_block() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("conf.d")).unwrap();
    std::fs::write(
        d.join("conf.d/a.conf"),
        "User from-a\nHost other\n  Port 9\n",
    )
    .unwrap();
    std::fs::write(d.join("conf.d/b.conf"), "Port 7\n").unwrap();
    std::fs::write(d.join("conf.d/skip.txt"), "Port 1\n").unwrap();
    let main = d.join("config");
    std::fs::write(
        &main,
        format!(
            "Host lab-*\n  Include {}/conf.d/*.conf {}/missing\n  User after\nHost *\n  Port 2\n",
            d.display(),
            d.display()
        ),
    )
    .unwrap();
    let cfg = SshConfig::load(&main).unwrap();
    let lab = cfg.resolve("lab-1");
    assert_eq!((lab.user.as_deref(), lab.port), (Some("from-a"), Some(7)));
    assert_eq!(cfg.resolve("other").port, Some(9));
    let zzz = cfg.resolve("zzz");
    assert_eq!((zzz.user, zzz.port), (None, Some(2)));

    std::fs::write(d.join("conf.d/c.conf"), "\nPort x\n").unwrap();
    let err = SshConfig::load(&main).unwrap_err().to_string();
    assert!(err.contains("c.conf:2: bad port"), "{err}");

    let looping = d.join("loop");
    std::fs::write(&looping, format!("Include {}\n", looping.display())).unwrap();
    let err = SshConfig::load(&looping).unwrap_err().to_string();
    assert!(err.contains("nested more than 16"), "{err}");
}
