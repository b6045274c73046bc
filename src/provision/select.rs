//! `--limit`: which runners of the inventory a provisioning run touches.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::inventory::{RunnerSpec, Transport};

/// The ssh runners matching any of `limits` (all ssh runners when there is none). A limit is a
/// comma-separated list of patterns; a pattern matches a runner by name (`*` and `?` globs), by
/// label, or, as a CIDR (`10.0.0.0/24`), by the runner's IP address. A pattern matching no
/// runner is an error (a typo should not silently provision nothing).
pub fn select(runners: &[RunnerSpec], limits: &[String]) -> Result<Vec<RunnerSpec>, String> {
    let ssh: Vec<&RunnerSpec> = runners
        .iter()
        .filter(|r| r.transport == Transport::Ssh)
        .collect();
    let patterns: Vec<&str> = limits
        .iter()
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if patterns.is_empty() {
        return Ok(ssh.into_iter().cloned().collect());
    }
    let mut chosen = vec![false; ssh.len()];
    for pattern in patterns {
        let cidr: Option<IpNet> = if pattern.contains('/') {
            Some(
                pattern
                    .parse()
                    .map_err(|e| format!("--limit {pattern}: not a CIDR: {e}"))?,
            )
        } else {
            None
        };
        let mut any = false;
        for (i, r) in ssh.iter().enumerate() {
            let hit = match &cidr {
                Some(net) => r
                    .host
                    .as_deref()
                    .and_then(|h| h.parse::<IpAddr>().ok())
                    .is_some_and(|ip| net.contains(&ip)),
                None => glob(pattern, &r.name) || r.labels.iter().any(|l| l == pattern),
            };
            if hit {
                chosen[i] = true;
                any = true;
            }
        }
        if !any {
            return Err(format!(
                "--limit {pattern} matches no ssh runner (by name, label or address)"
            ));
        }
    }
    Ok(ssh
        .into_iter()
        .zip(chosen)
        .filter(|(_, c)| *c)
        .map(|(r, _)| r.clone())
        .collect())
}

/// Whether `name` matches `pattern`, where `*` is any run of characters and `?` any one.
fn glob(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len()).any(|i| go(rest, &n[i..])),
            Some(('?', rest)) => !n.is_empty() && go(rest, &n[1..]),
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(runners: &[RunnerSpec], limits: &[&str]) -> Result<Vec<String>, String> {
        let limits: Vec<String> = limits.iter().map(|s| s.to_string()).collect();
        select(runners, &limits).map(|v| v.into_iter().map(|r| r.name).collect())
    }

    #[test]
    fn by_name_label_and_cidr() {
        let inv = crate::inventory::parse(
            "[[runner]]\nname = \"gpu-1\"\naddress = \"10.0.0.1\"\nlabels = [\"gpu\"]\n\
             [[runner]]\nname = \"cpu-1\"\naddress = \"10.0.1.1\"\n\
             [[runner]]\nname = \"cpu-2\"\naddress = \"10.0.1.2\"\n\
             [[runner]]\nname = \"here\"\ntransport = \"local\"\n",
            "runners.toml",
        )
        .unwrap();
        let r = &inv.runners;
        assert_eq!(names(r, &[]).unwrap(), ["gpu-1", "cpu-1", "cpu-2"]);
        assert_eq!(names(r, &["cpu-*"]).unwrap(), ["cpu-1", "cpu-2"]);
        assert_eq!(names(r, &["gpu"]).unwrap(), ["gpu-1"]);
        assert_eq!(names(r, &["10.0.1.0/24"]).unwrap(), ["cpu-1", "cpu-2"]);
        assert_eq!(
            names(r, &["cpu-?", "gpu"]).unwrap(),
            ["gpu-1", "cpu-1", "cpu-2"]
        );
        assert_eq!(
            names(r, &["gpu-1,10.0.1.2/32"]).unwrap(),
            ["gpu-1", "cpu-2"]
        );
        assert!(names(r, &["here"])
            .unwrap_err()
            .contains("matches no ssh runner"));
        assert!(names(r, &["10.0.0/8"]).unwrap_err().contains("not a CIDR"));
        assert!(glob("*", "") && glob("a*b*c", "aXbYc") && !glob("a?", "a"));
    }
}
