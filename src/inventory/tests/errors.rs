//! Errors name the file, line and key, and say what was expected.

use super::*;

#[test]
fn errors_name_file_line_and_key() {
    let local_then = |extra: &str| format!("{LOCAL}{extra}");
    let cases: Vec<(&str, String, usize, &str, &str)> = vec![
        // (what, text, line, key, part of the message)
        ("unknown runner key", local_then("slot = 4\n"), 4, "runner.slot", "unknown key \"slot\"; did you mean \"slots\"?"),
        ("unknown key, no near match", local_then("colour = 4\n"), 4, "runner.colour", "a [[runner]] takes: name, address, count, transport"),
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
        ("prefetch too many", local_then("prefetch = 1025\n"), 4, "runner.prefetch", "must be between 0 and 1024, found 1025"),
        ("prefetch negative", local_then("prefetch = -1\n"), 4, "runner.prefetch", "must be between 0 and 1024, found -1"),
        ("prefetch as string", local_then("prefetch = \"8\"\n"), 4, "runner.prefetch", "expected an integer, found a string"),
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
        ("bad transport", local_then("").replace("\"local\"", "\"rsh\""), 3, "runner.transport", "expected \"local\", \"ssh\", \"unix\" or \"simulated\", found \"rsh\""),
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
