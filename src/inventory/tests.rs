use super::*;

/// Parses `text` as `runners.toml`, panicking with the error if it fails.
fn ok(text: &str) -> Inventory {
    parse(text, "runners.toml").unwrap_or_else(|e| panic!("should parse, got: {e}\n{text}"))
}

fn names(inv: &Inventory) -> Vec<&str> {
    inv.runners.iter().map(|r| r.name.as_str()).collect()
}

/// The runner header every error case can append to (runner on line 1).
const LOCAL: &str = "[[runner]]\nname = \"a\"\ntransport = \"local\"\n";

// Line numbers below are those of this text: line 1 is `[defaults]`.
const GOOD: &str = r#"[defaults]
transport = "ssh"
user = "datarun"
identity_file = "~/.ssh/id_ed25519"
slots = 4
queues = ["default"]
soft_time_limit = "5m"
hard_time_limit = 600
executor = "process"

[queues.H]
priority = 10
[queues.L]
priority = -10

[[runner]]
name = "local"
transport = "local"
slots = 2
queues = ["default", "H", "L"]

[[runner]]
name = "lab"
address = "10.1.0.0/29"
cpus = 8
memory = "16G"
gpus = ["0", "1"]
labels = ["fast-disk"]
executor = "docker"

[[runner]]
name = "big"
address = "gpu-box.example:2222"
cpus = 1.5
memory = 1073741824
hard_time_limit = "1h"
queues = ["*"]
"#;

#[test]
fn good_file_applies_defaults_and_expands_cidr() {
    let inv = ok(GOOD);
    assert_eq!(
        names(&inv),
        ["local", "lab-1", "lab-2", "lab-3", "lab-4", "lab-5", "lab-6", "big"]
    );
    assert_eq!(inv.source, None);

    let local = &inv.runners[0];
    assert_eq!(local.transport, Transport::Local);
    assert_eq!((local.host.as_deref(), local.port), (None, 0));
    // ssh-only defaults are not given to a local runner.
    assert_eq!(
        (local.user.as_deref(), local.identity_file.as_ref()),
        (None, None)
    );
    assert_eq!(local.slots, 2);
    assert_eq!(local.queues, ["default", "H", "L"]);
    assert_eq!(local.executor, ExecutorKind::Process);
    assert_eq!(local.soft_time_limit_ms, Some(300_000));
    assert_eq!(local.hard_time_limit_ms, Some(600_000));
    assert_eq!(local.line, 16);

    let hosts: Vec<&str> = inv.runners[1..7]
        .iter()
        .map(|r| r.host.as_deref().unwrap())
        .collect();
    assert_eq!(
        hosts,
        ["10.1.0.1", "10.1.0.2", "10.1.0.3", "10.1.0.4", "10.1.0.5", "10.1.0.6"]
    );
    for lab in &inv.runners[1..7] {
        assert_eq!(lab.transport, Transport::Ssh);
        assert_eq!(lab.port, 22);
        assert_eq!(lab.user.as_deref(), Some("datarun"));
        assert_eq!(
            lab.identity_file.as_deref(),
            Some(Path::new("~/.ssh/id_ed25519"))
        );
        assert_eq!(lab.slots, 4);
        assert_eq!(lab.queues, ["default"]);
        assert_eq!(lab.cpus, Some(8.0));
        assert_eq!(lab.memory, Some(16 << 30));
        assert_eq!(lab.gpus, ["0", "1"]);
        assert_eq!(lab.labels, ["fast-disk"]);
        assert_eq!(lab.soft_time_limit_ms, Some(300_000));
        assert_eq!(lab.hard_time_limit_ms, Some(600_000));
        assert_eq!(lab.executor, ExecutorKind::Docker);
        assert_eq!(lab.line, 22);
    }
    assert_eq!(inv.runners[6].address().as_deref(), Some("10.1.0.6:22"));

    let big = inv.runner("big").unwrap();
    assert_eq!(big.host.as_deref(), Some("gpu-box.example"));
    assert_eq!(big.port, 2222);
    assert_eq!(big.cpus, Some(1.5));
    assert_eq!(big.memory, Some(1 << 30));
    assert_eq!(big.hard_time_limit_ms, Some(3_600_000));
    assert_eq!(big.soft_time_limit_ms, Some(300_000));
    assert_eq!(big.executor, ExecutorKind::Process);
    assert!(big.serves("anything") && !inv.runners[1].serves("H"));
    assert_eq!(big.line, 31);

    let prio = inv.queue_priorities();
    assert_eq!(prio.len(), 2);
    assert_eq!((prio["H"], prio["L"]), (10, -10));
    assert_eq!(inv.queue_priority("default"), 0);

    // JSON is the serde form of the structs.
    let json = serde_json::to_value(&inv).unwrap();
    assert_eq!(json["runners"][0]["transport"], "local");
    assert_eq!(json["runners"][7]["executor"], "process");
    assert_eq!(json["queues"]["H"]["priority"], 10);
}

