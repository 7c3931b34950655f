//! iSCSI names (RFC 7143 sections 4.2.7 and 6.1): the `iqn.`, `eui.` and
//! `naa.` formats, checked before a name is configured or sent; and the
//! names of iscsi.conf(5) target blocks, which become session names.
//!
//! RFC 7143 defines names as the output of the iSCSI stringprep profile
//! (RFC 3722), which folds case, so a name written in upper case stands for
//! its lower-case form. We do not implement stringprep: we accept only what
//! is already in that form and ASCII, the characters `a`-`z`, `0`-`9`, `-`,
//! `.` and `:`. Upper case is refused, with its own error, rather than folded
//! behind the administrator's back, because targets grant access by comparing
//! names and the configured text should be the one on the wire.

use std::fmt;

/// RFC 7143 section 6.1: "iSCSI names ... are limited to 223 bytes".
pub const MAX_NAME_LEN: usize = 223;
/// Longest target block name: base copies it into a 32-byte SessionName
/// with its NUL.
pub const MAX_BLOCK_NAME: usize = 31;

const IQN_PREFIX: &str = "iqn.";
const EUI_PREFIX: &str = "eui.";
const NAA_PREFIX: &str = "naa.";
/// `eui.` is followed by an EUI-64 in hex.
const EUI_HEX_DIGITS: usize = 16;
/// `naa.` is followed by a 64-bit or a 128-bit NAA identifier in hex.
const NAA_HEX_DIGITS: [usize; 2] = [16, 32];
/// "yyyy-mm" after `iqn.`.
const IQN_DATE_LEN: usize = 7;
const MONTHS: std::ops::RangeInclusive<u32> = 1..=12;

/// Which of the three formats a name has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameType {
    Iqn,
    Eui,
    Naa,
}

impl NameType {
    pub fn prefix(self) -> &'static str {
        match self {
            NameType::Iqn => IQN_PREFIX,
            NameType::Eui => EUI_PREFIX,
            NameType::Naa => NAA_PREFIX,
        }
    }
}

/// Why a name is not an iSCSI name we accept. Positions are 0-based byte
/// offsets; everything before them is ASCII, so they count characters too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    Empty,
    TooLong {
        len: usize,
    },
    UpperCase {
        at: usize,
        ch: char,
    },
    /// Anything else outside `a`-`z`, `0`-`9`, `-`, `.` and `:`, such as
    /// white space, control characters or non-ASCII text.
    BadCharacter {
        at: usize,
        ch: char,
    },
    /// Neither `iqn.`, `eui.` nor `naa.`.
    UnknownType,
    /// `iqn.` not followed by `yyyy-mm.`.
    IqnDate,
    /// The reversed domain name after the date is missing or has an
    /// empty label.
    IqnAuthority,
    /// The hex part of an `eui.` or `naa.` name has the wrong length.
    HexLength {
        kind: NameType,
        len: usize,
    },
    NotHex {
        at: usize,
        ch: char,
    },
    BlockNameEmpty,
    BlockNameTooLong {
        len: usize,
    },
    /// White space or a control character in a block name: it is printed
    /// by `iscsictl show` and given to `iscsictl show session` as one word.
    BlockNameCharacter {
        at: usize,
        ch: char,
    },
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => f.write_str("empty iSCSI name"),
            NameError::TooLong { len } => {
                write!(
                    f,
                    "iSCSI name is {len} bytes long, at most {MAX_NAME_LEN} allowed"
                )
            }
            NameError::UpperCase { at, ch } => write!(
                f,
                "upper-case '{ch}' at position {}: iSCSI names are lower case, \
                 write it in lower case",
                at + 1
            ),
            NameError::BadCharacter { at, ch } => write!(
                f,
                "character '{}' at position {} is not allowed in an iSCSI name \
                 (only a-z, 0-9, '-', '.' and ':')",
                ch.escape_default(),
                at + 1
            ),
            NameError::UnknownType => f.write_str("iSCSI name must start with iqn., eui. or naa."),
            NameError::IqnDate => f.write_str("iqn. must be followed by a date yyyy-mm and '.'"),
            NameError::IqnAuthority => f.write_str(
                "iqn. name needs a reversed domain name after the date, \
                 as in iqn.2001-04.com.example",
            ),
            NameError::HexLength { kind, len } => {
                let want = match kind {
                    NameType::Naa => "16 or 32",
                    NameType::Iqn | NameType::Eui => "16",
                };
                write!(
                    f,
                    "{} must be followed by {want} hex digits, not {len}",
                    kind.prefix()
                )
            }
            NameError::NotHex { at, ch } => write!(
                f,
                "'{}' at position {} is not a hex digit",
                ch.escape_default(),
                at + 1
            ),
            NameError::BlockNameEmpty => f.write_str("block name is empty"),
            NameError::BlockNameTooLong { len } => write!(
                f,
                "block name is {len} bytes long, at most {MAX_BLOCK_NAME} allowed"
            ),
            NameError::BlockNameCharacter { at, ch } => {
                let what = if ch.is_control() {
                    "a control character"
                } else {
                    "white space"
                };
                write!(
                    f,
                    "block name has {what} ('{}') at position {}",
                    ch.escape_default(),
                    at + 1
                )
            }
        }
    }
}

