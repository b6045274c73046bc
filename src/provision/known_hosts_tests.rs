//! Tests of the known_hosts file.

use super::*;

const K1: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM7Pn0BO/ZYhv3NlZW9JtWtw1XIv8qzsQBmZtZNoPBu1";
const K2: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKfj0bwvll7rqUjwQgI920osavK0tsmIMTLYzDGrdQmb";
const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCvASs5svJHyClMonwsg+0JWqY9v2u7FMZEPVHq9ybyFDQSWv6l8GblKJTQtR+1B2o95El4S53FC6HKBRF4rKM2UrUQVHp227atZFqoHXD0hPcyYXI0eNRmnLgwfbn65iO7tmpC/mSiTKO98U3azR5SfiZcYzgXAvuK9iGJUCadJ0lKlez9CbvarfPmronePxXuQ66EG0Pm6FzGPBxOXT4HcCtxZSqIdu9UujpZ0gYXhCkoIv/EgkBCZaGdavIgZIKSZ+FYlafoMyazaA5/F0vD37OBKy8sx/Z9X0ut64b5s/IPsCKnAWkZ8QAdnWwfBU42wk1JLN+NuwA6jPv6zp/N";

fn key(text: &str) -> PublicKey {
    PublicKey::from_openssh(text).unwrap()
}

fn file(text: &str) -> (tempfile::TempDir, KnownHosts) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    if !text.is_empty() {
        fs::write(&path, text).unwrap();
    }
    (dir, KnownHosts::new(path))
}

#[test]
fn names_follow_openssh() {
    assert_eq!(entry_name("Runner-1", 22), "runner-1");
    assert_eq!(entry_name("10.0.0.5", 2222), "[10.0.0.5]:2222");
    assert_eq!(entry_line("h", 22, &key(K1)), format!("h {K1}"));
}

#[test]
fn known_key_is_accepted_under_strict() {
    let (_d, kh) = file(&format!(
        "# datarun\n\nother {K2}\nh1,[h2]:2200 {K1} comment\n"
    ));
    let status = kh.check("h2", 2200, &key(K1), HostKeyPolicy::Strict);
    assert_eq!(status.unwrap(), HostKeyStatus::Known { line: 4 });
    assert_eq!(
        kh.check("H1", 22, &key(K1), HostKeyPolicy::Strict).unwrap(),
        HostKeyStatus::Known { line: 4 }
    );
}

#[test]
fn strict_refuses_unknown_and_says_how_to_accept() {
    let (_d, kh) = file("");
    let err = kh
        .check("10.1.2.3", 22, &key(K1), HostKeyPolicy::Strict)
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, KnownHostsError::Unknown { .. }), "{msg}");
    assert!(
        msg.contains("10.1.2.3") && msg.contains("--accept-new"),
        "{msg}"
    );
    assert!(msg.contains("SHA256:"), "{msg}");
    assert!(!kh.path().exists(), "strict must not create the file");
}

#[test]
fn accept_new_records_once() {
    let (_d, kh) = file(&format!("a {K2}")); // no trailing newline
    let first = kh.check("b", 2222, &key(K1), HostKeyPolicy::AcceptNew);
    assert_eq!(first.unwrap(), HostKeyStatus::Recorded { line: 2 });
    let text = fs::read_to_string(kh.path()).unwrap();
    assert_eq!(text, format!("a {K2}\n[b]:2222 {K1}\n"));
    let again = kh.check("b", 2222, &key(K1), HostKeyPolicy::AcceptNew);
    assert_eq!(again.unwrap(), HostKeyStatus::Known { line: 2 });
    assert_eq!(fs::read_to_string(kh.path()).unwrap(), text);
}

#[test]
fn accept_new_creates_the_directory_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let kh = KnownHosts::new(dir.path().join("sub/dir/known_hosts"));
    let status = kh.check("h", 22, &key(RSA), HostKeyPolicy::AcceptNew);
    assert_eq!(status.unwrap(), HostKeyStatus::Recorded { line: 1 });
    assert_eq!(fs::read_to_string(kh.path()).unwrap(), format!("h {RSA}\n"));
}

#[test]
fn changed_key_is_refused_under_every_policy() {
    let (_d, kh) = file(&format!("# c\nh {RSA}\nh {K2}\n"));
    for policy in [HostKeyPolicy::Strict, HostKeyPolicy::AcceptNew] {
        let err = kh.check("h", 22, &key(K1), policy).unwrap_err();
        let msg = err.to_string();
        match err {
            KnownHostsError::Changed { line, .. } => assert_eq!(line, 3, "same type first"),
            other => panic!("{other}"),
        }
        assert!(msg.contains("CHANGED for h"), "{msg}");
        assert!(msg.contains(&format!("{}:3", kh.path().display())), "{msg}");
    }
    assert_eq!(
        fs::read_to_string(kh.path()).unwrap(),
        format!("# c\nh {RSA}\nh {K2}\n")
    );
}