#[test]
fn built_in_defaults_when_nothing_is_said() {
    let inv = ok("[[runner]]\nname = \"solo\"\naddress = \"solo.lan\"\n");
    let r = &inv.runners[0];
    assert_eq!(r.transport, Transport::Ssh);
    assert_eq!((r.host.as_deref(), r.port), (Some("solo.lan"), 22));
    assert_eq!(r.slots, 1);
    assert_eq!(r.queues, ["default"]);
    assert_eq!(r.executor, ExecutorKind::Docker);
    assert_eq!((r.cpus, r.memory), (None, None));
    assert!(r.gpus.is_empty() && r.labels.is_empty() && r.user.is_none());
    assert_eq!((r.soft_time_limit_ms, r.hard_time_limit_ms), (None, None));
    assert!(inv.queues.is_empty());
}

#[test]
fn example_runners_toml_parses() {
    let text = include_str!("../../runners.toml");
    let inv = ok(text);
    assert_eq!(names(&inv), ["local"]);
    let local = &inv.runners[0];
    assert_eq!(local.transport, Transport::Local);
    assert_eq!(local.slots, 4);
    assert_eq!(local.queues, ["default", "H", "L"]);
    assert_eq!(local.executor, ExecutorKind::Process);
    assert_eq!(local.soft_time_limit_ms, Some(30 * 60_000));
    assert_eq!(local.hard_time_limit_ms, Some(35 * 60_000));
    assert_eq!(
        inv.queue_priorities(),
        BTreeMap::from([("H".to_string(), 10), ("L".to_string(), -10)])
    );

    // The commented-out examples must parse too once uncommented.
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if rest == "[[runner]]"
                    || rest.split_once(" = ").is_some_and(|(k, _)| {
                        k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    }) =>
            {
                rest
            }
            _ => l,
        })
        .flat_map(|l| [l, "\n"])
        .collect();
    let inv = ok(&uncommented);
    assert_eq!(
        names(&inv),
        ["local", "gpu-box", "lab-1", "lab-2", "lab-3", "lab-4", "lab-5", "lab-6"]
    );
    let gpu = inv.runner("gpu-box").unwrap();
    assert_eq!(gpu.address().as_deref(), Some("gpu-box.example.org:2222"));
    assert_eq!(gpu.gpus, ["0", "1"]);
    assert_eq!(
        gpu.requirements.as_deref(),
        Some("owner != \"guest\" || queue == \"L\"")
    );
    assert_eq!(gpu.attributes.len(), 2);
    assert_eq!(
        inv.runner("lab-6").unwrap().host.as_deref(),
        Some("10.1.0.6")
    );
}

#[test]
fn render_table_aligns_columns() {
    let inv = ok(r#"[[runner]]
name = "local"
transport = "local"
slots = 4
queues = ["default", "H", "L"]
executor = "process"

[[runner]]
name = "big"
address = "gpu-box.example:2222"
slots = 16
queues = ["*"]
cpus = 8
memory = "16G"
gpus = ["0", "1"]
labels = ["fast-disk"]
soft_time_limit = "5m"
hard_time_limit = "10m"
"#);
    let want = [
        "NAME   TRANSPORT  ADDRESS               SLOTS  QUEUES       CPUS  MEMORY  GPUS  LABELS     SOFT   HARD    EXECUTOR",
        "local  local      -                         4  default,H,L     -       -  -     -          -      -       process",
        "big    ssh        gpu-box.example:2222     16  *               8     16G  0,1   fast-disk  5m00s  10m00s  docker",
    ];
    assert_eq!(render_table(&inv), want.map(|l| format!("{l}\n")).concat());

    let mut inv = inv;
    inv.runners[1].cpus = Some(1.5);
    assert!(render_table(&inv)
        .lines()
        .nth(2)
        .unwrap()
        .contains("  1.5  "));
}

#[test]
fn load_reads_a_file_and_reports_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runners.toml");
    std::fs::write(&path, format!("{LOCAL}slots = 3\n")).unwrap();
    let inv = load(&path).unwrap();
    assert_eq!(inv.source.as_deref(), Some(path.as_path()));
    assert_eq!(inv.runners[0].slots, 3);

    std::fs::write(&path, format!("{LOCAL}slots = -3\n")).unwrap();
    let e = load(&path).unwrap_err();
    assert_eq!((e.file.as_str(), e.line), (path.to_str().unwrap(), 4));

    let missing = dir.path().join("nope.toml");
    let e = load(&missing).unwrap_err();
    assert_eq!((e.line, e.key.as_str()), (0, ""));
    assert!(
        e.to_string().starts_with(&format!(
            "{}: cannot read the inventory: ",
            missing.display()
        )),
        "{e}"
    );
}