impl std::error::Error for NameError {}

/// The characters of the stringprep output we accept, case aside.
fn allowed(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | ':')
}

/// Checks that `name` is an iSCSI name in one of the three formats and
/// returns which.
pub fn check(name: &str) -> Result<NameType, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { len: name.len() });
    }
    if let Some((at, ch)) = name.char_indices().find(|&(_, c)| !allowed(c)) {
        return Err(if ch.is_ascii_uppercase() {
            NameError::UpperCase { at, ch }
        } else {
            NameError::BadCharacter { at, ch }
        });
    }
    if let Some(rest) = name.strip_prefix(IQN_PREFIX) {
        check_iqn(rest)?;
        Ok(NameType::Iqn)
    } else if let Some(rest) = name.strip_prefix(EUI_PREFIX) {
        check_hex(NameType::Eui, rest, &[EUI_HEX_DIGITS])?;
        Ok(NameType::Eui)
    } else if let Some(rest) = name.strip_prefix(NAA_PREFIX) {
        check_hex(NameType::Naa, rest, &NAA_HEX_DIGITS)?;
        Ok(NameType::Naa)
    } else {
        Err(NameError::UnknownType)
    }
}

/// The form of a name received from a target, or typed by someone, that
/// we accept: ASCII upper case folded to lower case as stringprep would,
/// then checked. The configuration does not fold (see the module comment);
/// this is for names the initiator only compares or passes on.
pub fn fold(name: &str) -> Result<String, NameError> {
    let lower = name.to_ascii_lowercase();
    check(&lower)?;
    Ok(lower)
}

/// Checks the name of a target block, which is not an iSCSI name but any
/// printable text without white space, at most [`MAX_BLOCK_NAME`] bytes.
pub fn check_block_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::BlockNameEmpty);
    }
    if let Some((at, ch)) = name
        .char_indices()
        .find(|&(_, c)| c.is_whitespace() || c.is_control())
    {
        return Err(NameError::BlockNameCharacter { at, ch });
    }
    if name.len() > MAX_BLOCK_NAME {
        return Err(NameError::BlockNameTooLong { len: name.len() });
    }
    Ok(())
}

/// `yyyy-mm.reversed.domain[:anything]`, after `iqn.`.
fn check_iqn(rest: &str) -> Result<(), NameError> {
    let date = rest.get(..IQN_DATE_LEN).ok_or(NameError::IqnDate)?;
    let b = date.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let month = date.get(5..).and_then(|m| m.parse::<u32>().ok());
    if !(digits(0..4) && b[4] == b'-' && digits(5..7) && month.is_some_and(|m| MONTHS.contains(&m)))
    {
        return Err(NameError::IqnDate);
    }
    let after = &rest[IQN_DATE_LEN..];
    let authority = after.strip_prefix('.').ok_or(NameError::IqnDate)?;
    // Whatever follows the first ':' is the owner's to choose.
    let domain = authority.split(':').next().unwrap_or_default();
    if domain.is_empty() || domain.split('.').any(str::is_empty) {
        return Err(NameError::IqnAuthority);
    }
    Ok(())
}

