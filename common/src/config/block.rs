//! `target NAME { ... }` blocks and the address statements inside them.

use std::net::SocketAddr;

use super::error::{ErrorKind, Place};
use super::lexer::{Keyword, Tok};
use super::params::{self, ParamsAt};
use super::parser::{Loc, PResult, Parser, Reported, Stream, TargetDraft};
use super::resolve::{self, Family, PortProblem};
use super::{Params, SessionType, Target, DEFAULT_PORT};

/// `HOST [port PORT] [inet|inet4|inet6]`, before resolution.
struct AddrSpec {
    host: String,
    port: Option<u16>,
    family: Family,
}

impl Parser {
    /// Parses a whole block, recovering from errors inside it by itself.
    pub(super) fn target(&mut self, s: &mut Stream, at: Loc) {
        let errors_before = self.draft.errors.len();
        let name = self.expect_text(s, "a target name");
        let named = name.is_ok();
        let name = name.unwrap_or_default();
        let mut keep = named;
        // The name is the SessionName that iscsictl show prints and that
        // iscsictl show session takes as one argument.
        let checked = proto::names::check_block_name(&name);
        if let (true, Err(problem)) = (named, checked) {
            self.err(
                at,
                ErrorKind::BadBlockName {
                    name: name.clone(),
                    problem,
                },
            );
            keep = false;
        } else if named && !self.names.insert(name.clone()) {
            self.err(at, ErrorKind::DuplicateTarget { name: name.clone() });
            keep = false;
        }
        let is_brace = |t: &Tok| *t == Tok::Punct(b'{');
        if named {
            let _ = self.check(s, "'{'", is_brace);
        }
        // Even after an error, a brace on this line opens the block, so that
        // its options are not mistaken for global statements.
        let brace = self.seek(s, is_brace);
        if !brace {
            self.skip_line(s, false);
            return;
        }
        self.next(s);
        let mut draft = TargetDraft {
            target: Target {
                name,
                line: at.line,
                disabled: false,
                session_type: SessionType::Normal,
                targetname: None,
                initiatorname: None,
                targetaddr: None,
                initiatoraddr: None,
                params: Params::default(),
            },
            at,
            targetname_at: None,
            initiatorname_at: None,
            params: ParamsAt::default(),
            had_error: false,
        };
        let closed = loop {
            let t = self.next(s);
            let here = Loc {
                file: s.file,
                line: t.line,
            };
            let r = match t.tok {
                Tok::Newline => continue,
                Tok::Punct(b'}') => break true,
                Tok::Eof => {
                    self.err(
                        here,
                        ErrorKind::Syntax {
                            expected: "'}'",
                            found: "end of file".into(),
                        },
                    );
                    break false;
                }
                Tok::Error => Err(Reported),
                Tok::Kw(k) => self.target_option(s, k, here, &mut draft),
                Tok::Str(word) => Err(self.err(
                    here,
                    ErrorKind::UnknownKeyword {
                        word: super::parser::quote(&word),
                    },
                )),
                other => Err(self.err(
                    here,
                    ErrorKind::Syntax {
                        expected: "a target option",
                        found: super::parser::describe(&other),
                    },
                )),
            };
            if r.and_then(|()| self.end_of_statement(s, true)).is_err() {
                self.skip_line(s, true);
            }
        };
        if closed && self.end_of_statement(s, false).is_err() {
            self.skip_line(s, false);
        }
        draft.had_error = self.draft.errors.len() > errors_before;
        if keep {
            self.draft.targets.push(draft);
        }
    }

    /// Skips to a token on this line that `want` accepts, leaving it unread.
    fn seek(&mut self, s: &mut Stream, want: impl Fn(&Tok) -> bool) -> bool {
        loop {
            let t = &self.peek(s).tok;
            if want(t) {
                return true;
            }
            if matches!(t, Tok::Newline | Tok::Eof) {
                return false;
            }
            self.next(s);
        }
    }

    fn target_option(
        &mut self,
        s: &mut Stream,
        k: Keyword,
        at: Loc,
        d: &mut TargetDraft,
    ) -> PResult<()> {
        let t = &mut d.target;
        match k {
            Keyword::Enabled => t.disabled = false,
            Keyword::Disabled => t.disabled = true,
            Keyword::Normal => t.session_type = SessionType::Normal,
            Keyword::Discovery => t.session_type = SessionType::Discovery,
            Keyword::TargetName => {
                t.targetname = Some(self.expect_text(s, "a target name")?);
                d.targetname_at = Some(at);
            }
            Keyword::InitiatorName => {
                t.initiatorname = Some(self.expect_text(s, "an initiator name")?);
                d.initiatorname_at = Some(at);
            }
            Keyword::TargetAddr => t.targetaddr = Some(self.address(s, at, DEFAULT_PORT)?),
            // Base resolves with the iscsi service and then zeroes the port.
            Keyword::InitiatorAddr => t.initiatoraddr = Some(self.address(s, at, 0)?.ip()),
            k if params::is_param(k) => {
                let set = self.param(s, k, at)?;
                d.params.apply(set, at);
            }
            k => return Err(self.misplaced(k, at, Place::TargetBlock)),
        }
        Ok(())
    }