#[test]
fn local_default_is_this_machine() {
    let inv = local_default();
    assert_eq!(names(&inv), ["local"]);
    let r = &inv.runners[0];
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(r.transport, Transport::Local);
    assert_eq!(r.executor, ExecutorKind::Process);
    assert_eq!(r.slots as usize, cpus.min(MAX_SLOTS as usize));
    assert_eq!(r.cpus, Some(cpus as f64));
    assert_eq!(r.queues, ["*"]);
    assert_eq!((r.host.as_ref(), r.line), (None, 0));
    assert_eq!((r.soft_time_limit_ms, r.hard_time_limit_ms), (None, None));
    if Path::new("/proc/meminfo").exists() {
        assert!(r.memory.unwrap() > 1 << 20);
    }
    assert!(inv.queues.is_empty() && inv.source.is_none());
}

#[test]
fn meminfo() {
    let text = "MemTotal:       16318540 kB\nMemFree:         1234 kB\n";
    assert_eq!(mem_total(text), Some(16_318_540 * 1024));
    assert_eq!(mem_total("MemFree: 1 kB\n"), None);
    assert_eq!(mem_total("MemTotal: lots kB\n"), None);
}

#[test]
fn identity_path_expands_home() {
    let mut r = local_default().runners.remove(0);
    assert_eq!(r.identity_path(), None);
    r.identity_file = Some(PathBuf::from("/etc/key"));
    assert_eq!(r.identity_path(), Some(PathBuf::from("/etc/key")));
    if let Some(home) = std::env::var_os("HOME") {
        r.identity_file = Some(PathBuf::from("~/.ssh/id_ed25519"));
        assert_eq!(
            r.identity_path(),
            Some(PathBuf::from(home).join(".ssh/id_ed25519"))
        );
    }
}

#[test]
fn state_dir_and_install_docker() {
    let inv = ok(r#"[defaults]
state_dir = "/srv/datarun/"
install_docker = true
[[runner]]
name = "a"
address = "a.lan"
[[runner]]
name = "b"
address = "b.lan"
state_dir = "/opt/dr"
install_docker = false
[[runner]]
name = "here"
transport = "local"
"#);
    let (a, b, here) = (&inv.runners[0], &inv.runners[1], &inv.runners[2]);
    assert_eq!(a.state_dir.as_deref(), Some(Path::new("/srv/datarun")));
    assert!(a.install_docker && !b.install_docker);
    assert_eq!(b.remote_state_dir(), PathBuf::from("/opt/dr"));
    // Inherited ssh-only keys are dropped for local runners.
    assert_eq!(
        (here.state_dir.as_ref(), here.install_docker),
        (None, false)
    );
    let plain = ok("[[runner]]\nname = \"p\"\naddress = \"p.lan\"\n");
    assert_eq!(
        plain.runners[0].remote_state_dir(),
        PathBuf::from(DEFAULT_STATE_DIR)
    );

    for (text, key, needle) in [
        (
            "[[runner]]\nname = \"x\"\naddress = \"x\"\nstate_dir = \"relative/dir\"\n",
            "runner.state_dir",
            "absolute path",
        ),
        (
            "[[runner]]\nname = \"x\"\naddress = \"x\"\nstate_dir = \"/a/../etc\"\n",
            "runner.state_dir",
            "absolute path",
        ),
        (
            "[[runner]]\nname = \"x\"\naddress = \"x\"\ninstall_docker = \"yes\"\n",
            "runner.install_docker",
            "true or false",
        ),
        (
            "[[runner]]\nname = \"x\"\ntransport = \"local\"\nstate_dir = \"/x\"\n",
            "runner.state_dir",
            "only ssh runners",
        ),
    ] {
        let err = parse(text, "inv.toml").expect_err(text);
        assert_eq!(err.line, 4, "{text}");
        assert_eq!(err.key, key, "{text}");
        assert!(err.message.contains(needle), "{text}: {err}");
    }
}

mod address;
mod errors;
mod exprs;
mod warm;
