//! The statements of iscsi.conf: macros, includes, `isid`, global
//! parameters and `target` blocks. Recursive descent with one token of
//! lookahead; after an error the rest of the line is skipped, which is what
//! parse.y's `grammar error '\n'` rule does, except that inside a target
//! block the parser stays in the block.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::error::{ConfigError, ErrorKind, Place};
use super::lexer::{is_space, FileId, Keyword, Lexer, Macro, Macros, Src, Tok, Token};
use super::params::{self, ParamsAt};
use super::{source, Isid, Target};

/// Base has no limit; this one keeps recursion (and open files) bounded.
pub(crate) const MAX_INCLUDE_DEPTH: usize = 16;
/// Bounds macro text, which could otherwise double with every definition.
pub(crate) const MAX_MACRO_VALUE: usize = 8192;
/// How much of an offending token an error message quotes.
const QUOTE_MAX: usize = 40;

pub(crate) struct FileInfo {
    pub name: String,
    /// Permission bits; None for text handed to parse_str.
    pub mode: Option<u32>,
    /// Base for relative includes; None means the current directory.
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loc {
    pub file: FileId,
    pub line: usize,
}

pub(crate) struct TargetDraft {
    /// `params` here holds only the block's own values.
    pub target: Target,
    pub at: Loc,
    /// Where the block's own `targetname` and `initiatorname` were set.
    pub targetname_at: Option<Loc>,
    pub initiatorname_at: Option<Loc>,
    pub params: ParamsAt,
    /// The block had errors; what they caused (a missing targetaddr after
    /// a bad address line) is not reported again.
    pub had_error: bool,
}

/// What parsing produced, before merging and whole-config checks.
pub(crate) struct Draft {
    pub files: Vec<FileInfo>,
    pub errors: Vec<ConfigError>,
    pub isid: Option<Isid>,
    pub initiatorname: Option<String>,
    pub initiatorname_at: Option<Loc>,
    pub globals: ParamsAt,
    pub targets: Vec<TargetDraft>,
    /// Files whose text contributed to a CHAP secret.
    pub secret_files: BTreeSet<FileId>,
}

/// The error has been recorded; the caller should resynchronise.
pub(crate) struct Reported;
pub(crate) type PResult<T> = Result<T, Reported>;

pub(crate) struct Stream {
    lex: Lexer,
    peeked: Option<Token>,
    pub file: FileId,
}

pub(crate) struct Parser {
    pub draft: Draft,
    macros: Macros,
    origin_sets: Vec<Vec<FileId>>,
    origin_index: HashMap<Vec<FileId>, u32>,
    /// (dev, ino) of the files being read, outermost first.
    open: Vec<(u64, u64)>,
    depth: usize,
    /// Target block names seen so far, to refuse a second block.
    pub(super) names: HashSet<String>,
}

pub(crate) fn parse_path(path: &Path) -> Result<Draft, Vec<ConfigError>> {
    let name = path.display().to_string();
    let loaded = source::load(path).map_err(|problem| {
        vec![ConfigError {
            file: name.clone(),
            line: 0,
            kind: ErrorKind::Read(problem),
        }]
    })?;
    let mut p = Parser::new();
    let id = p.add_file(name, Some(loaded.mode), parent_dir(path));
    p.open.push(loaded.key);
    p.run(id, loaded.data);
    Ok(p.draft)
}

pub(crate) fn parse_bytes(data: &[u8], name: &str) -> Draft {
    let mut p = Parser::new();
    let id = p.add_file(name.to_string(), None, None);
    p.run(id, data.to_vec());
    p.draft
}

fn parent_dir(path: &Path) -> Option<PathBuf> {
    path.parent().map(Path::to_path_buf)
}

pub(super) fn quote(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    match text.char_indices().nth(QUOTE_MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.into_owned(),
    }
}

pub(crate) fn describe(t: &Tok) -> String {
    match t {
        Tok::Newline => "end of line".into(),
        Tok::Eof => "end of file".into(),
        Tok::Error => "invalid token".into(),
        Tok::Str(b) => format!("\"{}\"", quote(b)),
        Tok::Num { text, .. } => quote(text.as_bytes()),
        Tok::Kw(k) => format!("keyword {}", k.name()),
        Tok::Punct(c) if c.is_ascii_graphic() => format!("'{}'", char::from(*c)),
        Tok::Punct(c) => format!("byte 0x{c:02x}"),
    }
}

impl Parser {
    fn new() -> Parser {
        Parser {
            draft: Draft {
                files: Vec::new(),
                errors: Vec::new(),
                isid: None,
                initiatorname: None,
                initiatorname_at: None,
                globals: ParamsAt::default(),
                targets: Vec::new(),
                secret_files: BTreeSet::new(),
            },
            macros: Macros::new(),
            origin_sets: Vec::new(),
            origin_index: HashMap::new(),
            open: Vec::new(),
            depth: 0,
            names: HashSet::new(),
        }
    }

