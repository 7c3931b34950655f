//! SendTargets results (RFC 7143 appendix C): each TargetName starts a
//! record, the TargetAddress keys after it belong to it.

/// One target a portal reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRecord {
    pub name: String,
    /// "address:port,tpgt" as sent; empty means "the portal you asked".
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryError {
    /// A TargetAddress before any TargetName.
    AddressWithoutName,
}

impl std::fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiscoveryError::AddressWithoutName => write!(f, "TargetAddress before any TargetName"),
        }
    }
}

impl std::error::Error for DiscoveryError {}

pub fn parse(keys: &[(String, String)]) -> Result<Vec<TargetRecord>, DiscoveryError> {
    let mut out: Vec<TargetRecord> = Vec::new();
    for (k, v) in keys {
        match k.as_str() {
            "TargetName" => out.push(TargetRecord {
                name: v.clone(),
                addresses: Vec::new(),
            }),
            "TargetAddress" => out
                .last_mut()
                .ok_or(DiscoveryError::AddressWithoutName)?
                .addresses
                .push(v.clone()),
            // TargetAlias and vendor keys carry nothing we use.
            _ => {}
        }
    }
    Ok(out)
}

/// Splits "addr:port,tpgt" (IPv6 in brackets) into host and port; the
/// default port is 3260. Only numeric addresses: the engine has no DNS.
pub fn parse_address(a: &str) -> Option<std::net::SocketAddr> {
    use std::net::{IpAddr, SocketAddr};
    let hostport = a.split(',').next()?;
    if let Ok(sa) = hostport.parse::<SocketAddr>() {
        return Some(sa);
    }
    let host = hostport.trim_start_matches('[').trim_end_matches(']');
    host.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, 3260))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.into(), v.into())
    }

    #[test]
    fn records() {
        let keys = [
            kv("TargetName", "iqn.a:disk"),
            kv("TargetAddress", "127.0.0.1:3261,1"),
            kv("TargetAddress", "[::1]:3261,1"),
            kv("TargetAlias", "x"),
            kv("TargetName", "iqn.a:auth"),
        ];
        let r = parse(&keys).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].addresses.len(), 2);
        assert!(r[1].addresses.is_empty());
        assert_eq!(
            parse(&[kv("TargetAddress", "1.2.3.4")]),
            Err(DiscoveryError::AddressWithoutName)
        );
    }

    #[test]
    fn addresses() {
        assert_eq!(
            parse_address("127.0.0.1:3261,1"),
            Some("127.0.0.1:3261".parse().unwrap())
        );
        assert_eq!(
            parse_address("[::1]:3262,1"),
            Some("[::1]:3262".parse().unwrap())
        );
        assert_eq!(
            parse_address("10.0.0.1"),
            Some("10.0.0.1:3260".parse().unwrap())
        );
        assert_eq!(
            parse_address("[fe80::1]"),
            Some("[fe80::1]:3260".parse().unwrap())
        );
        assert_eq!(parse_address("target.example.org:3260,1"), None);
    }
}
