//! Turning `targetaddr`/`initiatoraddr` arguments into socket addresses, as
//! base does with getaddrinfo(3): the first result of the wanted family wins.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

use super::DEFAULT_PORT;

/// The `inet`/`inet4`/`inet6` filter of an address statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    Any,
    Inet,
    Inet6,
}

impl Family {
    fn admits(self, a: &SocketAddr) -> bool {
        match self {
            Family::Any => true,
            Family::Inet => a.is_ipv4(),
            Family::Inet6 => a.is_ipv6(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Family::Any => "",
            Family::Inet => "inet ",
            Family::Inet6 => "inet6 ",
        }
    }
}

/// Why a port string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PortProblem {
    /// Digits, but outside 1..65535; carries the value when it fits.
    Range(Option<i64>),
    /// Neither digits nor a known service.
    Invalid,
}

/// A `port` STRING: "iscsi" (the only service name iscsi.conf needs) or
/// decimal digits.
pub(crate) fn port_from_str(s: &str) -> Result<u16, PortProblem> {
    if s == "iscsi" {
        return Ok(DEFAULT_PORT);
    }
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PortProblem::Invalid);
    }
    match s.parse::<i64>() {
        Ok(n) => port_from_number(n),
        Err(_) => Err(PortProblem::Range(None)),
    }
}

pub(crate) fn port_from_number(n: i64) -> Result<u16, PortProblem> {
    match u16::try_from(n) {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(PortProblem::Range(Some(n))),
    }
}

/// Resolves `host`; the error is the reason text of base's
/// `"%s (%s %s)"` message. `*` means the unspecified address, as with
/// AI_PASSIVE.
pub(crate) fn resolve(host: &str, port: u16, family: Family) -> Result<SocketAddr, String> {
    if host == "*" {
        let ip = match family {
            Family::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            Family::Any | Family::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        return Ok(SocketAddr::new(ip, port));
    }
    // IP literals never reach the resolver; names (and scoped IPv6
    // literals such as fe80::1%vio0) go through getaddrinfo(3).
    let addrs = (host, port).to_socket_addrs().map_err(|e| e.to_string())?;
    addrs
        .into_iter()
        .find(|a| family.admits(a))
        .ok_or_else(|| format!("no {}address found", family.name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(port_from_str("iscsi"), Ok(3260));
        assert_eq!(port_from_str("3261"), Ok(3261));
        assert_eq!(port_from_str("065535"), Ok(65535));
        assert_eq!(port_from_str("0"), Err(PortProblem::Range(Some(0))));
        assert_eq!(port_from_str("65536"), Err(PortProblem::Range(Some(65536))));
        assert_eq!(
            port_from_str("99999999999999999999999"),
            Err(PortProblem::Range(None))
        );
        assert_eq!(port_from_str("ISCSI"), Err(PortProblem::Invalid));
        assert_eq!(port_from_str("-1"), Err(PortProblem::Invalid));
        assert_eq!(port_from_str(""), Err(PortProblem::Invalid));
        assert_eq!(port_from_number(-1), Err(PortProblem::Range(Some(-1))));
        assert_eq!(port_from_number(1), Ok(1));
    }

    #[test]
    fn literals_and_families() {
        assert_eq!(
            resolve("10.0.0.2", 3260, Family::Any),
            Ok("10.0.0.2:3260".parse().unwrap())
        );
        assert_eq!(
            resolve("::1", 860, Family::Inet6),
            Ok("[::1]:860".parse().unwrap())
        );
        assert_eq!(
            resolve("10.0.0.2", 3260, Family::Inet6),
            Err("no inet6 address found".to_string())
        );
        assert_eq!(
            resolve("::1", 3260, Family::Inet),
            Err("no inet address found".to_string())
        );
    }

    #[test]
    fn star_is_unspecified() {
        assert_eq!(
            resolve("*", 0, Family::Any),
            Ok("0.0.0.0:0".parse().unwrap())
        );
        assert_eq!(
            resolve("*", 0, Family::Inet6),
            Ok("[::]:0".parse().unwrap())
        );
    }

    #[test]
    fn localhost_by_name_honours_the_family() {
        assert_eq!(
            resolve("localhost", 3260, Family::Inet),
            Ok("127.0.0.1:3260".parse().unwrap())
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn scoped_link_local_goes_through_getaddrinfo() {
        let a = resolve("fe80::1%lo", 3260, Family::Any).unwrap();
        match a {
            SocketAddr::V6(v6) => {
                assert_eq!(*v6.ip(), "fe80::1".parse::<Ipv6Addr>().unwrap());
                assert_ne!(v6.scope_id(), 0);
                assert_eq!(v6.port(), 3260);
            }
            SocketAddr::V4(_) => panic!("got {a}"),
        }
    }
}