    fn add_file(&mut self, name: String, mode: Option<u32>, dir: Option<PathBuf>) -> FileId {
        self.draft.files.push(FileInfo { name, mode, dir });
        self.draft.files.len() - 1
    }

    fn run(&mut self, id: FileId, data: Vec<u8>) {
        let name = self.file_name(id);
        let mut s = Stream {
            lex: Lexer::new(id, name, data),
            peeked: None,
            file: id,
        };
        self.statements(&mut s);
    }

    fn file_name(&self, id: FileId) -> String {
        self.draft
            .files
            .get(id)
            .map_or_else(String::new, |f| f.name.clone())
    }

    // ---- token helpers shared with params.rs ----

    pub(super) fn err(&mut self, at: Loc, kind: ErrorKind) -> Reported {
        let file = self.file_name(at.file);
        self.draft.errors.push(ConfigError {
            file,
            line: at.line,
            kind,
        });
        Reported
    }

    pub(super) fn next(&mut self, s: &mut Stream) -> Token {
        match s.peeked.take() {
            Some(t) => t,
            None => s.lex.next(&self.macros, &mut self.draft.errors),
        }
    }

    pub(super) fn peek<'s>(&mut self, s: &'s mut Stream) -> &'s Token {
        let (lex, macros, errors) = (&mut s.lex, &self.macros, &mut self.draft.errors);
        s.peeked.get_or_insert_with(|| lex.next(macros, errors))
    }

    /// Reports a syntax error unless `want` accepts the next token, which
    /// stays unread either way.
    pub(super) fn check(
        &mut self,
        s: &mut Stream,
        expected: &'static str,
        want: impl Fn(&Tok) -> bool,
    ) -> PResult<()> {
        let t = self.peek(s);
        if want(&t.tok) {
            return Ok(());
        }
        if t.tok == Tok::Error {
            return Err(Reported);
        }
        let (found, line) = (describe(&t.tok), t.line);
        Err(self.err(
            Loc { file: s.file, line },
            ErrorKind::Syntax { expected, found },
        ))
    }

    /// Like `check`, but consumes the accepted token.
    pub(super) fn expect(
        &mut self,
        s: &mut Stream,
        expected: &'static str,
        want: impl Fn(&Tok) -> bool,
    ) -> PResult<Token> {
        self.check(s, expected, want)?;
        Ok(self.next(s))
    }

    /// Consumes an unquoted or quoted word that is one of `words`.
    pub(super) fn expect_word(
        &mut self,
        s: &mut Stream,
        expected: &'static str,
        words: &[&str],
    ) -> PResult<usize> {
        let t = self.expect(
            s,
            expected,
            |t| matches!(t, Tok::Str(b) if words.iter().any(|w| w.as_bytes() == b.as_slice())),
        )?;
        match t.tok {
            Tok::Str(b) => Ok(words
                .iter()
                .position(|w| w.as_bytes() == b.as_slice())
                .unwrap_or(0)),
            _ => Ok(0),
        }
    }

    pub(super) fn text(&mut self, at: Loc, bytes: Vec<u8>) -> PResult<String> {
        String::from_utf8(bytes).map_err(|_| self.err(at, ErrorKind::InvalidUtf8))
    }

    /// A STRING that must be UTF-8 text, such as an iSCSI name.
    pub(super) fn expect_text(
        &mut self,
        s: &mut Stream,
        expected: &'static str,
    ) -> PResult<String> {
        let t = self.expect(s, expected, |t| matches!(t, Tok::Str(_)))?;
        let at = Loc {
            file: s.file,
            line: t.line,
        };
        match t.tok {
            Tok::Str(b) => self.text(at, b),
            _ => Err(Reported),
        }
    }

    /// The token after a statement must end it; it is left unread.
    pub(super) fn end_of_statement(&mut self, s: &mut Stream, in_block: bool) -> PResult<()> {
        self.check(s, "end of line", |t| match t {
            Tok::Newline | Tok::Eof => true,
            Tok::Punct(b'}') => in_block,
            _ => false,
        })
    }

    pub(super) fn skip_line(&mut self, s: &mut Stream, in_block: bool) {
        loop {
            match self.peek(s).tok {
                Tok::Newline => {
                    self.next(s);
                    return;
                }
                Tok::Eof => return,
                Tok::Punct(b'}') if in_block => return,
                _ => {
                    self.next(s);
                }
            }
        }
    }

    /// Files whose text went into a token with this origin.
    pub(super) fn files_of(&self, origin: &[Src]) -> Vec<FileId> {
        let mut files = Vec::new();
        for src in origin {
            match *src {
                Src::File(f) => files.push(f),
                Src::Macro(set) => {
                    if let Some(fs) = usize::try_from(set)
                        .ok()
                        .and_then(|i| self.origin_sets.get(i))
                    {
                        files.extend_from_slice(fs);
                    }
                }
            }
        }
        files.sort_unstable();
        files.dedup();
        files
    }

    fn intern(&mut self, files: Vec<FileId>) -> u32 {
        if let Some(&i) = self.origin_index.get(&files) {
            return i;
        }
        // Each set comes from a macro definition, so four billion of them
        // cannot fit in the files the parser accepts.
        let i = u32::try_from(self.origin_sets.len()).unwrap_or(u32::MAX);
        self.origin_sets.push(files.clone());
        self.origin_index.insert(files, i);
        i
    }

    // ---- statements ----

    fn statements(&mut self, s: &mut Stream) {
        loop {
            let t = self.next(s);
            let at = Loc {
                file: s.file,
                line: t.line,
            };
            let r = match t.tok {
                Tok::Newline => continue,
                Tok::Eof => break,
                Tok::Error => Err(Reported),
                Tok::Kw(Keyword::Target) => {
                    self.target(s, at);
                    continue;
                }
                Tok::Kw(Keyword::Include) => self.include(s, at),
                Tok::Kw(Keyword::Isid) => self.isid(s, at),
                Tok::Kw(Keyword::InitiatorName) => {
                    self.expect_text(s, "an initiator name").map(|n| {
                        self.draft.initiatorname = Some(n);
                        self.draft.initiatorname_at = Some(at);
                    })
                }
                Tok::Kw(k) if params::is_param(k) => self
                    .param(s, k, at)
                    .map(|set| self.draft.globals.apply(set, at)),
                Tok::Kw(k) => Err(self.misplaced(k, at, Place::Global)),
                Tok::Str(name) if self.peek(s).tok == Tok::Punct(b'=') => self.varset(s, name, at),
                Tok::Str(word) => {
                    Err(self.err(at, ErrorKind::UnknownKeyword { word: quote(&word) }))
                }
                other => Err(self.err(
                    at,
                    ErrorKind::Syntax {
                        expected: "a statement",
                        found: describe(&other),
                    },
                )),
            };
            if r.and_then(|()| self.end_of_statement(s, false)).is_err() {
                self.skip_line(s, false);
            }
        }
    }

    pub(super) fn misplaced(&mut self, k: Keyword, at: Loc, place: Place) -> Reported {
        let belongs_elsewhere = match place {
            Place::Global => matches!(
                k,
                Keyword::TargetName
                    | Keyword::TargetAddr
                    | Keyword::InitiatorAddr
                    | Keyword::Enabled
                    | Keyword::Disabled
                    | Keyword::Normal
                    | Keyword::Discovery
            ),
            Place::TargetBlock => {
                matches!(k, Keyword::Include | Keyword::Isid | Keyword::Target)
            }
        };
        let kind = if belongs_elsewhere {
            ErrorKind::Misplaced {
                keyword: k.name(),
                place,
            }
        } else {
            ErrorKind::Syntax {
                expected: match place {
                    Place::Global => "a statement",
                    Place::TargetBlock => "a target option",
                },
                found: describe(&Tok::Kw(k)),
            }
        };
        self.err(at, kind)
    }

    /// `NAME = value...`: the values are joined with single spaces and the
    /// text is lexed again wherever `$NAME` appears.
    fn varset(&mut self, s: &mut Stream, name: Vec<u8>, at: Loc) -> PResult<()> {
        self.next(s); // '='
        let mut value = Vec::new();
        let mut origin = Vec::new();
        let mut words = 0usize;
        loop {
            // Base wants STRINGs only; numbers and keywords are taken as
            // written so that `p = 3260` or `af = inet6` work too.
            let is_word = matches!(self.peek(s).tok, Tok::Str(_) | Tok::Num { .. } | Tok::Kw(_));
            if !is_word && words > 0 {
                break;
            }
            if !is_word {
                return self.check(s, "a macro value", |_| false);
            }
            let t = self.next(s);
            origin.extend(t.origin);
            if words > 0 {
                value.push(b' ');
            }
            match t.tok {
                Tok::Str(b) => value.extend_from_slice(&b),
                Tok::Num { text, .. } => value.extend_from_slice(text.as_bytes()),
                Tok::Kw(k) => value.extend_from_slice(k.name().as_bytes()),
                _ => {}
            }
            words += 1;
            if value.len() > MAX_MACRO_VALUE {
                return Err(self.err(
                    at,
                    ErrorKind::MacroTooLong {
                        limit: MAX_MACRO_VALUE,
                    },
                ));
            }
        }
        if name.iter().any(|&b| is_space(b)) {
            return Err(self.err(at, ErrorKind::MacroNameWhitespace { name: quote(&name) }));
        }
        let files = self.files_of(&origin);
        let origin = self.intern(files);
        self.macros.insert(name, Macro { value, origin });
        Ok(())
    }

    fn include(&mut self, s: &mut Stream, at: Loc) -> PResult<()> {
        let t = self.expect(s, "a file name", |t| matches!(t, Tok::Str(_)))?;
        let Tok::Str(raw) = t.tok else {
            return Err(Reported);
        };
        self.end_of_statement(s, false)?;
        let named = PathBuf::from(OsStr::from_bytes(&raw));
        let path = match self.draft.files.get(s.file).and_then(|f| f.dir.as_ref()) {
            Some(dir) if named.is_relative() => dir.join(&named),
            _ => named,
        };
        let shown = path.display().to_string();
        if self.depth >= MAX_INCLUDE_DEPTH {
            return Err(self.err(
                at,
                ErrorKind::IncludeDepth {
                    limit: MAX_INCLUDE_DEPTH,
                },
            ));
        }
        let loaded = match source::load(&path) {
            Ok(l) => l,
            Err(problem) => {
                return Err(self.err(
                    at,
                    ErrorKind::Include {
                        path: shown,
                        problem,
                    },
                ))
            }
        };
        if self.open.contains(&loaded.key) {
            return Err(self.err(at, ErrorKind::IncludeLoop { path: shown }));
        }
        let id = self.add_file(shown, Some(loaded.mode), parent_dir(&path));
        self.open.push(loaded.key);
        self.depth += 1;
        self.run(id, loaded.data);
        self.depth -= 1;
        self.open.pop();
        Ok(())
    }

    pub(super) fn expect_number(&mut self, s: &mut Stream) -> PResult<i64> {
        match self
            .expect(s, "a number", |t| matches!(t, Tok::Num { .. }))?
            .tok
        {
            Tok::Num { value, .. } => Ok(value),
            _ => Err(Reported),
        }
    }

    /// `isid TYPE BASE QUAL`, computed exactly as base's parse.y does,
    /// including its masking of out-of-range values.
    fn isid(&mut self, s: &mut Stream, at: Loc) -> PResult<()> {
        let kind = self.expect_text(s, "an isid type (oui, en or rand)")?;
        let base = self.expect_number(s)?;
        let qual = self.expect_number(s)?;
        let (kind_bits, mask1, mask2): (u32, i64, i64) = match kind.to_ascii_lowercase().as_str() {
            "oui" => (0x0000_0000, 0x3fff_ff00, 0xff),
            "en" => (0x4000_0000, 0x00ff_ffff, 0),
            "rand" => (0x8000_0000, 0x00ff_ffff, 0),
            _ => return Err(self.err(at, ErrorKind::IsidType { value: kind })),
        };
        // The masks keep both terms within 30 bits, so the casts are exact;
        // the qualifier is truncated to 16 bits like base's u_int16_t.
        let base = kind_bits | (base & mask1) as u32 | ((qual >> 16) & mask2) as u32;
        self.draft.isid = Some(Isid {
            base,
            qual: qual as u16,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{errs, ok, target, TempDir};
    use super::super::{parse_file, parse_str, Config, SessionType};
    use super::*;

    #[test]
    fn man_page_example() {
        let c = ok("target disk1 {\n\ttargetaddr 10.0.0.2\n\
                    \ttargetname \"iqn.1994-04.org.netbsd.iscsi-target:target:0\"\n}\n");
        assert_eq!(c.isid, None);
        assert_eq!(c.initiatorname, None);
        assert_eq!(
            c.targets,
            vec![Target {
                name: "disk1".into(),
                line: 1,
                disabled: false,
                session_type: SessionType::Normal,
                targetname: Some("iqn.1994-04.org.netbsd.iscsi-target:target:0".into()),
                initiatorname: None,
                targetaddr: Some("10.0.0.2:3260".parse().unwrap()),
                initiatoraddr: None,
                params: Default::default(),
            }]
        );
    }

    #[test]
    fn empty_and_comment_only_files() {
        assert_eq!(ok(""), Config::default());
        assert_eq!(
            ok("# nothing\n\n   \t\n# more \\\n still comment\n"),
            Config::default()
        );
    }

    #[test]
    fn last_line_needs_no_newline() {
        let c = ok("target a { targetaddr 10.0.0.2\ntargetname iqn.2001-04.com.example:x }");
        assert_eq!(
            c.targets[0].targetname.as_deref(),
            Some("iqn.2001-04.com.example:x")
        );
        let c = ok("initiatorname iqn.2001-04.com.example:y");
        assert_eq!(
            c.initiatorname.as_deref(),
            Some("iqn.2001-04.com.example:y")
        );
    }

    #[test]
    fn isid_is_computed_as_base_does() {
        // oui: base from bits 8..29 of the first number, low byte from bits
        // 16..23 of the second, qualifier its low 16 bits.
        let c = ok("isid oui 305419896 16909060\n"); // 0x12345678 0x01020304
        assert_eq!(
            c.isid,
            Some(Isid {
                base: 0x1234_5602,
                qual: 0x0304
            })
        );
        assert_eq!(
            c.isid.unwrap().bytes(),
            [0x12, 0x34, 0x56, 0x02, 0x03, 0x04]
        );
        let c = ok("isid en 305419896 65537\n");
        assert_eq!(
            c.isid,
            Some(Isid {
                base: 0x4034_5678,
                qual: 1
            })
        );
        // Case-insensitive type, negative numbers masked like C.
        let c = ok("isid RAND 4294967295 -1\n");
        assert_eq!(
            c.isid,
            Some(Isid {
                base: 0x80ff_ffff,
                qual: 0xffff
            })
        );
        // The last isid wins.
        let c = ok("isid en 1 2\nisid Rand 3 4\n");
        assert_eq!(
            c.isid,
            Some(Isid {
                base: 0x8000_0003,
                qual: 4
            })
        );
    }

    #[test]
    fn isid_errors() {
        assert_eq!(
            errs("\nisid foo 1 2\n"),
            ["t.conf:2: isid type foo unknown"]
        );
        assert_eq!(
            errs("isid en 1\n"),
            ["t.conf:1: syntax error: expected a number, found end of line"]
        );
        assert_eq!(
            errs("isid en 0x10 1\n"),
            ["t.conf:1: syntax error: expected a number, found \"0x10\""]
        );
        assert_eq!(
            errs("isid 1 2 3\n"),
            ["t.conf:1: syntax error: expected an isid type (oui, en or rand), found 1"]
        );
    }

    #[test]
    fn macros_are_defined_and_used() {
        let c = ok("host = \"10.0.0.2\"\n\
                    iqn = iqn.2001-04.com.example:disk\n\
                    addr = 10.0.0.3 port \"3261\"\n\
                    target a {\n targetaddr $host\n targetname $iqn\n}\n\
                    host = 10.0.0.9\n\
                    target b {\n targetaddr $addr\n targetname $iqn\n}\n\
                    target c {\n targetaddr $host\n targetname $iqn\n}\n");
        let addrs: Vec<_> = c.targets.iter().map(|t| t.targetaddr.unwrap()).collect();
        assert_eq!(
            addrs,
            [
                "10.0.0.2:3260".parse().unwrap(),
                "10.0.0.3:3261".parse().unwrap(),
                "10.0.0.9:3260".parse().unwrap()
            ]
        );
        assert_eq!(
            c.targets[0].targetname.as_deref(),
            Some("iqn.2001-04.com.example:disk")
        );
    }

    #[test]
    fn macro_values_are_relexed() {
        // As in base, the quotes of a value are gone by the time it is used.
        assert_eq!(
            errs("n = \"iqn.2001-04.com.example:a words\"\ninitiatorname $n\n"),
            ["t.conf:2: syntax error: expected end of line, found \"words\""]
        );
        // Inner quotes keep it one word, which is then no iSCSI name.
        assert_eq!(
            errs("n = \"'two words'\"\ninitiatorname $n\n"),
            [
                "t.conf:2: invalid initiatorname \"two words\": character ' ' at position 4 \
              is not allowed in an iSCSI name (only a-z, 0-9, '-', '.' and ':')"
            ]
        );
    }

    #[test]
    fn macro_errors() {
        assert_eq!(
            errs("target a {\n targetname iqn.2001-04.com.example:x\n targetaddr $nope\n}\n"),
            ["t.conf:3: macro 'nope' not defined"]
        );
        assert_eq!(
            errs("\"a b\" = c\n"),
            ["t.conf:1: macro name \"a b\" cannot contain whitespace"]
        );
        assert_eq!(
            errs("a =\n"),
            ["t.conf:1: syntax error: expected a macro value, found end of line"]
        );
        assert_eq!(
            errs("a = {\n"),
            ["t.conf:1: syntax error: expected a macro value, found '{'"]
        );
        let long = format!("a = \"{}\"\nb = $a $a\n", "x".repeat(5000));
        assert_eq!(
            errs(&long),
            ["t.conf:2: macro value longer than 8192 bytes"]
        );
    }

    #[test]
    fn global_initiatorname_fills_targets_without_one() {
        let c = ok(&format!(
            "{}target u {{\n targetaddr 10.0.0.3\n targetname iqn.2001-04.com.example:n\n initiatorname iqn.2001-04.com.example:own\n}}\n\
             initiatorname iqn.1995-11.org.openbsd.iscsid:host\n",
            target("")
        ));
        assert_eq!(
            c.initiatorname.as_deref(),
            Some("iqn.1995-11.org.openbsd.iscsid:host")
        );
        assert_eq!(c.targets[0].initiatorname, c.initiatorname);
        assert_eq!(
            c.targets[1].initiatorname.as_deref(),
            Some("iqn.2001-04.com.example:own")
        );
    }

    #[test]
    fn statement_errors() {
        assert_eq!(errs("foo bar\n"), ["t.conf:1: unknown keyword foo"]);
        assert_eq!(
            errs("targetaddr 10.0.0.2\n"),
            ["t.conf:1: targetaddr is not allowed outside a target block"]
        );
        assert_eq!(
            errs("port 3260\n"),
            ["t.conf:1: syntax error: expected a statement, found keyword port"]
        );
        assert_eq!(
            errs("{\n"),
            ["t.conf:1: syntax error: expected a statement, found '{'"]
        );
        assert_eq!(
            errs("initiatorname iqn.2001-04.com.example:a b\n"),
            ["t.conf:1: syntax error: expected end of line, found \"b\""]
        );
        // Non-ASCII gets past the lexer inside quotes, but not as a bare
        // word; it is no iSCSI name either way.
        assert_eq!(
            errs("initiatorname \"\u{e9}\"\n"),
            [
                "t.conf:1: invalid initiatorname \"\u{e9}\": character '\\u{e9}' at position 1 \
              is not allowed in an iSCSI name (only a-z, 0-9, '-', '.' and ':')"
            ]
        );
        assert_eq!(
            errs("initiatorname \u{e9}\n"),
            ["t.conf:1: syntax error: expected an initiator name, found byte 0xc3"]
        );
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let d = parse_bytes(b"initiatorname \"\xff\"\n", "t.conf");
        assert_eq!(
            d.errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["t.conf:1: string is not valid UTF-8"]
        );
    }

    #[test]
    fn several_errors_are_reported_at_once() {
        let e = errs(
            "isid foo 1 2\n\
                      target a {\n\
                      \x20targetaddr 10.0.0.2 port 0\n\
                      \x20bogus\n\
                      \x20targetname iqn.2001-04.com.example:x\n\
                      }\n\
                      queuedepth 0\n\
                      target a {\n targetaddr 10.0.0.2\n targetname y\n}\n\
                      target b {\n targetaddr 10.0.0.3\n}\n",
        );
        assert_eq!(
            e,
            [
                "t.conf:1: isid type foo unknown",
                "t.conf:3: port 0 out of range 1..65535",
                "t.conf:4: unknown keyword bogus",
                "t.conf:7: queuedepth 0 out of range 1..4096",
                "t.conf:8: target a defined twice",
                "t.conf:12: target b has no targetname",
            ]
        );
    }

    #[test]
    fn includes_nest_relative_to_the_including_file() {
        let d = TempDir::new();
        d.write(
            "sub/inc.conf",
            "iqn = iqn.2004-04.com.example:disk\ninclude \"../leaf.conf\"\n",
            0o600,
        );
        d.write(
            "leaf.conf",
            "target leaf {\n targetaddr 10.0.0.5\n targetname $iqn\n}\n",
            0o600,
        );
        let main = d.write(
            "main.conf",
            "include \"sub/inc.conf\"\ntarget a {\n targetaddr 10.0.0.2\n targetname $iqn\n}\n",
            0o600,
        );
        let c = parse_file(&main).unwrap();
        let names: Vec<_> = c.targets.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["leaf", "a"]);
        assert!(c
            .targets
            .iter()
            .all(|t| t.targetname.as_deref() == Some("iqn.2004-04.com.example:disk")));
        // parse_str resolves relative to the current directory, absolute
        // paths work anywhere.
        let text = format!("include \"{}\"\n", d.path().join("leaf.conf").display());
        assert_eq!(
            parse_str(&text, "t.conf").unwrap_err()[0].to_string(),
            format!(
                "{}/leaf.conf:3: macro 'iqn' not defined",
                d.path().display()
            )
        );
    }

    #[test]
    fn include_errors_point_at_the_include_line() {
        let d = TempDir::new();
        let a = d.write("a.conf", "\ninclude \"b.conf\"\n", 0o600);
        d.write("b.conf", "include \"a.conf\"\ninclude \"b.conf\"\n", 0o600);
        let dir = d.path().display();
        let e: Vec<String> = parse_file(&a)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            e,
            [
                format!("{dir}/b.conf:1: include loop: {dir}/a.conf is already being read"),
                format!("{dir}/b.conf:2: include loop: {dir}/b.conf is already being read"),
            ]
        );
        let m = d.write(
            "m.conf",
            "include \"missing.conf\"\ninclude \"/dev/null\"\n",
            0o600,
        );
        let e = parse_file(&m).unwrap_err();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].line, 1);
        assert!(matches!(
            &e[0].kind,
            ErrorKind::Include { path, problem: super::super::FileProblem::Io(_) }
                if *path == format!("{dir}/missing.conf")
        ));
        assert_eq!(
            e[1].to_string(),
            format!("{dir}/m.conf:2: failed to include file /dev/null: not a regular file")
        );
        assert_eq!(
            errs("include\n"),
            ["t.conf:1: syntax error: expected a file name, found end of line"]
        );
        assert_eq!(
            errs("target a {\n include \"x\"\n}\n"),
            ["t.conf:2: include is not allowed inside a target block"]
        );
    }

    #[test]
    fn deeply_nested_includes_stop_at_the_limit() {
        let d = TempDir::new();
        for i in 0..40 {
            d.write(
                &format!("f{i}.conf"),
                &format!("include \"f{}.conf\"\n", i + 1),
                0o600,
            );
        }
        d.write("f40.conf", "", 0o600);
        let e = parse_file(&d.path().join("f0.conf")).unwrap_err();
        assert_eq!(
            e.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [format!(
                "{}/f{MAX_INCLUDE_DEPTH}.conf:1: includes nested deeper than 16 levels",
                d.path().display()
            )]
        );
    }

    #[test]
    fn top_file_problems() {
        let e = parse_file(Path::new("/nonexistent/iscsi.conf")).unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].line, 0);
        assert!(e[0]
            .to_string()
            .starts_with("/nonexistent/iscsi.conf: No such file or directory"));
        let e = parse_file(Path::new("/dev/null")).unwrap_err();
        assert_eq!(e[0].to_string(), "/dev/null: not a regular file");
    }

    #[test]
    fn hostile_input_gives_errors_not_panics() {
        // NUL outside and inside quotes.
        assert_eq!(
            errs("\0\n"),
            ["t.conf:1: syntax error: expected a statement, found byte 0x00"]
        );
        assert_eq!(
            errs("initiatorname \"a\0b\"\n"),
            ["t.conf:1: NUL byte in quoted string"]
        );
        assert_eq!(
            errs("target a {\n targetname \"unterminated\n}\n"),
            [
                "t.conf:2: reached end of file while parsing quoted string",
                "t.conf:4: syntax error: expected '}', found end of file"
            ]
        );
        let big = format!(
            "initiatorname {}\ninitiatorname iqn.2001-04.com.example:ok\n",
            "a".repeat(10 << 20)
        );
        assert_eq!(errs(&big), ["t.conf:1: string too long"]);
        let big = format!("initiatorname \"{}\"\n", "a".repeat(10 << 20));
        assert_eq!(errs(&big), ["t.conf:1: string too long"]);
        let e = errs(&"{".repeat(1 << 16));
        assert_eq!(e.len(), 1);
        let e = errs(&"target a {\n".repeat(1000));
        assert!(!e.is_empty());
    }

    #[test]
    fn pseudo_random_bytes_never_panic() {
        // A fixed xorshift stream over the characters the lexer cares about.
        let alphabet = b"target{}\"'\\\n #$=-0123456789.:port inet6 chap name secret\0\xff";
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..300 {
            let mut text = Vec::new();
            for _ in 0..200 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x % alphabet.len() as u64) as usize;
                text.push(alphabet[i]);
            }
            let d = parse_bytes(&text, "fuzz");
            let _ = super::super::check::finish(d);
        }
    }
}
