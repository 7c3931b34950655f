//! Configuration errors, each tied to a file and line like parse.y's yyerror.

use std::fmt;

use proto::names::NameError;

/// One problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based; 0 when the problem concerns the file as a whole.
    pub line: usize,
    pub kind: ErrorKind,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.kind)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.kind)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Why strtonum(3) refused a NUMBER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberProblem {
    TooSmall,
    TooLarge,
}

impl fmt::Display for NumberProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NumberProblem::TooSmall => "too small",
            NumberProblem::TooLarge => "too large",
        })
    }
}

/// Why a file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileProblem {
    /// The OS error text.
    Io(String),
    NotRegular,
    /// Larger than the limit, in bytes.
    TooLarge(u64),
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileProblem::Io(e) => f.write_str(e),
            FileProblem::NotRegular => f.write_str("not a regular file"),
            FileProblem::TooLarge(limit) => write!(f, "file larger than {limit} bytes"),
        }
    }
}

/// Where a statement appeared, for statements that belong elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Global,
    TargetBlock,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Place::Global => "outside a target block",
            Place::TargetBlock => "inside a target block",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The top-level file could not be read.
    Read(FileProblem),
    Include {
        path: String,
        problem: FileProblem,
    },
    IncludeLoop {
        path: String,
    },
    IncludeDepth {
        limit: usize,
    },
    /// A token longer than parse.y's 8096-byte buffer.
    StringTooLong,
    UnterminatedString,
    NulInString,
    InvalidUtf8,
    InvalidNumber {
        text: String,
        problem: NumberProblem,
    },
    UndefinedMacro {
        name: String,
    },
    MacroNameWhitespace {
        name: String,
    },
    MacroTooLong {
        limit: usize,
    },
    /// Too much macro text expanded in one file.
    ExpansionLimit {
        limit: usize,
    },
    Syntax {
        expected: &'static str,
        found: String,
    },
    UnknownKeyword {
        word: String,
    },
    Misplaced {
        keyword: &'static str,
        place: Place,
    },
    IsidType {
        value: String,
    },
    /// Empty, too long, or with white space or control characters.
    BadBlockName {
        name: String,
        problem: NameError,
    },
    /// An `initiatorname` or `targetname` that is no iSCSI name.
    BadIscsiName {
        keyword: &'static str,
        name: String,
        problem: NameError,
    },
    DuplicateTarget {
        name: String,
    },
    PortRedefined,
    FamilyRedefined,
    InvalidPort {
        value: String,
    },
    Resolve {
        host: String,
        port: u16,
        reason: String,
    },
    BadKeywordValue {
        keyword: &'static str,
        value: String,
        allowed: &'static str,
    },
    BadNumber {
        keyword: &'static str,
        value: String,
    },
    OutOfRange {
        keyword: &'static str,
        value: i64,
        min: u32,
        max: u32,
    },
    ChapNameEmpty,
    ChapSecretLength {
        len: usize,
    },
    MutualChapWithoutName,
    FirstBurstExceedsMaxBurst {
        first: u32,
        max: u32,
    },
    MissingTargetAddr {
        target: String,
    },
    MissingTargetName {
        target: String,
    },
    SecretsFileMode {
        path: String,
        mode: u32,
    },
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ErrorKind::*;
        match self {
            Read(p) => write!(f, "{p}"),
            Include { path, problem } => write!(f, "failed to include file {path}: {problem}"),
            IncludeLoop { path } => write!(f, "include loop: {path} is already being read"),
            IncludeDepth { limit } => write!(f, "includes nested deeper than {limit} levels"),
            StringTooLong => f.write_str("string too long"),
            UnterminatedString => f.write_str("reached end of file while parsing quoted string"),
            NulInString => f.write_str("NUL byte in quoted string"),
            InvalidUtf8 => f.write_str("string is not valid UTF-8"),
            InvalidNumber { text, problem } => write!(f, "\"{text}\" invalid number: {problem}"),
            UndefinedMacro { name } => write!(f, "macro '{name}' not defined"),
            MacroNameWhitespace { name } => {
                write!(f, "macro name \"{name}\" cannot contain whitespace")
            }
            MacroTooLong { limit } => write!(f, "macro value longer than {limit} bytes"),
            ExpansionLimit { limit } => {
                write!(f, "more than {limit} bytes of macro expansion in one file")
            }
            Syntax { expected, found } => {
                write!(f, "syntax error: expected {expected}, found {found}")
            }
            UnknownKeyword { word } => write!(f, "unknown keyword {word}"),
            Misplaced { keyword, place } => write!(f, "{keyword} is not allowed {place}"),
            IsidType { value } => write!(f, "isid type {value} unknown"),
            // Control characters are shown escaped, never raw.
            BadBlockName { name, problem } => {
                write!(f, "target \"{}\": {problem}", name.escape_debug())
            }
            BadIscsiName {
                keyword,
                name,
                problem,
            } => write!(
                f,
                "invalid {keyword} \"{}\": {problem}",
                name.escape_debug()
            ),
            DuplicateTarget { name } => write!(f, "target {name} defined twice"),
            PortRedefined => f.write_str("port cannot be redefined"),
            FamilyRedefined => f.write_str("address family cannot be redefined"),
            InvalidPort { value } => {
                write!(f, "invalid port {value}: expected 1..65535 or iscsi")
            }
            Resolve { host, port, reason } => write!(f, "{reason} ({host} {port})"),
            BadKeywordValue {
                keyword,
                value,
                allowed,
            } => write!(f, "invalid {keyword} {value}: expected {allowed}"),
            BadNumber { keyword, value } => write!(f, "{keyword}: {value} is not a number"),
            OutOfRange {
                keyword,
                value,
                min,
                max,
            } => write!(f, "{keyword} {value} out of range {min}..{max}"),
            ChapNameEmpty => f.write_str("CHAP name is empty"),
            ChapSecretLength { len } => {
                write!(f, "CHAP secret is {len} bytes long, must be 1..255")
            }
            MutualChapWithoutName => f.write_str("mutual CHAP needs chap name"),
            FirstBurstExceedsMaxBurst { first, max } => {
                write!(f, "firstburstlength {first} exceeds maxburstlength {max}")
            }
            MissingTargetAddr { target } => write!(f, "target {target} has no targetaddr"),
            MissingTargetName { target } => write!(f, "target {target} has no targetname"),
            SecretsFileMode { path, mode } => write!(
                f,
                "holds CHAP secrets but is accessible by group or others \
                 (mode {mode:04o}); chmod 600 {path}"
            ),
        }
    }
}

