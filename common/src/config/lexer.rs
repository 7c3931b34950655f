//! Tokens of iscsi.conf, following the rules of base parse.y's yylex():
//! comments, backslash-newline, quoting, NUMBER versus STRING, and `$macro`
//! expansion by pushing the macro's text back onto the input.
//!
//! Every character remembers where it came from (the file itself or a macro
//! defined in some set of files) so that a CHAP secret can be traced to the
//! files that really hold its text.

use std::collections::HashMap;

use super::error::{ConfigError, ErrorKind, NumberProblem};
use super::timers::Timer;

/// Index of a file in the parser's file table.
pub(crate) type FileId = usize;

/// parse.y's yylex() buffer size; the limits below reproduce its checks.
const TOKEN_BUF: usize = 8096;
/// Total macro text one file may expand: macros cannot nest, so only a
/// file full of `$x` could exceed it.
pub(crate) const MAX_EXPANSION: usize = 4 << 20;

/// Where a character came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Src {
    File(FileId),
    /// A macro; the index names an interned set of files in the parser.
    Macro(u32),
}

/// A macro's text and the set of files its text came from.
#[derive(Debug, Clone)]
pub(crate) struct Macro {
    pub value: Vec<u8>,
    pub origin: u32,
}

pub(crate) type Macros = HashMap<Vec<u8>, Macro>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keyword {
    Address,
    Chap,
    DataDigest,
    DefaultTime2Retain,
    DefaultTime2Wait,
    Disabled,
    Discovery,
    Enabled,
    FirstBurstLength,
    HeaderDigest,
    ImmediateData,
    Include,
    Inet,
    Inet6,
    InitialR2T,
    InitiatorAddr,
    InitiatorName,
    Isid,
    MaxBurstLength,
    MaxOutstandingR2T,
    MaxRecvDataSegmentLength,
    Normal,
    Port,
    QueueDepth,
    Target,
    TargetAddr,
    TargetName,
    /// One of the daemon's timers, an extension of this parser.
    Timer(Timer),
}

/// (spelling, keyword); `inet4` is base's alias of `inet`.
const KEYWORDS: &[(&str, Keyword)] = &[
    ("address", Keyword::Address),
    ("chap", Keyword::Chap),
    ("commandtimeout", Keyword::Timer(Timer::Command)),
    ("datadigest", Keyword::DataDigest),
    ("defaulttime2retain", Keyword::DefaultTime2Retain),
    ("defaulttime2wait", Keyword::DefaultTime2Wait),
    ("disabled", Keyword::Disabled),
    ("discovery", Keyword::Discovery),
    ("enabled", Keyword::Enabled),
    ("firstburstlength", Keyword::FirstBurstLength),
    ("headerdigest", Keyword::HeaderDigest),
    ("immediatedata", Keyword::ImmediateData),
    ("include", Keyword::Include),
    ("inet", Keyword::Inet),
    ("inet4", Keyword::Inet),
    ("inet6", Keyword::Inet6),
    ("initialr2t", Keyword::InitialR2T),
    ("initiatoraddr", Keyword::InitiatorAddr),
    ("initiatorname", Keyword::InitiatorName),
    ("isid", Keyword::Isid),
    ("logintimeout", Keyword::Timer(Timer::Login)),
    ("maxburstlength", Keyword::MaxBurstLength),
    ("maxoutstandingr2t", Keyword::MaxOutstandingR2T),
    (
        "maxrecvdatasegmentlength",
        Keyword::MaxRecvDataSegmentLength,
    ),
    ("nopinterval", Keyword::Timer(Timer::NopInterval)),
    ("noptimeout", Keyword::Timer(Timer::NopTimeout)),
    ("normal", Keyword::Normal),
    ("port", Keyword::Port),
    ("queuedepth", Keyword::QueueDepth),
    ("reconnectmax", Keyword::Timer(Timer::ReconnectMax)),
    ("reissuelimit", Keyword::Timer(Timer::ReissueLimit)),
    ("replacementtimeout", Keyword::Timer(Timer::Replacement)),
    ("target", Keyword::Target),
    ("targetaddr", Keyword::TargetAddr),
    ("targetname", Keyword::TargetName),
    ("tmftimeout", Keyword::Timer(Timer::Tmf)),
];