#[test]
fn other_ports_are_other_hosts() {
    let (_d, kh) = file(&format!("h {K2}\n"));
    let status = kh.check("h", 2222, &key(K1), HostKeyPolicy::AcceptNew);
    assert_eq!(status.unwrap(), HostKeyStatus::Recorded { line: 2 });
}

#[test]
fn revoked_and_malformed_lines() {
    let (_d, kh) = file(&format!("@revoked h {K1}\nh {K1}\n"));
    let err = kh.check("h", 22, &key(K1), HostKeyPolicy::AcceptNew);
    assert!(matches!(err, Err(KnownHostsError::Revoked { line: 1, .. })));

    let (_d, kh) = file(&format!("@cert-authority * {K2}\nh {K1}\n"));
    let ok = kh.check("h", 22, &key(K1), HostKeyPolicy::Strict);
    assert_eq!(ok.unwrap(), HostKeyStatus::Known { line: 2 });

    let (_d, kh) = file(&format!("h {K1}\n|1|abc|def {K2}\n"));
    let err = kh.check("h", 22, &key(K1), HostKeyPolicy::Strict);
    let err = err.unwrap_err().to_string();
    assert!(
        err.contains(":2: bad known_hosts line: bad hashed host name"),
        "{err}"
    );

    let (_d, kh) = file(&format!("h {K1}\nbroken ssh-ed25519 !!!\n"));
    let err = kh
        .check("h", 22, &key(K1), HostKeyPolicy::Strict)
        .unwrap_err()
        .to_string();
    assert!(err.contains(":2: bad known_hosts line"), "{err}");
}

#[test]
fn concurrent_accept_new_records_each_host_once() {
    let (_d, kh) = file("");
    let keys = [K1, K2, RSA];
    std::thread::scope(|s| {
        for round in 0..4 {
            for (i, k) in keys.iter().enumerate() {
                let kh = kh.clone();
                s.spawn(move || {
                    let host = format!("host{i}");
                    kh.check(&host, 22, &key(k), HostKeyPolicy::AcceptNew)
                        .unwrap_or_else(|e| panic!("round {round}: {e}"));
                });
            }
        }
    });
    let text = fs::read_to_string(kh.path()).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
}

/// Hashed lines as `ssh-keygen -H` writes them match their host, and only it.
#[test]
fn hashed_names_and_patterns_match() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    fs::write(
        &path,
        format!("10.9.8.7 {K1}\n[10.9.8.7]:2222 {K2}\n*.lab.example,!bad.lab.example {RSA}\n"),
    )
    .unwrap();
    let out = std::process::Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&path)
        .output()
        .expect("these tests need ssh-keygen (openssh-client)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("|1|") && !text.contains("10.9.8.7"),
        "{text}"
    );
    let kh = KnownHosts::new(&path);
    let known =
        |host: &str, port: u16, k: &str| kh.check(host, port, &key(k), HostKeyPolicy::Strict);
    assert!(matches!(
        known("10.9.8.7", 22, K1),
        Ok(HostKeyStatus::Known { .. })
    ));
    assert!(matches!(
        known("10.9.8.7", 2222, K2),
        Ok(HostKeyStatus::Known { .. })
    ));
    assert!(matches!(
        known("10.9.8.7", 22, K2),
        Err(KnownHostsError::Changed { .. })
    ));
    assert!(matches!(
        known("10.9.8.8", 22, K1),
        Err(KnownHostsError::Unknown { .. })
    ));
    assert!(matches!(
        known("Box.Lab.Example", 22, RSA),
        Ok(HostKeyStatus::Known { .. })
    ));
    assert!(matches!(
        known("bad.lab.example", 22, RSA),
        Err(KnownHostsError::Unknown { .. })
    ));
}

#[test]
fn the_operators_files_are_trusted_read_only() {
    let (_d, kh) = file(&format!("other {K2}\n"));
    let dir = tempfile::tempdir().unwrap();
    let theirs = dir.path().join("ssh_known_hosts");
    fs::write(
        &theirs,
        format!("junk-line\nh sk-unknown-type@openssh.com AAAA\nh {K1}\n"),
    )
    .unwrap();
    let trusted = [dir.path().join("missing"), theirs.clone()];
    let check = |host: &str, k: &str, policy| kh.check_with(&trusted, host, 22, &key(k), policy);
    assert_eq!(
        check("h", K1, HostKeyPolicy::Strict).unwrap(),
        HostKeyStatus::Known { line: 3 }
    );
    let err = check("h", K2, HostKeyPolicy::AcceptNew).unwrap_err();
    assert!(
        matches!(err, KnownHostsError::Changed { line: 3, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains(&theirs.display().to_string()),
        "{err}"
    );
    assert!(matches!(
        check("new", K1, HostKeyPolicy::Strict),
        Err(KnownHostsError::Unknown { .. })
    ));
    assert_eq!(
        check("new", K1, HostKeyPolicy::AcceptNew).unwrap(),
        HostKeyStatus::Recorded { line: 2 }
    );
    // Nothing was written to the operator's file; datarun's own wins when it knows.
    assert!(!fs::read_to_string(&theirs).unwrap().contains("new"));
    assert!(check("other", K2, HostKeyPolicy::Strict).is_ok());
}
