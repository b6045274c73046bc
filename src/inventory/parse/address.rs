//! What an `address` key says: one host (name, IPv4, `[IPv6]:port`) or a CIDR pool, how many
//! runners a pool expands to, and which hosts.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What an `address` says.
#[derive(Debug, PartialEq)]
pub(in crate::inventory) enum Address {
    /// One host (name, IPv4 or IPv6 without brackets), with the port if one was given.
    Host { host: String, port: Option<u16> },
    /// A pool: one runner per usable host address.
    Cidr(IpNet),
}

pub(in crate::inventory) fn parse_address(s: &str) -> std::result::Result<Address, String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{s:?} must not contain spaces"));
    }
    if s.contains('/') {
        let net: IpNet = s.parse().map_err(|_| {
            format!(
                "{s:?} is not a valid CIDR (expected e.g. \"10.1.0.0/29\" or \"fd00::/125\"; \
                 a pool's ssh port is set with the port key)"
            )
        })?;
        if net.addr() != net.network() {
            return Err(format!(
                "{s:?} has host bits set; did you mean \"{}\"?",
                net.trunc()
            ));
        }
        return Ok(Address::Cidr(net));
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (inner, after) = rest.split_once(']').ok_or_else(|| {
            format!("{s:?} is missing the closing ']' (expected \"[IPv6]:port\")")
        })?;
        let ip: Ipv6Addr = inner
            .parse()
            .map_err(|_| format!("{inner:?} is not a valid IPv6 address"))?;
        let port = match after {
            "" => None,
            _ => {
                let p = after
                    .strip_prefix(':')
                    .ok_or_else(|| format!("{s:?}: expected \":port\" after ']'"))?;
                Some(parse_port(p)?)
            }
        };
        return Ok(Address::Host {
            host: ip.to_string(),
            port,
        });
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(Address::Host {
            host: ip.to_string(),
            port: None,
        });
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, _)) if h.contains(':') => {
            return Err(format!(
            "{s:?} is not a valid address; an IPv6 address with a port is written \"[addr]:port\""
        ))
        }
        Some((h, p)) => (h, Some(parse_port(p)?)),
        None => (s, None),
    };
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(Address::Host {
            host: ip.to_string(),
            port,
        });
    }
    check_hostname(host)?;
    Ok(Address::Host {
        host: host.to_string(),
        port,
    })
}

fn parse_port(p: &str) -> std::result::Result<u16, String> {
    p.parse::<u16>()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| format!("port {p:?} must be a number between 1 and 65535"))
}

fn check_hostname(host: &str) -> std::result::Result<(), String> {
    if host.is_empty() {
        return Err("the host name is empty".into());
    }
    if host.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!("{host:?} is not a valid IPv4 address"));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(format!(
            "{host:?} is not a valid host name (letters, digits and '-' in dot-separated labels)"
        ));
    }
    Ok(())
}

/// How many runners a pool expands to: IPv4 leaves out the network and broadcast addresses
/// (except in /31 and /32), IPv6 leaves out the subnet-router anycast address (all host bits
/// zero) except in /127 and /128.
pub(in crate::inventory) fn cidr_size(net: &IpNet) -> u128 {
    let (bits, reserved) = match net {
        IpNet::V4(n) => {
            let bits = 32 - u32::from(n.prefix_len());
            (bits, if bits >= 2 { 2 } else { 0 })
        }
        IpNet::V6(n) => {
            let bits = 128 - u32::from(n.prefix_len());
            (bits, if bits >= 2 { 1 } else { 0 })
        }
    };
    if bits >= 128 {
        return u128::MAX;
    }
    (1u128 << bits) - reserved
}

pub(super) fn cidr_hosts(net: &IpNet) -> Vec<IpAddr> {
    match net {
        IpNet::V4(n) => n.hosts().map(IpAddr::V4).collect(),
        IpNet::V6(n) => {
            let skip = usize::from(n.prefix_len() < 127);
            n.hosts().skip(skip).map(IpAddr::V6).collect()
        }
    }
}
