//! Provisioning through a bastion with keys only in an `ssh-agent`, as operators do it.
//!
//! Two sshd containers (`datarun/sshd-host:0.3`): the bastion on a Docker network, and the
//! target in the bastion's network namespace with its sshd on 127.0.0.1:2222 only, so that only
//! the bastion reaches it. The only key is passphrase-protected and lives in a real `ssh-agent`
//! started by the test; no key file is named anywhere. An ssh config file (never the real
//! ~/.ssh: HOME is a temp dir) gives the alias, HostName, Port, User and ProxyJump.

#[path = "common/hosts.rs"]
mod hosts;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use datarun::provision::{HostKeyPolicy, Session, SshOptions, SshTarget};
use hosts::{docker, keygen, try_docker, IMAGE};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_datarun");
const PASSPHRASE: &str = "correct horse battery";

/// Containers and the network, removed on drop (also when the test fails).
struct Lab {
    network: String,
    containers: Vec<String>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for name in self.containers.iter().rev() {
            if let Err(e) = try_docker(&["rm", "-f", "-v", name]) {
                eprintln!("cleanup: docker rm {name}: {e}");
            }
        }
        if let Err(e) = try_docker(&["network", "rm", &self.network]) {
            eprintln!("cleanup: docker network rm {}: {e}", self.network);
        }
    }
}

