//! A throwaway PostgreSQL cluster for tests: `initdb` in a temp dir, `postgres` on a free
//! loopback port (fsync off: tests only, unless `DATARUN_PG_DURABLE=1`), one per test
//! process, one database per test (`database`). Torn down when the test process ends (a reaper kills the server and removes
//! the dir), never a shared server. Run as the `postgres` user when the tests run as root.
//! A missing PostgreSQL fails the tests loudly (they never skip).

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A running cluster: its port and where it lives.
pub struct Cluster {
    pub port: u16,
    pub dir: PathBuf,
    /// The server, stopped by the reaper once this process is gone.
    pub server: std::process::Child,
}

/// Where `initdb` and `postgres` are: on PATH, or Debian's /usr/lib/postgresql/<v>/bin.
fn bin_dir() -> Option<PathBuf> {
    // A link on PATH (say /usr/local/bin/initdb) leads to the directory of all the tools.
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .filter_map(|d| std::fs::canonicalize(d.join("initdb")).ok())
            .filter_map(|initdb| initdb.parent().map(Path::to_path_buf))
            .find(|d| d.join("postgres").is_file() && d.join("createdb").is_file())
    });
    if on_path.is_some() {
        return on_path;
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|d| d.join("initdb").is_file() && d.join("postgres").is_file())
        .collect();
    versions.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop()
}

/// The uid and gid of the `postgres` user when the tests run as root (initdb refuses root).
fn run_as() -> Option<(u32, u32)> {
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    let line = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .expect("tests run as root need the postgres user (Debian's postgresql package makes it)");
    let f: Vec<&str> = line.split(':').collect();
    Some((f[2].parse().unwrap(), f[3].parse().unwrap()))
}

fn command(program: &Path, user: Option<(u32, u32)>) -> Command {
    let mut c = Command::new(program);
    if let Some((uid, gid)) = user {
        c.uid(uid).gid(gid);
    }
    c
}

/// `DATARUN_PG_DURABLE=1` (the benches): the server syncs its commits as a real one does.
fn durable() -> bool {
    std::env::var("DATARUN_PG_DURABLE").is_ok_and(|v| v == "1")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn start() -> Cluster {
    let bin = bin_dir().expect("checked by `cluster`");
    let user = run_as();
    let dir = tempfile::Builder::new()
        .prefix("datarun-pg-")
        .tempdir()
        .expect("temp dir")
        .keep();
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown the cluster dir");
    }
    let data = dir.join("data");
    let out = command(&bin.join("initdb"), user)
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
            "-D",
        ])
        .arg(&data)
        .output()
        .expect("run initdb");
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = free_port();
    let log = std::fs::File::create(dir.join("server.log")).expect("server log");
    let child = command(&bin.join("postgres"), user)
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-k"])
        .arg(&dir)
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "max_connections=200",
        ])
        .args(if durable() {
            &[][..]
        } else {
            &[
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ][..]
        })
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start postgres");
    // The reaper (in the background, so `sh` returns at once): once this test process is gone,
    // it stops the server and removes its files.
    let reaper = Command::new("sh")
        .arg("-c")
        .arg(
            "(while kill -0 \"$1\" 2>/dev/null; do sleep 1; done; kill -QUIT \"$2\" 2>/dev/null; \
             sleep 2; kill -KILL \"$2\" 2>/dev/null; rm -rf \"$3\") >/dev/null 2>&1 </dev/null &",
        )
        .args([
            "reaper",
            &std::process::id().to_string(),
            &child.id().to_string(),
        ])
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("start the cluster's reaper");
    assert!(reaper.success(), "cannot start the cluster's reaper");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = command(&bin.join("pg_isready"), None)
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-t", "2"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "PostgreSQL did not accept connections within 30s; its log: {}",
            std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Cluster {
        port,
        dir,
        server: child,
    }
}

/// This process's cluster, started on first use. Fails loudly (never skips) when PostgreSQL
/// is not installed.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        assert!(
            bin_dir().is_some(),
            "the PostgreSQL store tests need initdb and postgres (Debian: apt-get install postgresql)"
        );
        start()
    })
}

/// A new, empty database in this process's cluster: its URL.
pub fn database() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let cluster = cluster();
    let name = format!(
        "t{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let bin = bin_dir().expect("found by cluster");
    let out = Command::new(bin.join("createdb"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &cluster.port.to_string(),
            "-U",
            "postgres",
        ])
        .arg(&name)
        .output()
        .expect("run createdb");
    assert!(
        out.status.success(),
        "createdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("postgres://postgres@127.0.0.1:{}/{name}", cluster.port)
}

/// A TCP relay between a master and the database that a test can stop (a partition: bytes
/// wait in the kernel, nothing is lost) and start again.
pub struct Relay {
    pub port: u16,
    paused: tokio::sync::watch::Sender<bool>,
}

impl Relay {
    pub async fn start(upstream: u16) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (paused, watch) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let watch = watch.clone();
                tokio::spawn(async move {
                    let Ok(up) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return;
                    };
                    let (dr, dw) = down.into_split();
                    let (ur, uw) = up.into_split();
                    tokio::join!(pump(dr, uw, watch.clone()), pump(ur, dw, watch));
                });
            }
        });
        Relay { port, paused }
    }

    pub fn pause(&self, on: bool) {
        self.paused.send_replace(on);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut paused: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while *paused.borrow_and_update() {
            if paused.changed().await.is_err() {
                return;
            }
        }
        let n = tokio::select! {
            n = from.read(&mut buf) => n,
            _ = paused.changed() => continue,
        };
        let n = match n {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        while *paused.borrow_and_update() {
            if paused.changed().await.is_err() {
                return;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
