//! What a webhook may call: an http(s) URL of at most [`MAX_WEBHOOK_URL`] bytes whose host
//! resolves only to public addresses. A tenant must not make the master call its own network
//! (a metadata service, a database on loopback): loopback, private, link-local, shared,
//! multicast, reserved and unspecified addresses are refused unless `serve --webhook-allow`
//! opens their range. The check is made at submit (a 400 naming the field) and again at each
//! delivery, which then connects to the very addresses it checked (no second lookup that DNS
//! could answer differently).

use crate::model::limits::{check_text, MAX_WEBHOOK_URL};
use crate::model::FieldError;
use ipnet::IpNet;
use reqwest::Url;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// How long a host's lookup may take.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Ranges opened by `serve --webhook-allow` (none by default).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allow(pub Vec<IpNet>);

impl Allow {
    /// Parses `CIDR[,CIDR…]` (a bare address is its own /32 or /128).
    pub fn parse(text: &str) -> Result<Allow, String> {
        let mut nets = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let net = part
                .parse::<IpNet>()
                .or_else(|_| part.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    format!("{part:?} is not a CIDR range (e.g. 10.0.0.0/8) or an address")
                })?;
            nets.push(net);
        }
        Ok(Allow(nets))
    }

    /// Why `ip` may not be called, or `None` when it may.
    pub fn refuses(&self, ip: IpAddr) -> Option<&'static str> {
        if self.0.iter().any(|n| n.contains(&ip)) {
            return None;
        }
        special(ip)
    }
}

fn special(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6).or_else(|| match carried(v6) {
            Carried::V4(v4) => special_v4(v4),
            Carried::Unknown(what) => Some(what),
            Carried::Nothing => None,
        }),
    }
}

/// The IPv4 address an IPv6 address reaches through a translator or a tunnel.
enum Carried {
    V4(Ipv4Addr),
    /// A translation prefix whose IPv4 address cannot be told from here.
    Unknown(&'static str),
    Nothing,
}

/// IPv4-mapped `::ffff:a.b.c.d` and IPv4-compatible `::a.b.c.d`, NAT64's well-known prefix
/// `64:ff9b::/96`, 6to4 `2002::/16` and Teredo `2001::/32` (its client, inverted) carry an
/// IPv4 address; NAT64's local-use prefix `64:ff9b:1::/48` may carry any.
fn carried(ip: Ipv6Addr) -> Carried {
    let (s, o) = (ip.segments(), ip.octets());
    let last = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    if let Some(v4) = ip.to_ipv4() {
        // `::ffff:a.b.c.d` or `::a.b.c.d` (`::` and `::1` are judged as IPv6 before).
        Carried::V4(v4)
    } else if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        Carried::V4(last)
    } else if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        Carried::Unknown("NAT64 (local-use prefix)")
    } else if s[0] == 0x2002 {
        Carried::V4(Ipv4Addr::new(o[2], o[3], o[4], o[5]))
    } else if s[0] == 0x2001 && s[1] == 0 {
        Carried::V4(Ipv4Addr::from(!u32::from(last)))
    } else {
        Carried::Nothing
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(if ip.is_loopback() {
        "loopback"
    } else if ip.is_private() {
        "private"
    } else if ip.is_link_local() {
        "link-local"
    } else if ip.is_unspecified() || a == 0 {
        "unspecified"
    } else if a == 100 && (64..128).contains(&b) {
        "shared (carrier-grade NAT)"
    } else if ip.is_multicast() || ip.is_broadcast() || a >= 240 {
        "multicast or reserved"
    } else {
        return None;
    })
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    Some(if ip.is_loopback() {
        "loopback"
    } else if ip.is_unspecified() {
        "unspecified"
    } else if first & 0xfe00 == 0xfc00 {
        "private (unique local)"
    } else if first & 0xffc0 == 0xfe80 {
        "link-local"
    } else if ip.is_multicast() {
        "multicast"
    } else {
        return None;
    })
}

/// The URL's form, as submitted: at most [`MAX_WEBHOOK_URL`] bytes, http or https, a host.
/// The error names `field`.
pub fn check_url(field: &str, url: &str) -> Result<Url, FieldError> {
    check_text(field, url, MAX_WEBHOOK_URL)?;
    let parsed = Url::parse(url)
        .map_err(|e| FieldError::Invalid(format!("{field}: {url:?} is not a URL ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(FieldError::Invalid(format!(
            "{field}: {url:?}: only http and https URLs are called"
        )));
    }
    if parsed.host().is_none() {
        return Err(FieldError::Invalid(format!("{field}: {url:?} has no host")));
    }
    Ok(parsed)
}

/// The addresses to connect to for `url`: its host resolved (an address is itself), every
/// address allowed by `allow`; else why not, naming `field`.
pub async fn resolve(field: &str, url: &Url, allow: &Allow) -> Result<Vec<SocketAddr>, String> {
    let port = url
        .port_or_known_default()
        .ok_or_else(|| format!("{field}: {url} has no port"))?;
    let host = url
        .host_str()
        .ok_or_else(|| format!("{field}: {url} has no host"))?;
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match literal.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => {
            let lookup = tokio::net::lookup_host((host, port));
            match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
                Ok(Ok(addrs)) => addrs.collect(),
                Ok(Err(e)) => return Err(format!("{field}: cannot resolve {host}: {e}")),
                Err(_) => {
                    return Err(format!(
                        "{field}: resolving {host} took more than {}s",
                        RESOLVE_TIMEOUT.as_secs()
                    ))
                }
            }
        }
    };
    if addrs.is_empty() {
        return Err(format!("{field}: {url}: its host has no address"));
    }
    for a in &addrs {
        if let Some(why) = allow.refuses(a.ip()) {
            return Err(format!(
                "{field}: {url} resolves to {} ({why}); the master calls only public addresses unless `serve --webhook-allow` opens the range",
                a.ip()
            ));
        }
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_refused_unless_allowed() {
        let none = Allow::default();
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            // IPv4 through a translator or a tunnel: NAT64, IPv4-compatible, 6to4, Teredo.
            "64:ff9b::a00:1",
            "64:ff9b::169.254.169.254",
            "64:ff9b:1::808:808",
            "::10.0.0.1",
            "2002:a00:1::1",
            "2002:7f00:1::",
            "2001:0:4136:e378:8000:63bf:f5ff:fffe",
        ] {
            assert!(none.refuses(ip.parse().unwrap()).is_some(), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "2606:4700::1111",
            "8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
        ] {
            assert_eq!(none.refuses(ip.parse().unwrap()), None, "{ip}");
        }
        let lo = Allow::parse("127.0.0.0/8, ::1").unwrap();
        assert_eq!(lo.refuses("127.0.0.2".parse().unwrap()), None);
        assert_eq!(lo.refuses("::1".parse().unwrap()), None);
        assert!(lo.refuses("10.0.0.1".parse().unwrap()).is_some());
        assert!(Allow::parse("nope").is_err());
    }

    #[test]
    fn urls_are_http_with_a_host_and_bounded() {
        assert!(check_url("webhook", "https://example.com/hook").is_ok());
        for bad in ["ftp://example.com/", "not a url", "file:///etc/passwd"] {
            let e = check_url("webhook", bad).unwrap_err();
            assert!(e.message().starts_with("webhook: "), "{}", e.message());
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_WEBHOOK_URL));
        assert!(check_url("webhook", &long).unwrap_err().is_too_large());
    }
}
