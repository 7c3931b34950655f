//! The command line after the options: keywords may be abbreviated to any
//! unambiguous prefix, as in base iscsictl.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Reload,
    Discover(String),
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
            let a = it.next().ok_or(ParseError::MissingArgument("address"))?;
            Command::Discover(a.to_owned())
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
            Ok(Command::Discover("10.0.0.1".into()))
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
