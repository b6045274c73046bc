//! Address forms, IPv6 runners, CIDR pools and their sizes, and the port key.

use super::*;
use crate::inventory::parse::{cidr_size, parse_address, Address};

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