    /// An address statement's arguments, resolved; `default_port` applies
    /// when no `port` is given and overrides the result when it is 0.
    fn address(&mut self, s: &mut Stream, at: Loc, default_port: u16) -> PResult<SocketAddr> {
        let spec = self.addr_spec(s)?;
        let port = match (default_port, spec.port) {
            (0, _) => 0,
            (_, Some(p)) => p,
            (d, None) => d,
        };
        resolve::resolve(&spec.host, port, spec.family).map_err(|reason| {
            self.err(
                at,
                ErrorKind::Resolve {
                    host: spec.host.clone(),
                    port,
                    reason,
                },
            )
        })
    }

    fn addr_spec(&mut self, s: &mut Stream) -> PResult<AddrSpec> {
        let host = self.expect_text(s, "a host name or address")?;
        let mut port = None;
        let mut family = None;
        loop {
            let file = s.file;
            let t = self.peek(s);
            let here = Loc { file, line: t.line };
            match t.tok {
                Tok::Kw(Keyword::Port) => {
                    self.next(s);
                    if port.is_some() {
                        return Err(self.err(here, ErrorKind::PortRedefined));
                    }
                    port = Some(self.port(s)?);
                }
                Tok::Kw(k @ (Keyword::Inet | Keyword::Inet6)) => {
                    self.next(s);
                    if family.is_some() {
                        return Err(self.err(here, ErrorKind::FamilyRedefined));
                    }
                    family = Some(if k == Keyword::Inet {
                        Family::Inet
                    } else {
                        Family::Inet6
                    });
                }
                _ => break,
            }
        }
        Ok(AddrSpec {
            host,
            port,
            family: family.unwrap_or(Family::Any),
        })
    }