impl Keyword {
    fn lookup(word: &[u8]) -> Option<Keyword> {
        KEYWORDS
            .binary_search_by(|(k, _)| k.as_bytes().cmp(word))
            .ok()
            .and_then(|i| KEYWORDS.get(i))
            .map(|&(_, k)| k)
    }

    pub(crate) fn name(self) -> &'static str {
        KEYWORDS
            .iter()
            .find(|&&(_, k)| k == self)
            .map_or("?", |&(n, _)| n)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    Newline,
    Eof,
    /// Quoted or unquoted; never a keyword.
    Str(Vec<u8>),
    /// `text` is the digits as written, for places that want a string.
    Num {
        value: i64,
        text: String,
    },
    Kw(Keyword),
    /// Any other single character: `{`, `}`, `=`, or junk.
    Punct(u8),
    /// The lexer already reported an error and dropped the rest of the line.
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub tok: Tok,
    pub line: usize,
    /// Sources of the characters kept in the token, without repeats.
    pub origin: Vec<Src>,
}

pub(crate) struct Lexer {
    file: FileId,
    name: String,
    data: Vec<u8>,
    pos: usize,
    line: usize,
    /// Characters to read again before the input, last one first; macro
    /// text goes here too, exactly as in newer parse.y.
    pushback: Vec<(u8, Src)>,
    expanded: usize,
}

