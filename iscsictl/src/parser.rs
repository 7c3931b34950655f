//! The command line after the options: keywords may be abbreviated to any
//! unambiguous prefix, as in base iscsictl.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use common::config;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Reload,
    /// `discover ADDRESS [port PORT]`; a port may also be part of ADDRESS.
    Discover {
        addr: String,
        port: Option<u16>,
    },
    ShowSummary,
    ShowSessions,
    ShowSession(String),
    ShowVscsiStats,
    LogVerbose,
    LogBrief,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    Missing(Vec<&'static str>),
    Ambiguous(String),
    Unknown(String, Vec<&'static str>),
    Superfluous(String),
    MissingArgument(&'static str),
    InvalidPort(String),
    /// `port` after an address that already has one.
    PortTwice(String),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Missing(v) => {
                write!(f, "missing argument:\nvalid commands/args:")?;
                for k in v {
                    write!(f, "\n  {k}")?;
                }
                Ok(())
            }
            ParseError::Ambiguous(w) => write!(f, "ambiguous argument: {w}"),
            ParseError::Unknown(w, v) => {
                write!(f, "unknown argument: {w}\nvalid commands/args:")?;
                for k in v {
                    write!(f, "\n  {k}")?;
                }
                Ok(())
            }
            ParseError::Superfluous(w) => write!(f, "superfluous argument: {w}"),
            ParseError::MissingArgument(what) => write!(f, "missing argument: {what}"),
            ParseError::InvalidPort(w) => {
                write!(f, "invalid port {w}: expected 1..65535 or iscsi")
            }
            ParseError::PortTwice(a) => write!(f, "address {a} already has a port"),
        }
    }
}

impl std::error::Error for ParseError {}

