//! The SSH client against real sshd containers (`./images/build-sshd.sh` builds the image).

#[path = "common/hosts.rs"]
mod hosts;

use std::time::{Duration, Instant};

use datarun::provision::{
    quote, HostKeyPolicy, KnownHostsError, Session, SshError, SshOptions, SshTarget,
};
use hosts::{keygen, Hosts};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(90);

async fn connect(target: &SshTarget, opts: &SshOptions) -> Session {
    Session::connect(target, opts)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn connect_err(target: &SshTarget, opts: &SshOptions) -> SshError {
    match Session::connect(target, opts).await {
        Ok(s) => panic!("connected to {} although it should fail", s.host()),
        Err(e) => e,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_reports_stdout_stderr_and_status() {
    let h = Hosts::start(1);
    let s = connect(&h.target(0), &h.options()).await;
    let out = s.exec("echo out; echo err >&2; exit 3").await.unwrap();
    assert_eq!(
        (out.status, out.stdout_lossy(), out.stderr_lossy()),
        (Some(3), "out\n".into(), "err\n".into())
    );
    assert!(!out.success());

    let out = s
        .exec(&format!("printf %s {}", quote("it's $HOME")))
        .await
        .unwrap();
    assert_eq!(
        (out.status, out.stdout_lossy()),
        (Some(0), "it's $HOME".into())
    );

    let out = s.exec("kill -TERM $$").await.unwrap();
    assert_eq!((out.status, out.signal.as_deref()), (None, Some("TERM")));

    // stdin is empty: cat ends at once.
    assert!(s.exec("cat").await.unwrap().success());
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_output_on_both_streams_does_not_stall() {
    let h = Hosts::start(1);
    let s = connect(&h.target(0), &h.options()).await;
    let cmd = "head -c 10485760 /dev/urandom & head -c 3145728 /dev/zero >&2; wait";
    // Two such commands at once on the same connection.
    let (a, b) = timeout(LIMIT, async { tokio::join!(s.exec(cmd), s.exec(cmd)) })
        .await
        .expect("large outputs stalled");
    for out in [a.unwrap(), b.unwrap()] {
        assert_eq!(out.status, Some(0));
        assert_eq!((out.stdout.len(), out.stderr.len()), (10 << 20, 3 << 20));
    }
    // The connection still works afterwards.
    assert_eq!(s.exec("echo ok").await.unwrap().stdout_lossy(), "ok\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_with_input_uploads_50_mb_intact() {
    let h = Hosts::start(1);
    let s = connect(&h.target(0), &h.options()).await;
    let mut data = vec![0u8; 50 << 20];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let local = hex::encode(Sha256::digest(&data));
    let mut reports = Vec::new();
    let started = Instant::now();
    let out = timeout(
        LIMIT,
        s.exec_with_input("cat > /tmp/blob && sha256sum /tmp/blob", &data[..], |n| {
            reports.push(n)
        }),
    )
    .await
    .expect("upload stalled")
    .unwrap();
    eprintln!("50 MB uploaded in {:?}", started.elapsed());
    assert!(out.success(), "{}", out.stderr_lossy());
    assert_eq!(
        out.stdout_lossy().split_whitespace().next(),
        Some(local.as_str())
    );
    assert!(
        reports.windows(2).all(|w| w[0] < w[1]),
        "progress must grow"
    );
    assert_eq!(reports.last(), Some(&(50u64 << 20)));

    // A command that does not read its input: its status comes back, nothing hangs.
    let out = timeout(LIMIT, s.exec_with_input("exit 4", &data[..], |_| {}))
        .await
        .expect("stalled on an unread input")
        .unwrap();
    assert_eq!(out.status, Some(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_stream_round_trips_lines_through_cat() {
    let h = Hosts::start(1);
    let s = connect(&h.target(0), &h.options()).await;
    let (mut writer, reader) = s.open_stream("echo started >&2; cat").await.unwrap();
    let lines: Vec<String> = (0..2000)
        .map(|i| format!("line {i} {}", "x".repeat(i % 300)))
        .collect();
    let sent = lines.clone();
    let write = tokio::spawn(async move {
        for line in sent {
            writer.write_all(line.as_bytes()).await.unwrap();
            writer.write_all(b"\n").await.unwrap();
        }
        writer.shutdown().await.unwrap(); // EOF: cat ends
    });
    let mut reader = BufReader::new(reader).lines();
    let mut got = Vec::new();
    timeout(LIMIT, async {
        while let Some(line) = reader.next_line().await.unwrap() {
            got.push(line);
        }
    })
    .await
    .expect("stream stalled");
    write.await.unwrap();
    assert_eq!(got, lines);

    // A request/response exchange, then dropping the writer ends the command too.
    let (mut writer, mut reader) = s.open_stream("head -n 1").await.unwrap();
    writer.write_all(b"ping\n").await.unwrap();
    let mut answer = String::new();
    timeout(LIMIT, reader.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer, "ping\n");
    let (writer, mut reader) = s.open_stream("cat; echo done").await.unwrap();
    drop(writer);
    let mut answer = String::new();
    timeout(LIMIT, reader.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer, "done\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_in_parallel() {
    let h = Hosts::start(3);
    let opts = h.options();
    let runs = (0..3).map(|i| {
        let (target, opts) = (h.target(i), opts.clone());
        async move {
            let s = Session::connect(&target, &opts).await?;
            let out = s.exec("hostname").await?;
            s.close().await;
            Ok::<_, SshError>(out.stdout_lossy().trim().to_string())
        }
    });
    let names = timeout(LIMIT, futures_util::future::join_all(runs))
        .await
        .unwrap();
    let names: Vec<String> = names.into_iter().map(|r| r.unwrap()).collect();
    let expected: Vec<String> = h.hosts.iter().map(|x| x.name.clone()).collect();
    assert_eq!(names, expected);
    let recorded = std::fs::read_to_string(h.known_hosts()).unwrap();
    assert_eq!(recorded.lines().count(), 3, "{recorded}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_hosts_strict_then_accept_new_once() {
    let h = Hosts::start(1);
    let strict = SshOptions {
        policy: HostKeyPolicy::Strict,
        ..h.options()
    };
    let err = connect_err(&h.target(0), &strict).await;
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            SshError::HostKey {
                source: KnownHostsError::Unknown { .. },
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains(h.ip(0)) && msg.contains("--accept-new"),
        "{msg}"
    );
    assert!(!h.known_hosts().exists(), "strict wrote the file");

    connect(&h.target(0), &h.options()).await.close().await;
    let first = std::fs::read_to_string(h.known_hosts()).unwrap();
    assert_eq!(first.lines().count(), 1);
    assert!(first.starts_with(&format!("{} ssh-", h.ip(0))), "{first}");
    connect(&h.target(0), &h.options()).await.close().await;
    connect(&h.target(0), &strict).await.close().await;
    assert_eq!(std::fs::read_to_string(h.known_hosts()).unwrap(), first);

    // A restarted container keeps its host key.
    h.stop(0);
    h.start_again(0);
    connect(&h.target(0), &strict).await.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_host_key_is_refused_with_file_and_line() {
    let h = Hosts::start(1);
    std::fs::write(h.known_hosts(), "# datarun known hosts\n").unwrap();
    connect(&h.target(0), &h.options()).await.close().await;
    let before = std::fs::read_to_string(h.known_hosts()).unwrap();
    h.recreate(0); // same IP, new host keys
    let err = connect_err(&h.target(0), &h.options()).await;
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            SshError::HostKey {
                source: KnownHostsError::Changed { line: 2, .. },
                ..
            }
        ),
        "{msg}"
    );
    let at = format!("{}:2", h.known_hosts().display());
    assert!(
        msg.contains(h.ip(0)) && msg.contains(&at) && msg.contains("CHANGED"),
        "{msg}"
    );
    assert_eq!(std::fs::read_to_string(h.known_hosts()).unwrap(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_host_fails_within_the_connect_timeout() {
    let h = Hosts::start(1);
    connect(&h.target(0), &h.options()).await.close().await;
    let opts = SshOptions {
        connect_timeout: Duration::from_secs(2),
        ..h.options()
    };
    for (how, cut, restore) in [
        (
            "stopped",
            Hosts::stop as fn(&Hosts, usize),
            Hosts::start_again as fn(&Hosts, usize),
        ),
        ("disconnected", Hosts::disconnect, Hosts::reconnect),
    ] {
        cut(&h, 0);
        let started = Instant::now();
        let err = connect_err(&h.target(0), &opts).await;
        let took = started.elapsed();
        let msg = err.to_string();
        eprintln!("{how}: {took:?}: {msg}");
        assert!(
            took < Duration::from_millis(2600),
            "{how}: took {took:?}: {msg}"
        );
        assert!(
            matches!(
                err,
                SshError::TimedOut { .. } | SshError::Unreachable { .. }
            ),
            "{how}: {msg}"
        );
        assert!(msg.contains(&format!("{}:22", h.ip(0))), "{msg}");
        restore(&h, 0);
        connect(&h.target(0), &opts).await.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_identity_files_are_named() {
    let h = Hosts::start(1);
    let dir = h.dir.path();
    let garbage = dir.join("garbage_key");
    std::fs::write(&garbage, b"\xff\xfe\x00 binary").unwrap();
    let text = dir.join("text_key");
    std::fs::write(&text, "hello\n").unwrap();
    let encrypted = keygen(dir, "id_encrypted", "ed25519", "secret passphrase");
    for (path, why) in [
        (dir.join("missing_key"), "cannot read it"),
        (garbage, "not a text file"),
        (text, "not a private key"),
        (encrypted, "load it into ssh-agent"),
    ] {
        let target = SshTarget {
            identity_files: vec![path.clone()],
            ..h.target(0)
        };
        let err = connect_err(&target, &h.options()).await;
        let msg = err.to_string();
        assert!(matches!(err, SshError::Identity { .. }), "{msg}");
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains(why),
            "{msg}"
        );
        assert!(msg.contains(h.ip(0)), "{msg}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_is_refused_naming_user_and_key() {
    let h = Hosts::start(1);
    let stranger = keygen(h.dir.path(), "id_stranger", "ed25519", "");
    let target = SshTarget {
        identity_files: vec![stranger.clone()],
        ..h.target(0)
    };
    let err = connect_err(&target, &h.options()).await;
    let msg = err.to_string();
    assert!(matches!(err, SshError::AuthRefused { .. }), "{msg}");
    assert!(
        msg.contains("user root") && msg.contains(&stranger.display().to_string()),
        "{msg}"
    );
    let other_user = SshTarget {
        user: "nobody".into(),
        ..h.target(0)
    };
    let msg = connect_err(&other_user, &h.options()).await.to_string();
    assert!(msg.contains("user nobody"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_key_authenticates_with_sha2() {
    let h = Hosts::start(1);
    let target = SshTarget {
        identity_files: vec![h.rsa.clone()],
        ..h.target(0)
    };
    // OpenSSH 9 refuses SHA-1 `ssh-rsa` signatures by default: success means rsa-sha2-*.
    let s = connect(&target, &h.options()).await;
    assert_eq!(s.exec("echo rsa").await.unwrap().stdout_lossy(), "rsa\n");
    s.close().await;
    assert!(
        h.logs(0).contains("Accepted publickey for root"),
        "{}",
        h.logs(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_server_times_out_in_the_handshake() {
    // A loopback listener that accepts and never speaks SSH.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(socket);
    });
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path(), "id", "ed25519", "");
    let target = SshTarget {
        port,
        ..SshTarget::new("127.0.0.1", "root", key)
    };
    let opts = SshOptions {
        connect_timeout: Duration::from_secs(1),
        ..SshOptions::new(dir.path().join("known_hosts"))
    };
    let started = Instant::now();
    let err = connect_err(&target, &opts).await;
    let msg = err.to_string();
    assert!(started.elapsed() < Duration::from_millis(1600), "{msg}");
    assert!(matches!(err, SshError::TimedOut { .. }), "{msg}");
    assert!(
        msg.contains(&format!("127.0.0.1:{port}")) && msg.contains("handshake"),
        "{msg}"
    );
    hold.abort();
}
