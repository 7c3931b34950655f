//! Text data segments (RFC 7143 6.1): `key=value` pairs, each followed by
//! exactly one NUL, possibly spread over several PDUs with the C bit set.

use std::fmt;

/// Longest key name the RFC allows (standard-label, 6.1).
pub const MAX_KEY_LEN: usize = 63;
/// Total accumulated text we accept from a peer: a hostile target must not
/// make us buffer without bound by setting C=1 forever.
pub const MAX_TEXT: usize = 1 << 20;
/// Longest single value (the RFC's largest: binary values of 8192 bytes).
pub const MAX_VALUE_LEN: usize = 8192;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextError {
    /// A pair has no '=' separator (pair index).
    MissingEquals(usize),
    /// A pair starts with '=' (pair index).
    EmptyKey(usize),
    /// A key exceeds [`MAX_KEY_LEN`] (pair index).
    KeyTooLong(usize),
    /// A key holds something other than printable ASCII (pair index).
    BadKeyChar(usize),
    /// A value exceeds [`MAX_VALUE_LEN`] (pair index).
    ValueTooLong(usize),
    /// A pair is not valid UTF-8 (pair index).
    NotUtf8(usize),
    /// Two NULs in a row before the end of the data (pair index).
    EmptyPair(usize),
    /// The last pair lacks its NUL terminator.
    Unterminated,
    /// More than [`MAX_TEXT`] bytes of text were pushed.
    TooLong,
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextError::MissingEquals(i) => write!(f, "text pair {i} has no '='"),
            TextError::EmptyKey(i) => write!(f, "text pair {i} has an empty key"),
            TextError::KeyTooLong(i) => {
                write!(f, "text pair {i}: key longer than {MAX_KEY_LEN} bytes")
            }
            TextError::BadKeyChar(i) => write!(f, "text pair {i}: invalid character in key"),
            TextError::ValueTooLong(i) => {
                write!(f, "text pair {i}: value longer than {MAX_VALUE_LEN} bytes")
            }
            TextError::NotUtf8(i) => write!(f, "text pair {i} is not valid UTF-8"),
            TextError::EmptyPair(i) => write!(f, "text pair {i} is empty"),
            TextError::Unterminated => write!(f, "last text pair is not NUL-terminated"),
            TextError::TooLong => write!(f, "text exceeds {MAX_TEXT} bytes"),
        }
    }
}

impl std::error::Error for TextError {}

/// Parses a complete text segment. Trailing NULs beyond the last
/// terminator are tolerated as padding; anything else malformed is an error.
pub fn decode(data: &[u8]) -> Result<Vec<(String, String)>, TextError> {
    match data.last() {
        None => return Ok(Vec::new()),
        // Bytes after the last NUL would be a pair without its terminator.
        Some(&b) if b != 0 => return Err(TextError::Unterminated),
        Some(_) => {}
    }
    // Drop the final terminator plus any padding NULs before splitting.
    let body_len = data.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    let body = data.get(..body_len).unwrap_or_default();
    if body.is_empty() {
        return Ok(Vec::new());
    }
    body.split(|&b| b == 0)
        .enumerate()
        .map(|(i, pair)| decode_pair(i, pair))
        .collect()
}

fn decode_pair(i: usize, pair: &[u8]) -> Result<(String, String), TextError> {
    if pair.is_empty() {
        return Err(TextError::EmptyPair(i));
    }
    let eq = pair
        .iter()
        .position(|&b| b == b'=')
        .ok_or(TextError::MissingEquals(i))?;
    let (key, rest) = pair.split_at(eq);
    let value = rest.get(1..).unwrap_or_default();
    if key.is_empty() {
        return Err(TextError::EmptyKey(i));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(TextError::KeyTooLong(i));
    }
    // Keys are ASCII labels; rejecting controls keeps them safe to log.
    if !key.iter().all(|b| b.is_ascii_graphic()) {
        return Err(TextError::BadKeyChar(i));
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(TextError::ValueTooLong(i));
    }
    let key = std::str::from_utf8(key).map_err(|_| TextError::NotUtf8(i))?;
    let value = std::str::from_utf8(value).map_err(|_| TextError::NotUtf8(i))?;
    Ok((key.to_owned(), value.to_owned()))
}