/// A real `ssh-agent -D -a SOCKET`, killed on drop.
struct Agent {
    child: Child,
    socket: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Agent {
    fn start(dir: &Path) -> Agent {
        let socket = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("this test needs ssh-agent (openssh-client): {e}"));
        let agent = Agent { child, socket };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !agent.socket.exists() {
            assert!(
                Instant::now() < deadline,
                "ssh-agent made no socket in 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        agent
    }

    /// `ssh-add KEY` answering the passphrase through SSH_ASKPASS, without a terminal.
    fn add(&self, dir: &Path, key: &Path) {
        let askpass = dir.join("askpass.sh");
        std::fs::write(&askpass, format!("#!/bin/sh\necho '{PASSPHRASE}'\n")).unwrap();
        let mut perms = std::fs::metadata(&askpass).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&askpass, perms).unwrap();
        self.ssh_add(&[key.as_os_str()], &askpass);
    }

    fn ssh_add(&self, args: &[&std::ffi::OsStr], askpass: &Path) {
        let out = Command::new("ssh-add")
            .args(args)
            .env("SSH_AUTH_SOCK", &self.socket)
            .env("SSH_ASKPASS", askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0")
            .stdin(Stdio::null())
            .output()
            .expect("run ssh-add");
        assert!(
            out.status.success(),
            "ssh-add {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Waits until the container's sshd says it listens (its log, `sshd -D -e`).
fn wait_listening(name: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new("docker")
            .args(["logs", name])
            .output()
            .expect("docker logs");
        let log = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        if log.contains(what) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "sshd in {name} never said {what:?}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A `datarun serve` started by the test, killed on drop.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a master with this inventory, ssh config, agent and HOME, and waits until its
/// runner is `ready` (connected over ssh, `agent --ping` answered, hello received).
fn master_reaches_the_runner(dir: &Path, config: &Path, agent: &Path, known_hosts: &Path) {
    let data = dir.join("data");
    let child = Command::new(BIN)
        .arg("serve")
        .arg("--data-dir")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0", "--inventory"])
        .arg(dir.join("runners.toml"))
        .arg("--known-hosts")
        .arg(known_hosts)
        .env("HOME", dir)
        .env("DATARUN_SSH_CONFIG", config)
        .env("SSH_AUTH_SOCK", agent)
        .env("DATARUN_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn datarun serve");
    let _serve = Serve(child);
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = Value::Null;
    loop {
        let url = std::fs::read_to_string(data.join("server")).ok();
        let token = std::fs::read_to_string(data.join("admin.token")).ok();
        if let (Some(url), Some(token)) = (url, token) {
            let got = http
                .get(format!("{}/api/v1/runners", url.trim()))
                .bearer_auth(token.trim())
                .send()
                .and_then(|r| r.json::<Value>());
            if let Ok(v) = got {
                if v["runners"][0]["state"] == "ready" {
                    return;
                }
                last = v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the master never reached the runner through the bastion: {last}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `datarun provision` with this config, agent socket (if any) and HOME, nothing else.
fn provision(dir: &Path, config: &Path, agent: Option<&Path>, args: &[&str]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.arg("provision")
        .arg(dir.join("runners.toml"))
        .arg("--known-hosts")
        .arg(dir.join("known_hosts"))
        .arg("--ssh-config")
        .arg(config)
        .args(["--connect-timeout", "5s", "--json"])
        .args(args)
        .env("HOME", dir)
        .env("DATARUN_LOG", "warn")
        .env_remove("DATARUN_SSH_CONFIG")
        .env_remove("SSH_AUTH_SOCK");
    if let Some(socket) = agent {
        cmd.env("SSH_AUTH_SOCK", socket);
    }
    let out = cmd.output().expect("run datarun provision");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!("--- provision {args:?}: exit {}\n{}", run.code, run.stderr);
    run
}

fn reports(run: &Run) -> Vec<Value> {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", run.stdout, run.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisions_through_a_bastion_with_keys_only_in_ssh_agent() {
    try_docker(&["image", "inspect", "--format", "{{.Id}}", IMAGE]).unwrap_or_else(|_| {
        panic!("image {IMAGE} is missing: build it with ./images/build-sshd.sh")
    });
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let key = keygen(dir, "id_protected", "ed25519", PASSPHRASE);
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();

    let pid = std::process::id();
    let mut lab = Lab {
        network: format!("ssh-bastion-{pid}"),
        containers: Vec::new(),
    };
    docker(&[
        "network",
        "create",
        "--label",
        "datarun.test=ssh",
        &lab.network,
    ]);
    let bastion = format!("ssh-bastion-{pid}-bastion");
    let target = format!("ssh-bastion-{pid}-target");
    let keys = format!("AUTHORIZED_KEYS={public}");
    lab.containers.push(bastion.clone());
    docker(&[
        "run",
        "-d",
        "--name",
        &bastion,
        "--network",
        &lab.network,
        "--label",
        "datarun.test=ssh",
        "-e",
        &keys,
        IMAGE,
    ]);
    // The target shares the bastion's network namespace and listens on its loopback only.
    lab.containers.push(target.clone());
    let netns = format!("container:{bastion}");
    docker(&[
        "run",
        "-d",
        "--name",
        &target,
        "--network",
        &netns,
        "--label",
        "datarun.test=ssh",
        "-e",
        &keys,
        IMAGE,
        "-o",
        "ListenAddress=127.0.0.1:2222",
    ]);
    wait_listening(&bastion, "Server listening on 0.0.0.0 port 22");
    wait_listening(&target, "Server listening on 127.0.0.1 port 2222");
    let bastion_ip = docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &bastion,
    ]);
    assert!(!bastion_ip.is_empty(), "no IP for the bastion");

    // The network's shape: the target's sshd is not reachable from here.
    let direct = std::net::TcpStream::connect_timeout(
        &format!("{bastion_ip}:2222").parse().unwrap(),
        Duration::from_secs(2),
    );
    assert!(direct.is_err(), "the target must not be reachable directly");

    let agent = Agent::start(dir);
    agent.add(dir, &key);
    // No key file anywhere datarun looks: HOME is `dir`, whose .ssh does not exist, and the
    // inventory names none.
    std::fs::rename(&key, dir.join("elsewhere")).unwrap();

    let config = dir.join("ssh_config");
    let common = format!("Host jump-host\n  HostName {bastion_ip}\n  User root\n");
    std::fs::write(
        &config,
        format!(
            "Host behind-*\n  HostName 127.0.0.1\n  Port 2222\n  User root\n  \
             ProxyJump jump-host\n\n{common}"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("runners.toml"),
        "[[runner]]\nname = \"behind\"\naddress = \"behind-1\"\nexecutor = \"process\"\n",
    )
    .unwrap();

    let started = Instant::now();
    let run = provision(dir, &config, Some(&agent.socket), &["--accept-new"]);
    let took = started.elapsed();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let r = reports(&run);
    assert_eq!(r[0]["status"], "changed", "{}", run.stdout);
    let health = r[0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "health")
        .expect("a health step");
    assert!(
        health["detail"].as_str().unwrap_or("").contains("answers"),
        "{health}"
    );
    eprintln!("provisioned through the bastion in {took:?}");

    // Both hops' host keys were checked and recorded, each under its own name.
    let kh = dir.join("known_hosts");
    let text = std::fs::read_to_string(&kh).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.contains(&format!("{bastion_ip} ssh-")), "{text}");
    assert!(text.contains("[127.0.0.1]:2222 ssh-"), "{text}");

    // Hashed as `ssh-keygen -H` does, the file still vouches for both hosts (strict now).
    let hashed = Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&kh)
        .output()
        .unwrap();
    assert!(
        hashed.status.success(),
        "{}",
        String::from_utf8_lossy(&hashed.stderr)
    );
    let text = std::fs::read_to_string(&kh).unwrap();
    assert!(
        !text.contains(&bastion_ip) && text.starts_with("|1|"),
        "{text}"
    );
    let run = provision(dir, &config, Some(&agent.socket), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(reports(&run)[0]["status"], "ok", "{}", run.stdout);

    // The master's way in: the same resolution, one link through the bastion, `agent --ping`.
    let with_agent = dir.join("ssh_config_agent");
    let nowhere = dir.join("no-such-key");
    let socket_line = format!(
        "Host *\n  IdentityAgent {}\n  IdentityFile {}\n  UserKnownHostsFile none\n",
        agent.socket.display(),
        nowhere.display()
    );
    std::fs::write(
        &with_agent,
        std::fs::read_to_string(&config).unwrap() + &socket_line,
    )
    .unwrap();
    let inventory = datarun::inventory::load(&dir.join("runners.toml")).unwrap();
    let opts = SshOptions {
        connect_timeout: Duration::from_secs(5),
        policy: HostKeyPolicy::Strict,
        config: Some(with_agent),
        ..SshOptions::new(&kh)
    };
    let resolved = SshTarget::for_runner(&inventory.runners[0], &opts).unwrap();
    assert_eq!((resolved.host.as_str(), resolved.port), ("127.0.0.1", 2222));
    assert_eq!(resolved.jumps.len(), 1);
    assert_eq!(resolved.jumps[0].host, bastion_ip);
    assert_eq!(resolved.identity_files, [nowhere]);
    assert_eq!(resolved.agent.as_deref(), Some(agent.socket.as_path()));
    let session = Session::connect(&resolved, &opts).await.unwrap();
    let ping = session
        .exec("/var/lib/datarun/bin/datarun agent --ping /var/lib/datarun/agent.sock")
        .await
        .unwrap();
    assert!(ping.success(), "{}", ping.stderr_lossy());
    let facts: Value = serde_json::from_str(&ping.stdout_lossy()).unwrap();
    assert_eq!(facts["agent_version"], env!("CARGO_PKG_VERSION"));
    session.close().await;

    // The master's own links: `serve` follows $DATARUN_SSH_CONFIG and the agent the same way.
    tokio::task::block_in_place(|| master_reaches_the_runner(dir, &config, &agent.socket, &kh));

    // The operator's own hashed ~/.ssh/known_hosts vouches for both hops, read-only, when
    // datarun's file knows neither (strict: nothing is recorded).
    std::fs::create_dir(dir.join(".ssh")).unwrap();
    std::fs::rename(&kh, dir.join(".ssh/known_hosts")).unwrap();
    let run = provision(dir, &config, Some(&agent.socket), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(reports(&run)[0]["status"], "ok", "{}", run.stdout);
    assert!(!kh.exists(), "strict checking recorded nothing");

    // Without the ProxyJump the target cannot be reached: unreachable, exit 4.
    let direct_config = dir.join("ssh_config_direct");
    std::fs::write(
        &direct_config,
        format!("Host behind-*\n  HostName {bastion_ip}\n  Port 2222\n  User root\n"),
    )
    .unwrap();
    let run = provision(dir, &direct_config, Some(&agent.socket), &[]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert_eq!(reports(&run)[0]["status"], "unreachable");

    // An agent without the key: refused, saying what was tried.
    agent.ssh_add(&["-D".as_ref()], &dir.join("askpass.sh"));
    let run = provision(dir, &config, Some(&agent.socket), &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let reason = reports(&run)[0]["failure"]["reason"].to_string();
    assert!(
        reason.contains("authentication refused for user root")
            && reason.contains("it holds no key"),
        "{reason}"
    );
    drop(lab);
}