impl std::error::Error for ErrorKind {}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: usize, kind: ErrorKind) -> String {
        ConfigError {
            file: "/etc/iscsi.conf".into(),
            line,
            kind,
        }
        .to_string()
    }

    #[test]
    fn display_is_file_line_message() {
        assert_eq!(
            at(7, ErrorKind::PortRedefined),
            "/etc/iscsi.conf:7: port cannot be redefined"
        );
        assert_eq!(
            at(
                2,
                ErrorKind::InvalidNumber {
                    text: "99999999999999999999".into(),
                    problem: NumberProblem::TooLarge
                }
            ),
            "/etc/iscsi.conf:2: \"99999999999999999999\" invalid number: too large"
        );
        assert_eq!(
            at(
                3,
                ErrorKind::Resolve {
                    host: "::1".into(),
                    port: 3260,
                    reason: "no inet address".into()
                }
            ),
            "/etc/iscsi.conf:3: no inet address (::1 3260)"
        );
    }

    #[test]
    fn whole_file_errors_have_no_line() {
        assert_eq!(
            at(
                0,
                ErrorKind::SecretsFileMode {
                    path: "/etc/iscsi.conf".into(),
                    mode: 0o644
                }
            ),
            "/etc/iscsi.conf: holds CHAP secrets but is accessible by group or others \
             (mode 0644); chmod 600 /etc/iscsi.conf"
        );
    }
}
