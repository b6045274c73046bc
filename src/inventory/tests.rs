use super::parse::{cidr_size, parse_address, Address};
use super::*;

/// Parses `text` as `runners.toml`, panicking with the error if it fails.
fn ok(text: &str) -> Inventory {
    parse(text, "runners.toml").unwrap_or_else(|e| panic!("should parse, got: {e}\n{text}"))
}

fn names(inv: &Inventory) -> Vec<&str> {
    inv.runners.iter().map(|r| r.name.as_str()).collect()
}

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
fn port_key_and_runner_overrides() {
    let inv = ok(r#"[defaults]
port = 2200
gpus = ["0"]
[[runner]]
name = "a"
address = "a.lan"
[[runner]]
name = "b"
address = "b.lan:2022"
gpus = []
[[runner]]
name = "pool"
address = "192.168.1.0/30"
port = 2222
"#);
    let ports: Vec<(&str, u16)> = inv
        .runners
        .iter()
        .map(|r| (r.name.as_str(), r.port))
        .collect();
    assert_eq!(
        ports,
        [("a", 2200), ("b", 2022), ("pool-1", 2222), ("pool-2", 2222)]
    );
    assert_eq!(inv.runners[0].gpus, ["0"]);
    assert!(
        inv.runners[1].gpus.is_empty(),
        "an empty list overrides [defaults]"
    );
}

#[test]
fn address_forms() {
    let host = |h: &str, p: Option<u16>| Address::Host {
        host: h.to_string(),
        port: p,
    };
    for (text, want) in [
        ("gpu-box", host("gpu-box", None)),
        ("gpu-box.example:2222", host("gpu-box.example", Some(2222))),
        ("10.0.0.5", host("10.0.0.5", None)),
        ("10.0.0.5:22", host("10.0.0.5", Some(22))),
        ("[::1]:2222", host("::1", Some(2222))),
        ("[fd00::5]", host("fd00::5", None)),
        ("fd00::5", host("fd00::5", None)),
        ("FD00:0:0::0005", host("fd00::5", None)),
        ("[2001:db8::1]:65535", host("2001:db8::1", Some(65535))),
    ] {
        assert_eq!(parse_address(text), Ok(want), "{text}");
    }
    for (text, why) in [
        ("", "empty"),
        ("gpu box", "spaces"),
        ("host:0", "between 1 and 65535"),
        ("host:99999", "between 1 and 65535"),
        ("host:", "between 1 and 65535"),
        ("[::1", "closing ']'"),
        ("[::1]2222", "expected \":port\""),
        ("[10.0.0.1]:22", "not a valid IPv6"),
        ("fd00::zz:22", "[addr]:port"),
        ("10.0.0.300", "not a valid IPv4"),
        ("-oProxyCommand", "not a valid host name"),
        ("a..b", "not a valid host name"),
        ("under_score.lan", "not a valid host name"),
        ("10.1.0.0/33", "not a valid CIDR"),
    ] {
        let err = parse_address(text).expect_err(text);
        assert!(err.contains(why), "{text}: {err:?} should mention {why:?}");
    }
}

#[test]
fn ipv6_runners_and_pools() {
    let inv = ok(r#"[[runner]]
name = "v6"
address = "[fd00::5]:2222"
[[runner]]
name = "bare"
address = "fd00::6"
[[runner]]
name = "p"
address = "fd00:1::/126"
[[runner]]
name = "one"
address = "fd00:2::7/128"
[[runner]]
name = "four"
address = "10.9.9.9/32"
[[runner]]
name = "link"
address = "10.9.9.10/31"
"#);
    let got: Vec<(&str, Option<String>)> = inv
        .runners
        .iter()
        .map(|r| (r.name.as_str(), r.address()))
        .collect();
    let want = [
        ("v6", "[fd00::5]:2222"),
        ("bare", "[fd00::6]:22"),
        // The all-zeros anycast address fd00:1:: is left out.
        ("p-1", "[fd00:1::1]:22"),
        ("p-2", "[fd00:1::2]:22"),
        ("p-3", "[fd00:1::3]:22"),
        // Single-address pools still get the -1 suffix.
        ("one-1", "[fd00:2::7]:22"),
        ("four-1", "10.9.9.9:22"),
        ("link-1", "10.9.9.10:22"),
        ("link-2", "10.9.9.11:22"),
    ]
    .map(|(n, a)| (n, Some(a.to_string())));
    assert_eq!(got, want);
    assert_eq!(inv.runners[0].host.as_deref(), Some("fd00::5"));
}

#[test]
fn cidr_sizes() {
    for (net, want) in [
        ("10.0.0.0/29", 6u128),
        ("10.0.0.0/22", 1022),
        ("10.0.0.0/21", 2046),
        ("10.0.0.0/31", 2),
        ("10.0.0.0/32", 1),
        ("0.0.0.0/0", (1 << 32) - 2),
        ("fd00::/126", 3),
        ("fd00::/127", 2),
        ("fd00::/128", 1),
        ("::/0", u128::MAX),
    ] {
        assert_eq!(cidr_size(&net.parse().unwrap()), want, "{net}");
    }
}

/// The runner header every error case below can append to (runner on line 1).
const LOCAL: &str = "[[runner]]\nname = \"a\"\ntransport = \"local\"\n";

#[test]
fn errors_name_file_line_and_key() {
    let local_then = |extra: &str| format!("{LOCAL}{extra}");
    let cases: Vec<(&str, String, usize, &str, &str)> = vec![
        // (what, text, line, key, part of the message)
        ("unknown runner key", local_then("slot = 4\n"), 4, "runner.slot", "unknown key \"slot\"; did you mean \"slots\"?"),
        ("unknown key, no near match", local_then("colour = 4\n"), 4, "runner.colour", "a [[runner]] takes: name, address, transport"),
        ("unknown defaults key", format!("[defaults]\nfoo = 1\n{LOCAL}"), 2, "defaults.foo", "unknown key \"foo\"; [defaults] takes: transport, user"),
        ("dotted unknown key", local_then("a.b = 1\n"), 4, "runner.a", "unknown key \"a\""),
        ("unknown queue key", format!("[queues.H]\npriority = 1\nweight = 2\n{LOCAL}"), 3, "queues.H.weight", "unknown key \"weight\"; a queue takes: priority"),
        ("unknown top-level key", "[[runners]]\nname = \"a\"\n".into(), 1, "runners", "did you mean [[runner]]?"),
        ("unknown top-level value", format!("{LOCAL}\n"). replacen("[[runner]]", "verbose = true\n[[runner]]", 1), 1, "verbose", "unknown key \"verbose\""),
        ("name in defaults", format!("[defaults]\nslots = 2\nname = \"x\"\n{LOCAL}"), 3, "defaults.name", "cannot be set in [defaults]"),
        ("address in defaults", format!("[defaults]\naddress = \"h\"\n{LOCAL}"), 2, "defaults.address", "every runner has its own address"),
        ("slots as string", local_then("slots = \"4\"\n"), 4, "runner.slots", "expected an integer, found a string"),
        ("memory as bool", local_then("memory = true\n"), 4, "runner.memory", "expected a size such as \"16G\" or a number of bytes, found a boolean"),
        ("queues as string", local_then("queues = \"H\"\n"), 4, "runner.queues", "expected a list of queue names"),
        ("gpus as integers", local_then("gpus = [0, 1]\n"), 4, "runner.gpus", "gpu ids are strings: write \"0\" instead of 0"),
        ("datetime", local_then("soft_time_limit = 1979-05-27\n"), 4, "runner.soft_time_limit", "found a date/time"),
        ("name as number", "[[runner]]\nname = 7\n".into(), 2, "runner.name", "expected a string, found an integer"),
        ("defaults not a table", format!("defaults = 3\n{LOCAL}"), 1, "defaults", "expected a [defaults] table, found an integer"),
        ("runner as a table", "[runner]\nname = \"a\"\n".into(), 1, "runner", "write [[runner]], not [runner]"),
        ("queue not a table", format!("[queues]\nH = 10\n{LOCAL}"), 2, "queues.H", "expected a table such as [queues.H] with priority = 10, found an integer"),
        ("queue priority type", format!("[queues.H]\npriority = \"high\"\n{LOCAL}"), 2, "queues.H.priority", "expected an integer, found a string"),
        ("queue name", format!("[queues.\"a b\"]\npriority = 1\n{LOCAL}"), 1, "queues.a b", "not a valid queue name"),
        ("duplicate names", format!("{LOCAL}{LOCAL}"), 5, "runner.name", "duplicate runner name \"a\": the runner at line 1 is already called that"),
        ("explicit name after pool",
            "[[runner]]\nname = \"lab\"\naddress = \"10.1.0.0/30\"\n\n[[runner]]\nname = \"lab-2\"\naddress = \"h\"\n".into(),
            6, "runner.name", "duplicate runner name \"lab-2\": the runner at line 1 is already called that (from \"lab\" = 10.1.0.0/30)"),
        ("pool after explicit name",
            "[[runner]]\nname = \"lab-1\"\naddress = \"h\"\n[[runner]]\nname = \"lab\"\naddress = \"10.1.0.0/30\"\n".into(),
            5, "runner.name", "duplicate runner name \"lab-1\" (from \"lab\" = 10.1.0.0/30): the runner at line 1"),
        ("bad size", local_then("memory = \"16X\"\n"), 4, "runner.memory", "bad size \"16X\": unknown unit \"X\""),
        ("negative size", local_then("memory = -1\n"), 4, "runner.memory", "must not be negative"),
        ("zero size", local_then("memory = \"0G\"\n"), 4, "runner.memory", "must be larger than zero"),
        ("bad duration", local_then("soft_time_limit = \"5 parsecs\"\n"), 4, "runner.soft_time_limit", "bad duration \"5 parsecs\""),
        ("zero duration", local_then("hard_time_limit = 0\n"), 4, "runner.hard_time_limit", "must be longer than zero"),
        ("negative duration", local_then("hard_time_limit = -5\n"), 4, "runner.hard_time_limit", "positive number of seconds"),
        ("soft > hard in runner", local_then("soft_time_limit = \"10m\"\nhard_time_limit = 300\n"), 1, "runner.soft_time_limit",
            "runner \"a\": soft_time_limit 10m00s is longer than hard_time_limit 5m00s"),
        ("soft > hard after defaults", format!("[defaults]\nsoft_time_limit = \"10m\"\n\n{LOCAL}hard_time_limit = \"5m\"\n"), 4, "runner.soft_time_limit",
            "soft_time_limit 10m00s (from [defaults], line 2) is longer than hard_time_limit 5m00s;"),
        ("slots 0", local_then("slots = 0\n"), 4, "runner.slots", "must be between 1 and 1024, found 0"),
        ("slots too many", local_then("slots = 1025\n"), 4, "runner.slots", "must be between 1 and 1024, found 1025"),
        ("cpus 0", local_then("cpus = 0\n"), 4, "runner.cpus", "must be larger than zero"),
        ("cidr too big", "[[runner]]\nname = \"lab\"\naddress = \"10.0.0.0/16\"\n".into(), 3, "runner.address",
            "10.0.0.0/16 would expand to 65534 runners, more than the limit of 1024 per [[runner]]"),
        ("ipv6 cidr too big", "[[runner]]\nname = \"lab\"\naddress = \"fd00::/64\"\n".into(), 3, "runner.address",
            "fd00::/64 would expand to 18446744073709551615 runners, more than the limit of 1024"),
        ("cidr host bits", "[[runner]]\nname = \"lab\"\naddress = \"10.1.0.3/29\"\n".into(), 3, "runner.address",
            "has host bits set; did you mean \"10.1.0.0/29\"?"),
        ("expanded name too long", format!("[[runner]]\nname = \"{}\"\naddress = \"10.1.0.0/30\"\n", "x".repeat(63)), 2, "runner.name",
            "is longer than 64 characters"),
        ("ssh without address", "\n[[runner]]\nname = \"big\"\n".into(), 2, "runner.address", "missing: ssh runner \"big\" needs an address"),
        ("ssh from defaults without address", "[defaults]\ntransport = \"ssh\"\n[[runner]]\nname = \"b\"\n".into(), 3, "runner.address", "needs an address"),
        ("local with address", local_then("address = \"h\"\n"), 4, "runner.address", "transport = \"local\", which takes no address"),
        ("local with user", local_then("user = \"me\"\n"), 4, "runner.user", "only ssh runners have a user"),
        ("local with port", local_then("port = 22\n"), 4, "runner.port", "only ssh runners have a port"),
        ("port twice", "[[runner]]\nname = \"b\"\naddress = \"h:2222\"\nport = 22\n".into(), 4, "runner.port", "already gives port 2222"),
        ("port range", "[[runner]]\nname = \"b\"\naddress = \"h\"\nport = 70000\n".into(), 4, "runner.port", "between 1 and 65535, found 70000"),
        ("bad address", "[[runner]]\nname = \"b\"\naddress = \"gpu box\"\n".into(), 3, "runner.address", "must not contain spaces"),
        ("missing name", "[[runner]]\ntransport = \"local\"\n".into(), 1, "runner.name", "missing: every [[runner]] needs a name"),
        ("bad name", "[[runner]]\nname = \"a b\"\n".into(), 2, "runner.name", "\"a b\" is not a valid runner name"),
        ("bad user", "[[runner]]\nname = \"b\"\naddress = \"h\"\nuser = \"-oops\"\n".into(), 4, "runner.user", "not a valid user name"),
        ("empty queues", local_then("queues = []\n"), 4, "runner.queues", "must list at least one queue"),
        ("star with others", local_then("queues = [\"*\", \"H\"]\n"), 4, "runner.queues", "\"*\" already serves every queue"),
        ("bad queue on its own line", local_then("queues = [\n  \"H\",\n  \"a b\",\n]\n"), 6, "runner.queues", "\"a b\" is not a valid name"),
        ("duplicate gpu", local_then("gpus = [\"0\", \"0\"]\n"), 4, "runner.gpus", "\"0\" is listed twice"),
        ("bad transport", local_then("").replace("\"local\"", "\"rsh\""), 3, "runner.transport", "expected \"local\" or \"ssh\", found \"rsh\""),
        ("bad executor", local_then("executor = \"podman\"\n"), 4, "runner.executor", "expected \"docker\" or \"process\", found \"podman\""),
        ("no runners", "[defaults]\nslots = 2\n".into(), 1, "runner", "no runners: add at least one [[runner]]"),
        ("empty file", String::new(), 1, "runner", "no runners"),
        ("empty runner array", "\n\nrunner = []\n".into(), 3, "runner", "no runners"),
        ("toml: unterminated string", "[[runner]]\nname = \"a\ntransport = \"local\"\n".into(), 2, "syntax", "not valid TOML: "),
        ("toml: duplicate key", format!("{LOCAL}name = \"b\"\n"), 4, "syntax", "duplicate key `name`"),
        ("toml: bad header", format!("{LOCAL}[queues.H\n"), 4, "syntax", "not valid TOML: invalid table header"),
    ];
    let mut failures = Vec::new();
    for (what, text, line, key, message) in &cases {
        match parse(text, "inv/runners.toml") {
            Ok(_) => failures.push(format!("{what}: parsed, expected an error")),
            Err(e) => {
                if e.file != "inv/runners.toml"
                    || e.line != *line
                    || e.key != *key
                    || !e.message.contains(message)
                {
                    failures.push(format!(
                        "{what}:\n   got {e}\n  want inv/runners.toml:{line}: {key}: ...{message}..."
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn error_display() {
    let e = parse(&format!("{LOCAL}slots = 0\n"), "runners.toml").unwrap_err();
    assert_eq!(
        e.to_string(),
        "runners.toml:4: runner.slots: must be between 1 and 1024, found 0"
    );
    let unlocated = InventoryError {
        file: "x.toml".into(),
        line: 0,
        key: String::new(),
        message: "cannot read".into(),
    };
    assert_eq!(unlocated.to_string(), "x.toml: cannot read");
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

mod exprs;