fn check_hex(kind: NameType, hex: &str, lengths: &[usize]) -> Result<(), NameError> {
    let start = kind.prefix().len();
    if let Some((i, ch)) = hex.char_indices().find(|&(_, c)| !c.is_ascii_hexdigit()) {
        return Err(NameError::NotHex { at: start + i, ch });
    }
    if !lengths.contains(&hex.len()) {
        return Err(NameError::HexLength {
            kind,
            len: hex.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names() {
        for (name, kind) in [
            ("iqn.2001-04.com.example", NameType::Iqn),
            (
                "iqn.2001-04.com.example:storage:diskarrays-sn-a8675309",
                NameType::Iqn,
            ),
            (
                "iqn.1994-04.org.netbsd.iscsi-target:target:0",
                NameType::Iqn,
            ),
            ("iqn.1995-11.org.openbsd.iscsid:host1", NameType::Iqn),
            // Anything may follow the colon, even more colons and dots.
            ("iqn.2026-12.x:a..b::c", NameType::Iqn),
            ("eui.02004567a425678d", NameType::Eui),
            ("naa.52004567ba64678d", NameType::Naa),
            ("naa.6001405abcdef0123456789abcdef012", NameType::Naa),
        ] {
            assert_eq!(check(name), Ok(kind), "{name}");
        }
        let longest = format!("iqn.2001-04.com.example:{}", "x".repeat(MAX_NAME_LEN - 24));
        assert_eq!(longest.len(), MAX_NAME_LEN);
        assert_eq!(check(&longest), Ok(NameType::Iqn));
    }

    #[test]
    fn control_characters_and_white_space() {
        assert_eq!(
            check("iqn.2001-04.com.example:a\x1b[2J"),
            Err(NameError::BadCharacter { at: 25, ch: '\x1b' })
        );
        assert_eq!(
            check("iqn.2001-04.com.example:\x07"),
            Err(NameError::BadCharacter { at: 24, ch: '\x07' })
        );
        assert_eq!(
            check("iqn.2001-04.com.example:a b"),
            Err(NameError::BadCharacter { at: 25, ch: ' ' })
        );
        assert_eq!(
            check("iqn.2001-04.com.example:\t"),
            Err(NameError::BadCharacter { at: 24, ch: '\t' })
        );
        assert_eq!(
            check("iqn.2001-04.com.example:disk_1"),
            Err(NameError::BadCharacter { at: 28, ch: '_' })
        );
        assert_eq!(
            check("iqn.2001-04.com.example:dïsk"),
            Err(NameError::BadCharacter { at: 25, ch: 'ï' })
        );
        // The message never carries the raw byte to a terminal.
        let shown = check("iqn.2001-04.com.example:\x1b")
            .unwrap_err()
            .to_string();
        assert_eq!(
            shown,
            "character '\\u{1b}' at position 25 is not allowed in an iSCSI name \
             (only a-z, 0-9, '-', '.' and ':')"
        );
        assert!(!shown.chars().any(char::is_control));
    }

    #[test]
    fn upper_case_is_refused_with_its_own_message() {
        assert_eq!(
            check("iqn.2001-04.com.Example"),
            Err(NameError::UpperCase { at: 16, ch: 'E' })
        );
        assert_eq!(
            check("IQN.2001-04.com.example"),
            Err(NameError::UpperCase { at: 0, ch: 'I' })
        );
        assert_eq!(
            check("eui.02004567A425678D").unwrap_err().to_string(),
            "upper-case 'A' at position 13: iSCSI names are lower case, \
             write it in lower case"
        );
    }

    #[test]
    fn length() {
        assert_eq!(check(""), Err(NameError::Empty));
        let long = format!("iqn.2001-04.com.example:{}", "x".repeat(MAX_NAME_LEN - 23));
        assert_eq!(
            check(&long),
            Err(NameError::TooLong {
                len: MAX_NAME_LEN + 1
            })
        );
    }

    #[test]
    fn fold_lowers_ascii_and_checks() {
        assert_eq!(
            fold("eui.02004567A425678D"),
            Ok("eui.02004567a425678d".to_owned())
        );
        assert_eq!(
            fold("IQN.2001-04.com.Example:Disk"),
            Ok("iqn.2001-04.com.example:disk".to_owned())
        );
        // Folding does not make anything else acceptable.
        assert_eq!(
            fold("iqn.2001-04.com.example:A\x1b"),
            Err(NameError::BadCharacter { at: 25, ch: '\x1b' })
        );
        assert_eq!(fold("DISK1"), Err(NameError::UnknownType));
    }

    #[test]
    fn block_names() {
        for ok in [
            "disk1",
            "sess-1",
            "lab",
            "\u{e9}t\u{e9}",
            "a/b",
            &"n".repeat(MAX_BLOCK_NAME),
        ] {
            assert_eq!(check_block_name(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_block_name(""), Err(NameError::BlockNameEmpty));
        assert_eq!(
            check_block_name(&"n".repeat(MAX_BLOCK_NAME + 1)),
            Err(NameError::BlockNameTooLong {
                len: MAX_BLOCK_NAME + 1
            })
        );
        assert_eq!(
            check_block_name("my disk"),
            Err(NameError::BlockNameCharacter { at: 2, ch: ' ' })
        );
        assert_eq!(
            check_block_name("a\x1b[2J"),
            Err(NameError::BlockNameCharacter { at: 1, ch: '\x1b' })
        );
        assert_eq!(
            check_block_name("bell\x07"),
            Err(NameError::BlockNameCharacter { at: 4, ch: '\x07' })
        );
        // No-break space is white space too.
        assert_eq!(
            check_block_name("a\u{a0}b"),
            Err(NameError::BlockNameCharacter {
                at: 1,
                ch: '\u{a0}'
            })
        );
        assert_eq!(
            check_block_name("a\tb").unwrap_err().to_string(),
            "block name has a control character ('\\t') at position 2"
        );
        assert_eq!(
            check_block_name("a b").unwrap_err().to_string(),
            "block name has white space (' ') at position 2"
        );
    }

    #[test]
    fn formats() {
        assert_eq!(check("iqn"), Err(NameError::UnknownType));
        assert_eq!(check("iqn.x:t"), Err(NameError::IqnDate));
        assert_eq!(check("iqn."), Err(NameError::IqnDate));
        assert_eq!(check("iqn.2001-4.com.example"), Err(NameError::IqnDate));
        assert_eq!(check("iqn.2001-13.com.example"), Err(NameError::IqnDate));
        assert_eq!(check("iqn.2001-00.com.example"), Err(NameError::IqnDate));
        assert_eq!(check("iqn.01-04-1.com.example"), Err(NameError::IqnDate));
        assert_eq!(check("iqn.2001-04com.example"), Err(NameError::IqnDate));
        assert_eq!(check("iqn.2001-04"), Err(NameError::IqnDate));
        assert_eq!(check("iqn.2001-04."), Err(NameError::IqnAuthority));
        assert_eq!(check("iqn.2001-04.:disk"), Err(NameError::IqnAuthority));
        assert_eq!(
            check("iqn.2001-04.com..example"),
            Err(NameError::IqnAuthority)
        );
        assert_eq!(
            check("iqn.2001-04.com.example."),
            Err(NameError::IqnAuthority)
        );
        assert_eq!(check("disk1"), Err(NameError::UnknownType));
        assert_eq!(check("eui:02004567a425678d"), Err(NameError::UnknownType));
        assert_eq!(
            check("eui.02004567a425678"),
            Err(NameError::HexLength {
                kind: NameType::Eui,
                len: 15
            })
        );
        assert_eq!(
            check("eui.6001405abcdef0123456789abcdef012"),
            Err(NameError::HexLength {
                kind: NameType::Eui,
                len: 32
            })
        );
        assert_eq!(
            check("naa.52004567ba64678d00"),
            Err(NameError::HexLength {
                kind: NameType::Naa,
                len: 18
            })
        );
        assert_eq!(
            check("naa.52004567ba64678g"),
            Err(NameError::NotHex { at: 19, ch: 'g' })
        );
        assert_eq!(
            check("eui.").unwrap_err().to_string(),
            "eui. must be followed by 16 hex digits, not 0"
        );
        assert_eq!(
            check("naa.1").unwrap_err().to_string(),
            "naa. must be followed by 16 or 32 hex digits, not 1"
        );
    }
}
