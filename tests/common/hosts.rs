//! Test support: real sshd hosts in containers (`datarun/sshd-host:0.3`, built by
//! `images/build-sshd.sh`) on a Docker network of their own, reachable from the test process by
//! IP. Containers and network are removed on drop. Without Docker or the image the tests fail
//! loudly: they never skip.
//!
//! Runner hosts ([`Hosts::start_runners`]) also get the engine's socket, so an agent there starts
//! sibling containers on this machine's engine, and a state dir that is a directory of this
//! machine bind-mounted at the same path (sibling containers' bind mounts are resolved here).
//! Every container and network carries the label `datarun.test=ssh` for leftover cleanup.
#![allow(dead_code)]

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use datarun::provision::{HostKeyPolicy, SshOptions, SshTarget};

pub const IMAGE: &str = "datarun/sshd-host:0.3";

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Runs docker with `args`; panics with its stderr when it fails.
pub fn docker(args: &[&str]) -> String {
    try_docker(args).unwrap_or_else(|e| panic!("docker {}: {e}", args.join(" ")))
}

pub fn try_docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("these tests need Docker (the `docker` command could not run: {e})")
        });
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Makes a key pair with ssh-keygen; returns the private key path (public: `<path>.pub`).
pub fn keygen(dir: &Path, name: &str, kind: &str, passphrase: &str) -> PathBuf {
    let path = dir.join(name);
    let mut cmd = Command::new("ssh-keygen");
    cmd.args([
        "-q",
        "-t",
        kind,
        "-N",
        passphrase,
        "-C",
        "datarun-test",
        "-f",
    ])
    .arg(&path);
    if kind == "rsa" {
        cmd.args(["-b", "3072"]);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("these tests need ssh-keygen (openssh-client): {e}"));
    assert!(
        out.status.success(),
        "ssh-keygen -t {kind}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

pub struct Host {
    pub name: String,
    pub ip: String,
    /// Runner hosts: the state dir, the same path here and in the container.
    pub state_dir: Option<PathBuf>,
}

/// What a host container gets besides sshd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// sshd only.
    Plain,
    /// A runner: a state dir bind-mounted at the same path, and the engine's socket when
    /// `docker` is true (false: a runner without Docker).
    Runner { docker: bool },
}

/// A non-root user on every host, with the same keys and password-less sudo.
pub const LOGIN_USER: &str = "deploy";

/// The engine's socket, given to runner hosts at the same path.
pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// N sshd containers on a fresh network, with `root` authorized for an ed25519 and an RSA key.
pub struct Hosts {
    pub dir: tempfile::TempDir,
    pub network: String,
    pub ed25519: PathBuf,
    pub rsa: PathBuf,
    pub hosts: Vec<Host>,
    authorized: String,
    kind: Kind,
}

impl Hosts {
    /// N plain sshd hosts.
    pub fn start(n: usize) -> Hosts {
        Hosts::start_kind(n, Kind::Plain)
    }

    /// N runner hosts with the engine's socket and a state dir each.
    pub fn start_runners(n: usize) -> Hosts {
        Hosts::start_kind(n, Kind::Runner { docker: true })
    }

    pub fn start_kind(n: usize, kind: Kind) -> Hosts {
        let version = try_docker(&["version", "--format", "{{.Server.Version}}"]);
        let version =
            version.unwrap_or_else(|e| panic!("these tests need a running Docker engine: {e}"));
        assert!(!version.is_empty(), "docker version printed nothing");
        try_docker(&["image", "inspect", "--format", "{{.Id}}", IMAGE]).unwrap_or_else(|_| {
            panic!("image {IMAGE} is missing: build it with ./images/build-sshd.sh")
        });

        let dir = tempfile::tempdir().expect("temp dir");
        let ed25519 = keygen(dir.path(), "id_ed25519", "ed25519", "");
        let rsa = keygen(dir.path(), "id_rsa", "rsa", "");
        let authorized = [&ed25519, &rsa]
            .iter()
            .map(|k| std::fs::read_to_string(k.with_extension("pub")).unwrap())
            .collect::<Vec<_>>()
            .join("");

        let n_net = NEXT.fetch_add(1, Ordering::Relaxed);
        let network = format!("datarun-test-{}-{n_net}", std::process::id());
        let subnet = create_network(&network, n_net);
        let mut hosts = Hosts {
            dir,
            network,
            ed25519,
            rsa,
            hosts: Vec::new(),
            authorized,
            kind,
        };
        for i in 0..n {
            let state_dir = match kind {
                Kind::Plain => None,
                Kind::Runner { .. } => {
                    let dir = hosts.dir.path().join(format!("state-h{i}"));
                    std::fs::create_dir_all(&dir).expect("state dir");
                    Some(dir)
                }
            };
            let host = Host {
                name: format!("{}-h{i}", hosts.network),
                ip: format!("{subnet}.{}", 10 + i),
                state_dir,
            };
            hosts.hosts.push(host);
            hosts.run(i);
        }
        for i in 0..n {
            hosts.wait_ready(i);
        }
        hosts
    }

    pub fn ip(&self, i: usize) -> &str {
        &self.hosts[i].ip
    }

    /// `root@<ip>:22` with the ed25519 key.
    pub fn target(&self, i: usize) -> SshTarget {
        SshTarget::new(self.ip(i), "root", self.ed25519.clone())
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// Options on this test's known_hosts file: accept-new, 5 s connect timeout.
    pub fn options(&self) -> SshOptions {
        SshOptions {
            connect_timeout: Duration::from_secs(5),
            policy: HostKeyPolicy::AcceptNew,
            ..SshOptions::new(self.known_hosts())
        }
    }

    /// The state dir of runner host `i` (panics for plain hosts).
    pub fn state_dir(&self, i: usize) -> &Path {
        self.hosts[i]
            .state_dir
            .as_deref()
            .expect("a runner host (Hosts::start_runners)")
    }

    /// One `[[runner]]` entry per host, named `h0`, `h1`, ..., reached as root with the ed25519
    /// key, with its state dir; `extra` is added to every entry (e.g. `"executor = \"docker\""`).
    pub fn inventory(&self, extra: &str) -> String {
        let mut out = String::new();
        for (i, host) in self.hosts.iter().enumerate() {
            out += &format!(
                "[[runner]]\nname = \"h{i}\"\naddress = \"{}\"\nuser = \"root\"\n\
                 identity_file = \"{}\"\n",
                host.ip,
                self.ed25519.display()
            );
            if let Some(dir) = &host.state_dir {
                out += &format!("state_dir = \"{}\"\n", dir.display());
            }
            if !extra.is_empty() {
                out += extra.trim_end();
                out += "\n";
            }
            out += "\n";
        }
        out
    }

    /// Runs a shell command in host `i` (as root, through `docker exec`), returns its stdout.
    pub fn sh(&self, i: usize, script: &str) -> Result<String, String> {
        try_docker(&["exec", &self.hosts[i].name, "sh", "-c", script])
    }

    fn run(&self, i: usize) {
        let host = &self.hosts[i];
        let env = format!("AUTHORIZED_KEYS={}", self.authorized);
        let mut args = vec![
            "run".to_string(),
            "-d".into(),
            "--name".into(),
            host.name.clone(),
            "--hostname".into(),
            host.name.clone(),
            "--network".into(),
            self.network.clone(),
            "--ip".into(),
            host.ip.clone(),
            "--label".into(),
            "datarun.test=ssh".into(),
            "-e".into(),
            env,
            "-e".into(),
            format!("LOGIN_USER={LOGIN_USER}"),
        ];
        if let Some(dir) = &host.state_dir {
            args.push("-v".into());
            args.push(format!("{0}:{0}", dir.display()));
        }
        if self.kind == (Kind::Runner { docker: true }) {
            args.push("-v".into());
            args.push(format!("{DOCKER_SOCKET}:{DOCKER_SOCKET}"));
        }
        args.push(IMAGE.into());
        docker(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }

    /// Waits until sshd on host `i` sends its banner.
    pub fn wait_ready(&self, i: usize) {
        let addr: SocketAddr = format!("{}:22", self.ip(i)).parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = String::new();
        while Instant::now() < deadline {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                Ok(mut s) => {
                    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    let mut buf = [0u8; 8];
                    match s.read(&mut buf) {
                        Ok(n) if buf[..n].starts_with(b"SSH-") => return,
                        Ok(n) => last = format!("banner {:?}", &buf[..n]),
                        Err(e) => last = e.to_string(),
                    }
                }
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let logs = try_docker(&["logs", "--tail", "20", &self.hosts[i].name]).unwrap_or_default();
        panic!(
            "sshd in {} ({addr}) never answered: {last}\n{logs}",
            self.hosts[i].name
        );
    }

    /// `docker stop` (the host keys stay in the container).
    pub fn stop(&self, i: usize) {
        docker(&["stop", "-t", "2", &self.hosts[i].name]);
    }

    /// `docker start` again (same IP, same host keys) and wait for sshd.
    pub fn start_again(&self, i: usize) {
        docker(&["start", &self.hosts[i].name]);
        self.wait_ready(i);
    }

    /// Takes host `i` off the network (its IP stops answering).
    pub fn disconnect(&self, i: usize) {
        docker(&["network", "disconnect", &self.network, &self.hosts[i].name]);
    }

    /// Puts host `i` back on the network with the same IP.
    pub fn reconnect(&self, i: usize) {
        let host = &self.hosts[i];
        docker(&[
            "network",
            "connect",
            "--ip",
            &host.ip,
            &self.network,
            &host.name,
        ]);
        self.wait_ready(i);
    }

    /// Replaces host `i` by a new container with the same IP: new host keys.
    pub fn recreate(&self, i: usize) {
        docker(&["rm", "-f", &self.hosts[i].name]);
        self.run(i);
        self.wait_ready(i);
    }

    /// The last lines of a host's sshd log.
    pub fn logs(&self, i: usize) -> String {
        let out = Command::new("docker")
            .args(["logs", "--tail", "20", &self.hosts[i].name])
            .output()
            .expect("docker logs");
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout)
    }
}

/// Creates `name` on a free 10.213.x.0/24 subnet (a fixed subnet lets a recreated or
/// reconnected container keep its IP); returns `10.213.x`.
fn create_network(name: &str, n: usize) -> String {
    let seed = (std::process::id() as usize)
        .wrapping_mul(31)
        .wrapping_add(n * 17);
    let mut last = String::new();
    for attempt in 0..60 {
        let x = (seed + attempt * 7) % 250 + 2;
        let prefix = format!("10.213.{x}");
        let subnet = format!("{prefix}.0/24");
        match try_docker(&[
            "network",
            "create",
            "--subnet",
            &subnet,
            "--label",
            "datarun.test=ssh",
            name,
        ]) {
            Ok(_) => return prefix,
            Err(e) if e.contains("overlap") => last = e,
            Err(e) => panic!("docker network create {name} --subnet {subnet}: {e}"),
        }
    }
    panic!("no free 10.213.x.0/24 subnet for the test network: {last}");
}

impl Drop for Hosts {
    fn drop(&mut self) {
        let names: Vec<&str> = self.hosts.iter().map(|h| h.name.as_str()).collect();
        if !names.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(names);
            if let Err(e) = try_docker(&args) {
                eprintln!("cleanup: docker rm: {e}");
            }
        }
        if let Err(e) = try_docker(&["network", "rm", &self.network]) {
            eprintln!("cleanup: docker network rm {}: {e}", self.network);
        }
    }
}

/// Removes fold containers a dead host's agent left on the shared engine.
pub struct Leftovers(pub Vec<PathBuf>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for state in &self.0 {
            let dir = state.join("agent");
            let dir = dir.canonicalize().unwrap_or(dir);
            let ns = &datarun::store::sha256_hex(dir.to_string_lossy().as_bytes())[..12];
            let filter = format!("label=datarun.namespace={ns}");
            if let Ok(out) = Command::new("docker")
                .args(["ps", "-aq", "--filter", &filter])
                .output()
            {
                for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("docker").args(["rm", "-f", id]).output();
                }
            }
        }
    }
}
