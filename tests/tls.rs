//! TLS end to end (issue 12 item 3): a CA and a server certificate made here with rcgen, the
//! master serving HTTPS, the CLI and the Python client trusting the CA by file (and failing
//! clearly without it), `serve` refusing bad certificate files by name, and the CLI never
//! sending the local admin token to another server.

mod common;

use common::{Master, BIN};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// PEM files of a test PKI: a CA, a server certificate it signed for localhost and 127.0.0.1,
/// the server's key, and a key that belongs to nothing.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    other_key: PathBuf,
}

fn make_pki(dir: &Path) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, "datarun test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca.self_signed(&ca_key).unwrap();

    let key = KeyPair::generate().unwrap();
    let mut server =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    server
        .distinguished_name
        .push(DnType::CommonName, "datarun test master");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.use_authority_key_identifier_extension = true;
    let server = server.signed_by(&key, &ca, &ca_key).unwrap();

    let pki = Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        other_key: dir.join("other.key"),
    };
    std::fs::write(&pki.ca, ca.pem()).unwrap();
    std::fs::write(&pki.cert, server.pem()).unwrap();
    std::fs::write(&pki.key, key.serialize_pem()).unwrap();
    std::fs::write(&pki.other_key, KeyPair::generate().unwrap().serialize_pem()).unwrap();
    pki
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[test]
fn https_end_to_end_with_a_private_ca_for_the_cli_and_the_python_client() {
    let python = common::python::venv();
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = make_pki(pki_dir.path());
    let m = Master::start_tls(&pki.cert, &pki.key, &pki.ca, &[]);
    assert!(m.url.starts_with("https://127.0.0.1:"), "{}", m.url);
    let ca = pki.ca.to_str().unwrap();

    // The CLI with the CA: submit a fold, wait for it, read its output back.
    let id = m
        .cli_ok(&[
            "submit",
            "--ca-cert",
            ca,
            "--cpus",
            "0.1",
            "--memory",
            "64M",
            "--",
            "sh",
            "-c",
            "echo over-tls > $DATARUN_OUTPUT/out.txt",
        ])
        .trim()
        .to_string();
    m.cli_ok(&["queue", "wait", &id, "--timeout", "60s", "--ca-cert", ca]);
    let out = m.cli_ok(&["fold", "output", &id, "out.txt", "--ca-cert", ca]);
    assert_eq!(out, "over-tls\n");

    // Without it: a certificate error that says what to do, and a non-zero exit.
    let out = m.cli(&["queue", "status"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("certificate") && err.contains("--ca-cert"),
        "{err}"
    );
    // A CA file that is not one is refused by name.
    let out = m.cli(&["queue", "status", "--ca-cert", pki.key.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("server.key"),
        "{}",
        text(&out.stderr)
    );

    // The Python client over HTTPS: ca_cert=, then $DATARUN_CA_CERT (both over
    // $REQUESTS_CA_BUNDLE); without the CA it fails.
    let script = r#"
import os
from datarun_client import Client, Unreachable
fold_id = int(os.environ["FOLD_ID"])
c = Client(ca_cert=os.environ["CA"])
assert c.fold(fold_id)["fold"]["state"] == "done", c.fold(fold_id)
assert c.fold_output(fold_id, "out.txt") == b"over-tls\n"
os.environ["DATARUN_CA_CERT"] = os.environ["CA"]
assert Client().health()["ok"] is True
del os.environ["DATARUN_CA_CERT"]
try:
    Client().health()
except Unreachable as e:
    assert "certificate" in str(e).lower() and "ca_cert" in str(e), e
else:
    raise AssertionError("an untrusted certificate was accepted")
print("python over https: ok")
"#;
    let out = Command::new(&python)
        .args(["-c", script])
        .env("DATARUN_URL", &m.url)
        .env("DATARUN_TOKEN", &m.token)
        .env("CA", &pki.ca)
        .env("FOLD_ID", &id)
        .env_remove("DATARUN_CA_CERT")
        // A bundle without the CA: ca_cert must win over it.
        .env("REQUESTS_CA_BUNDLE", &pki.cert)
        .env_remove("CURL_CA_BUNDLE")
        .output()
        .unwrap();
    assert!(
        out.status.success() && text(&out.stdout).contains("python over https: ok"),
        "python client over HTTPS failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn a_tls_client_that_never_finishes_its_handshake_is_closed_within_the_header_timeout() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = make_pki(pki_dir.path());
    let m = Master::start_tls(&pki.cert, &pki.key, &pki.ca, &["--header-timeout", "2s"]);
    let addr = m.url.strip_prefix("https://").unwrap();
    // Silent, and a ClientHello's first bytes only: both are dropped at the timeout.
    let mut silent = std::net::TcpStream::connect(addr).unwrap();
    let mut partial = std::net::TcpStream::connect(addr).unwrap();
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    let start = Instant::now();
    for s in [&mut silent, &mut partial] {
        s.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!(
                "a stalled TLS handshake was kept {:?}: {other:?}",
                start.elapsed()
            ),
        }
    }
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_millis(3500),
        "closed after {took:?} (header timeout 2 s)"
    );
    // The master still serves HTTPS.
    assert_eq!(m.get("/folds")["folds"], serde_json::json!([]));
}

/// Runs `serve` with TLS files that cannot be used; (exit status, stderr).
fn serve_with(cert: &Path, key: &Path) -> (std::process::ExitStatus, String, PathBuf) {
    let dir = tempfile::tempdir().unwrap().keep();
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("data"))
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("serve kept running with --tls-cert {cert:?} --tls-key {key:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status, err, dir)
}

#[test]
fn serve_refuses_unusable_certificate_or_key_files_naming_them() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = make_pki(pki_dir.path());
    let garbage = pki_dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let missing = pki_dir.path().join("missing.pem");
    let cases: [(&Path, &Path, &str); 4] = [
        (&missing, &pki.key, "missing.pem"),
        (&garbage, &pki.key, "garbage.pem"),
        (&pki.cert, &pki.cert, "server.pem"),
        (&pki.cert, &pki.other_key, "other.key"),
    ];
    for (cert, key, named) in cases {
        let (status, err, dir) = serve_with(cert, key);
        assert!(!status.success(), "serve started with {cert:?} {key:?}");
        assert!(
            err.contains(named),
            "the error does not name {named}: {err}"
        );
        assert!(
            !dir.join("data/server").exists(),
            "serve wrote its server file before refusing {named}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// A listener that records every request head it gets and answers 401.
struct Recorder {
    url: String,
    heads: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Recorder {
    fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let heads = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (heads.clone(), stop.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                h.lock().unwrap().push(text(&got));
                let body = r#"{"error":{"code":"unauthorized","message":"unknown token"}}"#;
                let _ = write!(
                    conn,
                    "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Recorder { url, heads, stop }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn the_cli_never_sends_the_local_admin_token_to_another_server() {
    let m = Master::start(None);
    let other = Recorder::start();

    // --server elsewhere, no token: exit 2, a message naming the way out, nothing sent.
    let out = m.cli(&["queue", "status", "--server", &other.url]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("--token") && err.contains("admin.token") && err.contains(&other.url),
        "{err}"
    );
    // The same through DATARUN_SERVER.
    let out = Command::new(BIN)
        .args(["queue", "status"])
        .env("DATARUN_DATA_DIR", m.data_dir())
        .env("DATARUN_SERVER", &other.url)
        .env_remove("DATARUN_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(other.heads(), Vec::<String>::new(), "something was sent");

    // With a token of its own, that token (and only it) goes there.
    let out = m.cli(&[
        "queue",
        "status",
        "--server",
        &other.url,
        "--token",
        "t0k-for-other",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("unknown token"),
        "{}",
        text(&out.stderr)
    );
    let heads = other.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(
        heads[0].contains("Bearer t0k-for-other") || heads[0].contains("bearer t0k-for-other"),
        "{heads:?}"
    );
    assert!(heads.iter().all(|h| !h.contains(&m.token)), "{heads:?}");

    // --server naming the local master itself (spelled with a trailing slash) uses the token.
    let local = format!("{}/", m.url);
    m.cli_ok(&["queue", "status", "--server", &local]);
}