fn pick(word: Option<&str>, keys: &[&'static str]) -> Result<&'static str, ParseError> {
    let Some(w) = word else {
        return Err(ParseError::Missing(keys.to_vec()));
    };
    if let Some(k) = keys.iter().find(|k| **k == w) {
        return Ok(k);
    }
    let hits: Vec<&&str> = keys
        .iter()
        .filter(|k| !w.is_empty() && k.starts_with(w))
        .collect();
    match hits.as_slice() {
        [one] => Ok(one),
        [] => Err(ParseError::Unknown(w.to_owned(), keys.to_vec())),
        _ => Err(ParseError::Ambiguous(w.to_owned())),
    }
}

pub fn parse(args: &[String]) -> Result<Command, ParseError> {
    let mut it = args.iter().map(String::as_str);
    let cmd = match pick(it.next(), &["discover", "log", "reload", "show"])? {
        "reload" => Command::Reload,
        "discover" => {
            let addr = it.next().ok_or(ParseError::MissingArgument("address"))?;
            let mut port = None;
            if let Some(w) = it.next() {
                pick(Some(w), &["port"])?;
                let p = it.next().ok_or(ParseError::MissingArgument("port"))?;
                if has_port(addr) {
                    return Err(ParseError::PortTwice(addr.to_owned()));
                }
                port = Some(
                    config::parse_port(p).ok_or_else(|| ParseError::InvalidPort(p.to_owned()))?,
                );
            }
            Command::Discover {
                addr: addr.to_owned(),
                port,
            }
        }
        "log" => match pick(it.next(), &["brief", "verbose"])? {
            "verbose" => Command::LogVerbose,
            _ => Command::LogBrief,
        },
        _ => match it.next() {
            None => Command::ShowSessions,
            Some(w) => match pick(Some(w), &["session", "summary", "vscsi"])? {
                "summary" => Command::ShowSummary,
                "session" => {
                    let n = it
                        .next()
                        .ok_or(ParseError::MissingArgument("session name"))?;
                    Command::ShowSession(n.to_owned())
                }
                _ => {
                    pick(it.next(), &["stats"])?;
                    Command::ShowVscsiStats
                }
            },
        },
    };
    match it.next() {
        Some(extra) => Err(ParseError::Superfluous(extra.to_owned())),
        None => Ok(cmd),
    }
}

/// "host:port" or "[v6]:port"; a bare IPv6 address has colons but no port.
pub fn has_port(addr: &str) -> bool {
    if addr.parse::<SocketAddr>().is_ok() {
        return true;
    }
    let bare = addr.trim_start_matches('[').trim_end_matches(']');
    addr.contains(':') && bare.parse::<IpAddr>().is_err()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Command, ParseError> {
        let v: Vec<String> = s.split_whitespace().map(String::from).collect();
        parse(&v)
    }

    #[test]
    fn commands_and_prefixes() {
        assert_eq!(p("reload"), Ok(Command::Reload));
        assert_eq!(p("rel"), Ok(Command::Reload));
        assert_eq!(p("show"), Ok(Command::ShowSessions));
        assert_eq!(p("sh sum"), Ok(Command::ShowSummary));
        assert_eq!(p("show vscsi stats"), Ok(Command::ShowVscsiStats));
        assert_eq!(p("sh v st"), Ok(Command::ShowVscsiStats));
        assert_eq!(
            p("show session disk1"),
            Ok(Command::ShowSession("disk1".into()))
        );
        assert_eq!(p("log verbose"), Ok(Command::LogVerbose));
        assert_eq!(p("log b"), Ok(Command::LogBrief));
        assert_eq!(
            p("discover 10.0.0.1"),
            Ok(Command::Discover {
                addr: "10.0.0.1".into(),
                port: None
            })
        );
    }

    #[test]
    fn discover_port_as_iscsi_conf_writes_it() {
        let d = |addr: &str, port| {
            Ok(Command::Discover {
                addr: addr.into(),
                port,
            })
        };
        assert_eq!(p("discover 10.0.0.1 port 3261"), d("10.0.0.1", Some(3261)));
        assert_eq!(p("disc 10.0.0.1 p 3261"), d("10.0.0.1", Some(3261)));
        assert_eq!(p("discover 10.0.0.1 port iscsi"), d("10.0.0.1", Some(3260)));
        assert_eq!(
            p("discover 2001:db8::20 port 860"),
            d("2001:db8::20", Some(860))
        );
        assert_eq!(
            p("discover [2001:db8::20] port 860"),
            d("[2001:db8::20]", Some(860))
        );
        assert_eq!(
            p("discover portal.example port 3261"),
            d("portal.example", Some(3261))
        );
        // The older forms still work.
        assert_eq!(p("discover 10.0.0.1:3261"), d("10.0.0.1:3261", None));
        assert_eq!(
            p("discover [2001:db8::20]:3261"),
            d("[2001:db8::20]:3261", None)
        );
        assert_eq!(p("discover 2001:db8::20"), d("2001:db8::20", None));

        assert_eq!(
            p("discover 10.0.0.1 port"),
            Err(ParseError::MissingArgument("port"))
        );
        assert_eq!(
            p("discover 10.0.0.1 port 0"),
            Err(ParseError::InvalidPort("0".into()))
        );
        assert_eq!(
            p("discover 10.0.0.1 port 65536"),
            Err(ParseError::InvalidPort("65536".into()))
        );
        assert_eq!(
            p("discover 10.0.0.1 port www"),
            Err(ParseError::InvalidPort("www".into()))
        );
        assert_eq!(
            p("discover 10.0.0.1:3261 port 3262"),
            Err(ParseError::PortTwice("10.0.0.1:3261".into()))
        );
        assert_eq!(
            p("discover portal.example:3261 port 3262"),
            Err(ParseError::PortTwice("portal.example:3261".into()))
        );
        assert_eq!(
            p("discover [::1]:3261 port 3262"),
            Err(ParseError::PortTwice("[::1]:3261".into()))
        );
        assert!(matches!(
            p("discover 10.0.0.1 inet6"),
            Err(ParseError::Unknown(..))
        ));
        assert_eq!(
            p("discover 10.0.0.1 port 3261 now"),
            Err(ParseError::Superfluous("now".into()))
        );
    }

    #[test]
    fn errors() {
        assert!(matches!(p(""), Err(ParseError::Missing(_))));
        assert_eq!(p("show s"), Err(ParseError::Ambiguous("s".into())));
        assert!(matches!(p("frob"), Err(ParseError::Unknown(..))));
        assert_eq!(p("reload now"), Err(ParseError::Superfluous("now".into())));
        assert_eq!(p("discover"), Err(ParseError::MissingArgument("address")));
        assert!(matches!(p("log"), Err(ParseError::Missing(_))));
        assert!(matches!(p("show vscsi"), Err(ParseError::Missing(_))));
    }
}