    /// Unlike base, a NUMBER is fine here: `port 3260`.
    fn port(&mut self, s: &mut Stream) -> PResult<u16> {
        let t = self.expect(s, "a port", |t| matches!(t, Tok::Str(_) | Tok::Num { .. }))?;
        let at = Loc {
            file: s.file,
            line: t.line,
        };
        let (result, shown) = match t.tok {
            Tok::Num { value, text } => (resolve::port_from_number(value), text),
            Tok::Str(b) => {
                let text = String::from_utf8_lossy(&b).into_owned();
                (resolve::port_from_str(&text), text)
            }
            _ => return Err(Reported),
        };
        result.map_err(|problem| {
            let kind = match problem {
                PortProblem::Range(Some(value)) => ErrorKind::OutOfRange {
                    keyword: "port",
                    value,
                    min: 1,
                    max: u32::from(u16::MAX),
                },
                PortProblem::Range(None) | PortProblem::Invalid => {
                    ErrorKind::InvalidPort { value: shown }
                }
            };
            self.err(at, kind)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, SocketAddr};

    use super::super::testutil::{errs, ok, target};
    use super::super::SessionType;

    fn addr(line: &str) -> SocketAddr {
        ok(&target(line)).targets[0].targetaddr.unwrap()
    }

    #[test]
    fn every_target_option() {
        let c = ok("target \"sess-1\" {\n\
                    \tdisabled\n\
                    \tdiscovery\n\
                    \ttargetname iqn.2001-04.com.example:b\n\
                    \tinitiatorname \"iqn.1995-11.org.openbsd.iscsid:me\"\n\
                    \ttargetaddr 192.0.2.1 port 3261 inet\n\
                    \tinitiatoraddr 192.0.2.100\n\
                    }\n");
        let t = &c.targets[0];
        assert_eq!(t.name, "sess-1");
        assert!(t.disabled);
        assert_eq!(t.session_type, SessionType::Discovery);
        assert_eq!(t.targetname.as_deref(), Some("iqn.2001-04.com.example:b"));
        assert_eq!(
            t.initiatorname.as_deref(),
            Some("iqn.1995-11.org.openbsd.iscsid:me")
        );
        assert_eq!(t.targetaddr, Some("192.0.2.1:3261".parse().unwrap()));
        assert_eq!(t.initiatoraddr, Some("192.0.2.100".parse().unwrap()));
    }

    #[test]
    fn later_options_overwrite_earlier_ones() {
        let c = ok("target a { disabled\n discovery\n targetaddr 10.0.0.1\n\
                    targetaddr 10.0.0.2\n enabled\n normal\n targetname iqn.2001-04.com.example:x\n targetname iqn.2001-04.com.example:y }\n");
        let t = &c.targets[0];
        assert!(!t.disabled);
        assert_eq!(t.session_type, SessionType::Normal);
        assert_eq!(t.targetaddr, Some("10.0.0.2:3260".parse().unwrap()));
        assert_eq!(t.targetname.as_deref(), Some("iqn.2001-04.com.example:y"));
        assert_eq!(t.line, 1);
    }

    #[test]
    fn block_layout() {
        // Blank lines anywhere, first option on the brace line, brace after
        // the last option.
        let c = ok(
            "\n\ntarget a { targetaddr 10.0.0.2\n\n\n targetname iqn.2001-04.com.example:x\n\n}\n\n\
                    target b {\n targetaddr 10.0.0.3\n targetname iqn.2001-04.com.example:x }\n",
        );
        assert_eq!(c.targets.len(), 2);
        assert_eq!(c.targets[0].line, 3);
        assert_eq!(c.targets[1].line, 10);
        assert_eq!(
            errs("target a { targetaddr 10.0.0.2 targetname iqn.2001-04.com.example:x }\n"),
            ["t.conf:1: syntax error: expected end of line, found keyword targetname"]
        );
        assert_eq!(
            errs("target a\n{\n"),
            [
                "t.conf:1: syntax error: expected '{', found end of line",
                "t.conf:2: syntax error: expected a statement, found '{'"
            ]
        );
        assert_eq!(
            errs(&format!("{} target b {{ }}\n", target("").trim_end())),
            ["t.conf:5: syntax error: expected end of line, found keyword target"]
        );
        // A bad header still opens the block, so no cascade follows.
        assert_eq!(
            errs("target a b {\n targetaddr 10.0.0.2\n targetname iqn.2001-04.com.example:x\n}\n"),
            ["t.conf:1: syntax error: expected '{', found \"b\""]
        );
        assert_eq!(
            errs("target 1 {\n}\n"),
            ["t.conf:1: syntax error: expected a target name, found 1"]
        );
    }

    #[test]
    fn ports() {
        let p = |s: &str| addr(&format!(" targetaddr 10.0.0.2 {s}")).port();
        assert_eq!(p(""), 3260);
        assert_eq!(p("port 3261"), 3261);
        assert_eq!(p("port \"3262\""), 3262);
        assert_eq!(p("port iscsi"), 3260);
        assert_eq!(p("port 65535"), 65535);
        assert_eq!(p("port 1 inet"), 1);
        assert_eq!(p("inet port 2"), 2);
        let e = |s: &str| errs(&target(&format!(" targetaddr 10.0.0.2 {s}")));
        assert_eq!(e("port 0"), ["t.conf:4: port 0 out of range 1..65535"]);
        assert_eq!(
            e("port 65536"),
            ["t.conf:4: port 65536 out of range 1..65535"]
        );
        assert_eq!(e("port -1"), ["t.conf:4: port -1 out of range 1..65535"]);
        assert_eq!(
            e("port \"70000\""),
            ["t.conf:4: port 70000 out of range 1..65535"]
        );
        assert_eq!(
            e("port www"),
            ["t.conf:4: invalid port www: expected 1..65535 or iscsi"]
        );
        assert_eq!(
            e("port"),
            ["t.conf:4: syntax error: expected a port, found end of line"]
        );
        assert_eq!(e("port 1 port 2"), ["t.conf:4: port cannot be redefined"]);
        assert_eq!(
            e("inet inet6"),
            ["t.conf:4: address family cannot be redefined"]
        );
        assert_eq!(
            e("inet4 port 1 inet"),
            ["t.conf:4: address family cannot be redefined"]
        );
    }

    #[test]
    fn ipv4_and_ipv6() {
        assert_eq!(
            addr(" targetaddr 10.0.0.3"),
            "10.0.0.3:3260".parse().unwrap()
        );
        assert_eq!(addr(" targetaddr ::1"), "[::1]:3260".parse().unwrap());
        assert_eq!(
            addr(" targetaddr 2001:db8::7 port 860 inet6"),
            "[2001:db8::7]:860".parse().unwrap()
        );
        assert_eq!(
            addr(" targetaddr \"::ffff:10.0.0.1\""),
            "[::ffff:10.0.0.1]:3260".parse().unwrap()
        );
        assert_eq!(
            addr(" targetaddr localhost inet"),
            "127.0.0.1:3260".parse().unwrap()
        );
        assert_eq!(
            errs(&target(" targetaddr 10.0.0.2 inet6")),
            ["t.conf:4: no inet6 address found (10.0.0.2 3260)"]
        );
        assert_eq!(
            errs(&target(" targetaddr ::1 port 3000 inet4")),
            ["t.conf:4: no inet address found (::1 3000)"]
        );
        assert_eq!(
            errs(&target(" targetaddr")),
            ["t.conf:4: syntax error: expected a host name or address, found end of line"]
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn scoped_ipv6() {
        match addr(" targetaddr fe80::1%lo") {
            SocketAddr::V6(a) => {
                assert_eq!(a.ip().segments()[0], 0xfe80);
                assert_ne!(a.scope_id(), 0);
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn initiatoraddr_keeps_only_the_ip() {
        let ia = |s: &str| ok(&target(s)).targets[0].initiatoraddr.unwrap();
        assert_eq!(
            ia(" initiatoraddr 10.0.0.1 port 4000"),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(ia(" initiatoraddr ::1"), "::1".parse::<IpAddr>().unwrap());
        // `*` is no word character, so as in base it must be quoted.
        assert_eq!(
            ia(" initiatoraddr \"*\""),
            "0.0.0.0".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            ia(" initiatoraddr '*' inet6"),
            "::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            errs(&target(" initiatoraddr *")),
            ["t.conf:4: syntax error: expected a host name or address, found '*'"]
        );
        assert_eq!(
            errs(&target(" initiatoraddr 10.0.0.1 inet6")),
            ["t.conf:4: no inet6 address found (10.0.0.1 0)"]
        );
    }

    #[test]
    fn target_names() {
        let n31 = "n".repeat(31);
        let c = ok(&target("").replace("target t", &format!("target {n31}")));
        assert_eq!(c.targets[0].name, n31);
        let n32 = "n".repeat(32);
        assert_eq!(
            errs(&target("").replace("target t", &format!("target {n32}"))),
            [format!(
                "t.conf:1: target \"{n32}\": block name is 32 bytes long, at most 31 allowed"
            )]
        );
        assert_eq!(
            errs(&format!("{}{}", target(""), target(""))),
            ["t.conf:6: target t defined twice"]
        );
        let named = |n: &str| errs(&target("").replace("target t", &format!("target {n}")));
        assert_eq!(
            named("\"\""),
            ["t.conf:1: target \"\": block name is empty"]
        );
        assert_eq!(
            named("\"my disk\""),
            ["t.conf:1: target \"my disk\": block name has white space (' ') at position 3"]
        );
        assert_eq!(
            named("\"a\tb\""),
            [
                "t.conf:1: target \"a\\tb\": block name has a control character ('\\t') \
              at position 2"
            ]
        );
        let esc = named("\"a\x1bb\"");
        assert_eq!(
            esc,
            [
                "t.conf:1: target \"a\\u{1b}b\": block name has a control character \
              ('\\u{1b}') at position 2"
            ]
        );
        assert!(!esc[0].chars().any(char::is_control));
        assert_eq!(
            named("\"bell\x07\""),
            [
                "t.conf:1: target \"bell\\u{7}\": block name has a control character \
              ('\\u{7}') at position 5"
            ]
        );
        // Only the refused block is dropped: its options do not leak out.
        assert_eq!(
            errs(&format!(
                "target \"\" {{\n targetaddr 10.0.0.2\n}}\n{}",
                target("")
            )),
            ["t.conf:1: target \"\": block name is empty"]
        );
    }

    #[test]
    fn block_errors_stay_in_the_block() {
        assert_eq!(
            errs(&target(
                " bogus 1\n isid en 1 2\n target x {\n port 3\n 7\n = x"
            )),
            [
                "t.conf:4: unknown keyword bogus",
                "t.conf:5: isid is not allowed inside a target block",
                "t.conf:6: target is not allowed inside a target block",
                "t.conf:7: syntax error: expected a target option, found keyword port",
                "t.conf:8: syntax error: expected a target option, found 7",
                "t.conf:9: syntax error: expected a target option, found '='",
            ]
        );
        // The error on the closing line still closes the block.
        assert_eq!(
            errs("target a { targetname }\ntarget b {\n targetaddr 10.0.0.2\n targetname iqn.2001-04.com.example:x\n}\n"),
            ["t.conf:1: syntax error: expected a target name, found '}'"]
        );
        assert_eq!(
            errs("target a {\n targetaddr 10.0.0.2\n"),
            ["t.conf:3: syntax error: expected '}', found end of file"]
        );
    }
}