/// Serialises pairs as `k=v\0` each. Callers pass well-formed keys.
pub fn encode<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// Multi-PDU text (C bit): a pair may be split across PDUs, so the pieces
/// are concatenated and only decoded once the final PDU (C=0) arrived.
#[derive(Debug, Default)]
pub struct TextBuf {
    buf: Vec<u8>,
}

impl TextBuf {
    /// Appends one PDU's data segment; fails once the total passes [`MAX_TEXT`].
    pub fn push(&mut self, data: &[u8]) -> Result<(), TextError> {
        let total = self.buf.len().saturating_add(data.len());
        if total > MAX_TEXT {
            return Err(TextError::TooLong);
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// Decodes everything pushed so far and empties the buffer (also on error,
    /// so a failed exchange leaves no residue for the next one).
    pub fn finish(&mut self) -> Result<Vec<(String, String)>, TextError> {
        let buf = std::mem::take(&mut self.buf);
        decode(&buf)
    }

    /// Bytes buffered so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Splits outgoing text into pieces of at most `max` bytes (the peer's
/// MaxRecvDataSegmentLength); all but the last go out with C=1. Empty text
/// still yields one empty piece, so the caller always sends one PDU.
pub fn chunks(data: &[u8], max: usize) -> impl Iterator<Item = &[u8]> {
    let max = max.max(1);
    let count = if data.is_empty() {
        1
    } else {
        data.len().div_ceil(max)
    };
    (0..count).map(move |i| {
        let start = i.saturating_mul(max);
        let end = start.saturating_add(max).min(data.len());
        data.get(start..end).unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn decode_basic() {
        let d = b"HeaderDigest=None\0MaxBurstLength=262144\0";
        assert_eq!(
            decode(d).unwrap(),
            pairs(&[("HeaderDigest", "None"), ("MaxBurstLength", "262144")])
        );
    }

    #[test]
    fn decode_empty_value_and_equals_in_value() {
        let d = b"TargetAlias=\0X-a=b=c\0";
        assert_eq!(
            decode(d).unwrap(),
            pairs(&[("TargetAlias", ""), ("X-a", "b=c")])
        );
    }

    #[test]
    fn decode_ignores_trailing_padding() {
        let d = b"A=1\0\0\0\0";
        assert_eq!(decode(d).unwrap(), pairs(&[("A", "1")]));
        assert_eq!(decode(b"").unwrap(), vec![]);
        assert_eq!(decode(b"\0\0\0").unwrap(), vec![]);
    }

    #[test]
    fn decode_rejects_missing_terminator() {
        assert_eq!(decode(b"A=1\0B=2"), Err(TextError::Unterminated));
        assert_eq!(decode(b"A=1"), Err(TextError::Unterminated));
    }

    #[test]
    fn decode_rejects_malformed_pairs() {
        assert_eq!(decode(b"A=1\0garbage\0"), Err(TextError::MissingEquals(1)));
        assert_eq!(decode(b"=1\0"), Err(TextError::EmptyKey(0)));
        assert_eq!(decode(b"A=1\0\0B=2\0"), Err(TextError::EmptyPair(1)));
        assert_eq!(decode(b"A B=1\0"), Err(TextError::BadKeyChar(0)));
        assert_eq!(decode(b"A\nB=1\0"), Err(TextError::BadKeyChar(0)));
    }

    #[test]
    fn decode_key_length_limit() {
        let mut ok = vec![b'K'; MAX_KEY_LEN];
        ok.extend_from_slice(b"=v\0");
        assert_eq!(decode(&ok).unwrap()[0].0.len(), MAX_KEY_LEN);
        let mut bad = vec![b'K'; MAX_KEY_LEN + 1];
        bad.extend_from_slice(b"=v\0");
        assert_eq!(decode(&bad), Err(TextError::KeyTooLong(0)));
    }

    #[test]
    fn decode_value_length_limit() {
        let mut ok = b"CHAP_C=".to_vec();
        ok.extend(vec![b'a'; MAX_VALUE_LEN]);
        ok.push(0);
        assert_eq!(decode(&ok).unwrap()[0].1.len(), MAX_VALUE_LEN);
        let mut bad = b"CHAP_C=".to_vec();
        bad.extend(vec![b'a'; MAX_VALUE_LEN + 1]);
        bad.push(0);
        assert_eq!(decode(&bad), Err(TextError::ValueTooLong(0)));
    }

    #[test]
    fn decode_utf8() {
        let d = "TargetAlias=d\u{e9}p\u{f4}t \u{1f4be}\0".as_bytes();
        assert_eq!(decode(d).unwrap(), pairs(&[("TargetAlias", "dépôt 💾")]));
        assert_eq!(decode(b"A=\xff\xfe\0"), Err(TextError::NotUtf8(0)));
        // A UTF-8 sequence cut by the terminator is invalid too.
        assert_eq!(decode(b"A=\xc3\0"), Err(TextError::NotUtf8(0)));
    }

    #[test]
    fn encode_roundtrip() {
        let e = encode([("InitiatorName", "iqn.x:y"), ("SessionType", "Normal")]);
        assert_eq!(e, b"InitiatorName=iqn.x:y\0SessionType=Normal\0".to_vec());
        assert_eq!(
            decode(&e).unwrap(),
            pairs(&[("InitiatorName", "iqn.x:y"), ("SessionType", "Normal")])
        );
        assert!(encode([]).is_empty());
    }

    #[test]
    fn textbuf_joins_split_pairs() {
        let mut tb = TextBuf::default();
        tb.push(b"TargetName=iqn.2026").unwrap();
        tb.push(b"-11.org:a\0TargetAdd").unwrap();
        tb.push(b"ress=10.0.0.1:3260,1\0").unwrap();
        assert_eq!(
            tb.finish().unwrap(),
            pairs(&[
                ("TargetName", "iqn.2026-11.org:a"),
                ("TargetAddress", "10.0.0.1:3260,1")
            ])
        );
        assert!(tb.is_empty());
        // The buffer is reusable after finish.
        tb.push(b"A=1\0").unwrap();
        assert_eq!(tb.finish().unwrap(), pairs(&[("A", "1")]));
    }

    #[test]
    fn textbuf_split_inside_key_and_before_nul() {
        let mut tb = TextBuf::default();
        tb.push(b"Max").unwrap();
        tb.push(b"BurstLength=512").unwrap();
        tb.push(b"\0").unwrap();
        assert_eq!(tb.finish().unwrap(), pairs(&[("MaxBurstLength", "512")]));
    }

    #[test]
    fn textbuf_cap() {
        let mut tb = TextBuf::default();
        tb.push(&vec![b'a'; MAX_TEXT - 1]).unwrap();
        tb.push(b"b").unwrap();
        assert_eq!(tb.len(), MAX_TEXT);
        assert_eq!(tb.push(b"c"), Err(TextError::TooLong));
        assert_eq!(tb.len(), MAX_TEXT);
    }

    #[test]
    fn textbuf_finish_clears_on_error() {
        let mut tb = TextBuf::default();
        tb.push(b"A=1").unwrap();
        assert_eq!(tb.finish(), Err(TextError::Unterminated));
        assert!(tb.is_empty());
    }

    #[test]
    fn chunks_split() {
        let d = b"0123456789";
        let c: Vec<&[u8]> = chunks(d, 4).collect();
        assert_eq!(c, vec![&b"0123"[..], &b"4567"[..], &b"89"[..]]);
        let c: Vec<&[u8]> = chunks(d, 5).collect();
        assert_eq!(c, vec![&b"01234"[..], &b"56789"[..]]);
        let c: Vec<&[u8]> = chunks(d, 100).collect();
        assert_eq!(c, vec![&d[..]]);
    }

    #[test]
    fn chunks_edge_cases() {
        let c: Vec<&[u8]> = chunks(b"", 8192).collect();
        assert_eq!(c, vec![&b""[..]]);
        // max 0 must not loop forever or panic.
        let c: Vec<&[u8]> = chunks(b"ab", 0).collect();
        assert_eq!(c, vec![&b"a"[..], &b"b"[..]]);
        let c: Vec<&[u8]> = chunks(b"ab", usize::MAX).collect();
        assert_eq!(c, vec![&b"ab"[..]]);
    }

    #[test]
    fn chunks_reassemble() {
        let text = encode([("A", "x".repeat(1000).as_str()), ("B", "y")]);
        let mut tb = TextBuf::default();
        for c in chunks(&text, 512) {
            assert!(c.len() <= 512);
            tb.push(c).unwrap();
        }
        let got = tb.finish().unwrap();
        assert_eq!(got[0].1.len(), 1000);
        assert_eq!(got[1], ("B".to_string(), "y".to_string()));
    }
}