fn is_blank(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

// C isspace() in the C locale; Rust's is_ascii_whitespace() lacks \v.
pub(crate) fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn allowed_to_end_number(c: u8) -> bool {
    is_space(c) || matches!(c, b')' | b',' | b'/' | b'}' | b'=')
}

fn allowed_in_string(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || (c.is_ascii_punctuation()
            && !matches!(c, b'(' | b')' | b'{' | b'}' | b'!' | b'=' | b'#' | b','))
}

fn add_src(origin: &mut Vec<Src>, s: Src) {
    if !origin.contains(&s) {
        origin.push(s);
    }
}

impl Lexer {
    pub(crate) fn new(file: FileId, name: String, data: Vec<u8>) -> Lexer {
        Lexer {
            file,
            name,
            data,
            pos: 0,
            line: 1,
            pushback: Vec::new(),
            expanded: 0,
        }
    }

    fn raw(&mut self) -> Option<u8> {
        let c = self.data.get(self.pos).copied()?;
        self.pos += 1;
        Some(c)
    }

    /// lgetc(): pushed-back characters first, then the file. Outside quotes
    /// a backslash-newline vanishes and a backslash before anything else
    /// yields that character.
    fn getc(&mut self, quoted: bool) -> Option<(u8, Src)> {
        if let Some(c) = self.pushback.pop() {
            return Some(c);
        }
        let src = Src::File(self.file);
        if quoted {
            return self.raw().map(|c| (c, src));
        }
        loop {
            let c = self.raw()?;
            if c != b'\\' {
                return Some((c, src));
            }
            match self.raw()? {
                b'\n' => self.line += 1,
                next => return Some((next, src)),
            }
        }
    }

    fn ungetc(&mut self, c: Option<(u8, Src)>) {
        if let Some(c) = c {
            self.pushback.push(c);
        }
    }

    fn is_file(&self, s: Src) -> bool {
        s == Src::File(self.file)
    }

    /// Records an error and drops the rest of the line, leaving the newline
    /// for the parser so that it can resynchronise there.
    fn fail(&mut self, errs: &mut Vec<ConfigError>, line: usize, kind: ErrorKind) -> Token {
        errs.push(ConfigError {
            file: self.name.clone(),
            line,
            kind,
        });
        loop {
            match self.getc(false) {
                None => break,
                Some((b'\n', s)) if self.is_file(s) => {
                    self.pushback.push((b'\n', s));
                    break;
                }
                Some(_) => {}
            }
        }
        Token {
            tok: Tok::Error,
            line,
            origin: Vec::new(),
        }
    }

    pub(crate) fn next(&mut self, macros: &Macros, errs: &mut Vec<ConfigError>) -> Token {
        loop {
            let mut c = self.getc(false);
            while matches!(c, Some((b, _)) if is_blank(b)) {
                c = self.getc(false);
            }
            let line = self.line;
            if let Some((b'#', _)) = c {
                loop {
                    c = self.getc(false);
                    if matches!(c, None | Some((b'\n', _))) {
                        break;
                    }
                }
            }
            match c {
                // Text that came out of a macro is never expanded again.
                Some((b'$', s)) if self.is_file(s) => match self.expand(macros) {
                    Ok(()) => continue,
                    Err(kind) => return self.fail(errs, line, kind),
                },
                Some((q @ (b'"' | b'\''), _)) => return self.quoted(q, line, errs),
                Some((b, s)) if b == b'-' || b.is_ascii_digit() => {
                    if let Some(t) = self.number((b, s), line, errs) {
                        return t;
                    }
                    // Not a number: the characters were pushed back.
                    c = self.getc(false);
                }
                _ => {}
            }
            return self.word_or_char(c, line, errs);
        }
    }

    /// Reads `$name` (the `$` is consumed) and pushes the macro's text back.
    fn expand(&mut self, macros: &Macros) -> Result<(), ErrorKind> {
        let mut name = Vec::new();
        loop {
            let c = self.getc(false);
            match c {
                Some((b, _)) if b.is_ascii_alphanumeric() || b == b'_' => {
                    if name.len() + 2 >= TOKEN_BUF {
                        return Err(ErrorKind::StringTooLong);
                    }
                    name.push(b);
                }
                _ => {
                    self.ungetc(c);
                    break;
                }
            }
        }
        let Some(m) = macros.get(&name) else {
            return Err(ErrorKind::UndefinedMacro {
                name: String::from_utf8_lossy(&name).into_owned(),
            });
        };
        self.expanded = self.expanded.saturating_add(m.value.len());
        if self.expanded > MAX_EXPANSION {
            return Err(ErrorKind::ExpansionLimit {
                limit: MAX_EXPANSION,
            });
        }
        let src = Src::Macro(m.origin);
        self.pushback
            .extend(m.value.iter().rev().map(|&b| (b, src)));
        Ok(())
    }

    fn quoted(&mut self, quote: u8, line: usize, errs: &mut Vec<ConfigError>) -> Token {
        let mut buf = Vec::new();
        let mut origin = Vec::new();
        loop {
            let Some((mut c, mut s)) = self.getc(true) else {
                return self.fail(errs, line, ErrorKind::UnterminatedString);
            };
            if c == b'\n' {
                // As in base, a raw newline inside quotes is dropped.
                if self.is_file(s) {
                    self.line += 1;
                }
                continue;
            } else if c == b'\\' {
                let Some((next, ns)) = self.getc(true) else {
                    return self.fail(errs, line, ErrorKind::UnterminatedString);
                };
                if next == quote || is_blank(next) {
                    (c, s) = (next, ns);
                } else if next == b'\n' {
                    if self.is_file(ns) {
                        self.line += 1;
                    }
                    continue;
                } else {
                    self.pushback.push((next, ns));
                }
            } else if c == quote {
                break;
            } else if c == 0 {
                return self.fail(errs, line, ErrorKind::NulInString);
            }
            if buf.len() + 2 >= TOKEN_BUF {
                return self.fail(errs, line, ErrorKind::StringTooLong);
            }
            buf.push(c);
            add_src(&mut origin, s);
        }
        Token {
            tok: Tok::Str(buf),
            line,
            origin,
        }
    }

    /// A run of digits, optionally after '-', is a NUMBER only when a
    /// separator follows; otherwise everything is pushed back and None says
    /// to read it again as a word.
    fn number(
        &mut self,
        first: (u8, Src),
        line: usize,
        errs: &mut Vec<ConfigError>,
    ) -> Option<Token> {
        let mut buf = vec![first];
        let end = loop {
            let c = self.getc(false);
            match c {
                Some((b, s)) if b.is_ascii_digit() => {
                    buf.push((b, s));
                    if buf.len() >= TOKEN_BUF {
                        return Some(self.fail(errs, line, ErrorKind::StringTooLong));
                    }
                }
                _ => break c,
            }
        };
        self.ungetc(end);
        let only_minus = buf.len() == 1 && first.0 == b'-';
        let ends_number = match end {
            None => true,
            Some((b, _)) => allowed_to_end_number(b),
        };
        if !only_minus && ends_number {
            let text: String = buf.iter().map(|&(b, _)| char::from(b)).collect();
            let mut origin = Vec::new();
            for &(_, s) in &buf {
                add_src(&mut origin, s);
            }
            return Some(match text.parse::<i64>() {
                Ok(value) => Token {
                    tok: Tok::Num { value, text },
                    line,
                    origin,
                },
                Err(_) => {
                    let problem = if first.0 == b'-' {
                        NumberProblem::TooSmall
                    } else {
                        NumberProblem::TooLarge
                    };
                    self.fail(errs, line, ErrorKind::InvalidNumber { text, problem })
                }
            });
        }
        // Leaves `first` on top, to be read again.
        self.pushback.extend(buf.into_iter().rev());
        None
    }

    fn word_or_char(
        &mut self,
        c: Option<(u8, Src)>,
        line: usize,
        errs: &mut Vec<ConfigError>,
    ) -> Token {
        let token = |tok, origin| Token { tok, line, origin };
        let Some((b, s)) = c else {
            return token(Tok::Eof, Vec::new());
        };
        if b.is_ascii_alphanumeric() || b == b':' || b == b'_' {
            let mut buf = vec![b];
            let mut origin = vec![s];
            loop {
                let c = self.getc(false);
                match c {
                    Some((b, s)) if allowed_in_string(b) => {
                        buf.push(b);
                        add_src(&mut origin, s);
                        if buf.len() >= TOKEN_BUF {
                            return self.fail(errs, line, ErrorKind::StringTooLong);
                        }
                    }
                    _ => {
                        self.ungetc(c);
                        break;
                    }
                }
            }
            // Keywords keep their origin too: a macro value may be made of
            // them and end up as a secret.
            return match Keyword::lookup(&buf) {
                Some(k) => token(Tok::Kw(k), origin),
                None => token(Tok::Str(buf), origin),
            };
        }
        if b == b'\n' && self.is_file(s) {
            // A comment may have run over continuation lines since `line`.
            let at = self.line;
            self.line += 1;
            return Token {
                tok: Tok::Newline,
                line: at,
                origin: Vec::new(),
            };
        }
        token(Tok::Punct(b), Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex_with(text: &[u8], macros: &Macros) -> (Vec<(Tok, usize)>, Vec<ConfigError>) {
        let mut lx = Lexer::new(0, "t.conf".into(), text.to_vec());
        let mut errs = Vec::new();
        let mut out = Vec::new();
        loop {
            let t = lx.next(macros, &mut errs);
            let done = t.tok == Tok::Eof;
            out.push((t.tok, t.line));
            if done || out.len() > 10_000 {
                return (out, errs);
            }
        }
    }

    fn toks(text: &[u8]) -> Vec<Tok> {
        let (t, e) = lex_with(text, &Macros::new());
        assert!(e.is_empty(), "{e:?}");
        t.into_iter().map(|(t, _)| t).collect()
    }

    fn s(x: &str) -> Tok {
        Tok::Str(x.as_bytes().to_vec())
    }

    fn n(v: i64) -> Tok {
        Tok::Num {
            value: v,
            text: v.to_string(),
        }
    }

    #[test]
    fn keyword_table_is_sorted_for_binary_search() {
        assert!(KEYWORDS.windows(2).all(|w| w[0].0 < w[1].0));
        for &(name, k) in KEYWORDS {
            assert_eq!(Keyword::lookup(name.as_bytes()), Some(k));
        }
        assert_eq!(Keyword::Inet.name(), "inet");
        assert_eq!(Keyword::lookup(b"Target"), None);
        assert_eq!(Keyword::lookup(b"targe"), None);
    }

    #[test]
    fn comments_and_continuations() {
        let (t, e) = lex_with(
            b"a # note \\\n still note\nb\\\nc tar\\\nget\n",
            &Macros::new(),
        );
        assert!(e.is_empty());
        assert_eq!(
            t,
            vec![
                (s("a"), 1),
                (Tok::Newline, 2),
                (s("bc"), 3),
                (Tok::Kw(Keyword::Target), 4),
                (Tok::Newline, 5),
                (Tok::Eof, 6),
            ]
        );
    }

    #[test]
    fn quoting_and_escapes() {
        assert_eq!(
            toks(b"\"a b\" 'c\"d' \"e\\\"f\" \"g\\h\" \"i\\ j\" 'k\\'l'"),
            vec![
                s("a b"),
                s("c\"d"),
                s("e\"f"),
                s("g\\h"),
                s("i j"),
                s("k'l"),
                Tok::Eof
            ]
        );
        // Raw and escaped newlines inside quotes vanish but still count.
        let (t, _) = lex_with(b"\"x\ny\\\nz\" w", &Macros::new());
        assert_eq!(t, vec![(s("xyz"), 1), (s("w"), 3), (Tok::Eof, 3)]);
        // A quoted keyword is a STRING. Outside quotes a backslash yields
        // the next character, so an escaped blank still separates words.
        assert_eq!(
            toks(b"\"target\" a\\ b a\\xb"),
            vec![s("target"), s("a"), s("b"), s("axb"), Tok::Eof]
        );
    }

    #[test]
    fn number_or_string() {
        assert_eq!(
            toks(b"3260 10.0.0.2 -5 - 12abc 7} 2001:db8::1 -x 0012,"),
            vec![
                n(3260),
                s("10.0.0.2"),
                n(-5),
                Tok::Punct(b'-'),
                s("12abc"),
                n(7),
                Tok::Punct(b'}'),
                s("2001:db8::1"),
                Tok::Punct(b'-'),
                s("x"),
                Tok::Num {
                    value: 12,
                    text: "0012".into()
                },
                Tok::Punct(b','),
                Tok::Eof
            ]
        );
        assert_eq!(toks(b"1=2"), vec![n(1), Tok::Punct(b'='), n(2), Tok::Eof]);
    }

    #[test]
    fn numbers_out_of_i64_are_errors() {
        let (t, e) = lex_with(
            b"99999999999999999999 x\n-99999999999999999999\n",
            &Macros::new(),
        );
        assert_eq!(
            t,
            vec![
                (Tok::Error, 1),
                (Tok::Newline, 1),
                (Tok::Error, 2),
                (Tok::Newline, 2),
                (Tok::Eof, 3)
            ]
        );
        assert_eq!(
            e.iter().map(|e| e.kind.clone()).collect::<Vec<_>>(),
            vec![
                ErrorKind::InvalidNumber {
                    text: "99999999999999999999".into(),
                    problem: NumberProblem::TooLarge
                },
                ErrorKind::InvalidNumber {
                    text: "-99999999999999999999".into(),
                    problem: NumberProblem::TooSmall
                }
            ]
        );
        assert_eq!(
            toks(b"9223372036854775807 -9223372036854775808"),
            vec![n(i64::MAX), n(i64::MIN), Tok::Eof]
        );
    }

    #[test]
    fn unquoted_word_characters() {
        assert_eq!(
            toks(b"a(b c\"d e=f g,h i!j k#l\n_m :n 1.2/3"),
            vec![
                s("a"),
                Tok::Punct(b'('),
                s("b"),
                s("c\"d"),
                s("e"),
                Tok::Punct(b'='),
                s("f"),
                s("g"),
                Tok::Punct(b','),
                s("h"),
                s("i"),
                Tok::Punct(b'!'),
                s("j"),
                s("k"),
                Tok::Newline,
                s("_m"),
                s(":n"),
                s("1.2/3"),
                Tok::Eof
            ]
        );
        // A lone `$` names the empty macro, which is never defined.
        let (t, e) = lex_with(b"$ x", &Macros::new());
        assert_eq!(t, vec![(Tok::Error, 1), (Tok::Eof, 1)]);
        assert_eq!(e[0].kind, ErrorKind::UndefinedMacro { name: "".into() });
    }

    #[test]
    fn keywords_are_exact_and_case_sensitive() {
        assert_eq!(
            toks(b"target targetaddr inet4 inet6 Target port"),
            vec![
                Tok::Kw(Keyword::Target),
                Tok::Kw(Keyword::TargetAddr),
                Tok::Kw(Keyword::Inet),
                Tok::Kw(Keyword::Inet6),
                s("Target"),
                Tok::Kw(Keyword::Port),
                Tok::Eof
            ]
        );
    }

    fn macros(defs: &[(&str, &str, u32)]) -> Macros {
        defs.iter()
            .map(|&(k, v, origin)| {
                (
                    k.as_bytes().to_vec(),
                    Macro {
                        value: v.as_bytes().to_vec(),
                        origin,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn macros_expand_outside_quotes_only() {
        let m = macros(&[
            ("addr", "10.0.0.2 port 3260", 7),
            ("y", "foo", 8),
            ("z", "$y", 9),
        ]);
        let (t, e) = lex_with(b"targetaddr $addr\n$y.bar \"$y\" $z\n", &m);
        assert!(e.is_empty(), "{e:?}");
        let t: Vec<Tok> = t.into_iter().map(|(t, _)| t).collect();
        assert_eq!(
            t,
            vec![
                Tok::Kw(Keyword::TargetAddr),
                s("10.0.0.2"),
                Tok::Kw(Keyword::Port),
                n(3260),
                Tok::Newline,
                s("foo.bar"),
                s("$y"),
                // Macro text is not expanded again.
                Tok::Punct(b'$'),
                s("y"),
                Tok::Newline,
                Tok::Eof
            ]
        );
    }

    #[test]
    fn token_origins_follow_the_characters() {
        let m = macros(&[("y", "foo", 8)]);
        let mut lx = Lexer::new(3, "t".into(), b"$y.bar $y\n".to_vec());
        let mut e = Vec::new();
        let t = lx.next(&m, &mut e);
        assert_eq!(t.origin, vec![Src::Macro(8), Src::File(3)]);
        // The newline after the macro is read and pushed back, but it is not
        // part of the token.
        let t = lx.next(&m, &mut e);
        assert_eq!((t.tok, t.origin), (s("foo"), vec![Src::Macro(8)]));
    }

    #[test]
    fn undefined_macro_drops_the_line() {
        let (t, e) = lex_with(b"a $nope b\nc\n", &Macros::new());
        assert_eq!(
            t,
            vec![
                (s("a"), 1),
                (Tok::Error, 1),
                (Tok::Newline, 1),
                (s("c"), 2),
                (Tok::Newline, 2),
                (Tok::Eof, 3)
            ]
        );
        assert_eq!(e[0].to_string(), "t.conf:1: macro 'nope' not defined");
    }

    #[test]
    fn nul_bytes() {
        let (t, e) = lex_with(b"\"a\0b\" c\nd \0\n", &Macros::new());
        assert_eq!(
            t,
            vec![
                (Tok::Error, 1),
                (Tok::Newline, 1),
                (s("d"), 2),
                (Tok::Punct(0), 2),
                (Tok::Newline, 2),
                (Tok::Eof, 3)
            ]
        );
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].kind, ErrorKind::NulInString);
    }

    #[test]
    fn unterminated_string() {
        let (t, e) = lex_with(b"x\n\"abc\ndef", &Macros::new());
        assert_eq!(
            t,
            vec![
                (s("x"), 1),
                (Tok::Newline, 1),
                (Tok::Error, 2),
                (Tok::Eof, 3)
            ]
        );
        assert_eq!(
            e[0].to_string(),
            "t.conf:2: reached end of file while parsing quoted string"
        );
        let (_, e) = lex_with(b"\"abc\\", &Macros::new());
        assert_eq!(e[0].kind, ErrorKind::UnterminatedString);
    }

    #[test]
    fn token_length_limits_match_base() {
        let quoted = |n: usize| format!("\"{}\"", "a".repeat(n)).into_bytes();
        let (t, e) = lex_with(&quoted(8094), &Macros::new());
        assert!(e.is_empty());
        assert_eq!(t[0].0, Tok::Str(vec![b'a'; 8094]));
        let (_, e) = lex_with(&quoted(8095), &Macros::new());
        assert_eq!(e[0].kind, ErrorKind::StringTooLong);

        let (t, e) = lex_with(&vec![b'a'; 8095], &Macros::new());
        assert!(e.is_empty());
        assert_eq!(t[0].0, Tok::Str(vec![b'a'; 8095]));
        let (_, e) = lex_with(&vec![b'a'; 8096], &Macros::new());
        assert_eq!(e[0].kind, ErrorKind::StringTooLong);
        let (_, e) = lex_with(&vec![b'7'; 8096], &Macros::new());
        assert_eq!(e[0].kind, ErrorKind::StringTooLong);
    }

    #[test]
    fn ten_megabyte_token_is_one_error() {
        for fill in [b'a', b'1', b'$'] {
            let mut text = vec![fill; 10 << 20];
            if fill == b'$' {
                text[1..].fill(b'x');
            }
            text.extend_from_slice(b"\nnext\n");
            let (t, e) = lex_with(&text, &Macros::new());
            assert_eq!(e.len(), 1, "{}", char::from(fill));
            assert_eq!(e[0].kind, ErrorKind::StringTooLong);
            assert_eq!(
                t,
                vec![
                    (Tok::Error, 1),
                    (Tok::Newline, 1),
                    (s("next"), 2),
                    (Tok::Newline, 2),
                    (Tok::Eof, 3)
                ]
            );
        }
    }

    #[test]
    fn carriage_return_is_not_blank() {
        assert_eq!(
            toks(b"a\r\n"),
            vec![s("a"), Tok::Punct(b'\r'), Tok::Newline, Tok::Eof]
        );
    }

    #[test]
    fn expansion_is_bounded() {
        let m = macros(&[("x", &"a".repeat(8000), 0)]);
        let mut text = Vec::new();
        for _ in 0..(MAX_EXPANSION / 8000 + 2) {
            text.extend_from_slice(b"$x\n");
        }
        let (_, e) = lex_with(&text, &m);
        // Line 525 pushes the total past 4 MiB; every later use fails too.
        let first_bad = MAX_EXPANSION / 8000 + 1;
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].line, first_bad);
        assert!(e.iter().all(|e| e.kind
            == ErrorKind::ExpansionLimit {
                limit: MAX_EXPANSION
            }));
    }
}
