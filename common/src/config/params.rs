//! Parameter lines (CHAP, digests, negotiation limits), valid both as
//! global defaults and inside a target block.

use super::error::ErrorKind;
use super::lexer::{Keyword, Tok};
use super::parser::{Loc, PResult, Parser, Reported, Stream};
use super::timers::Timer;
use super::{Chap, ChapAlgorithm, DigestPref, Params, CHAP_SECRET_MAX, CHAP_SECRET_MIN};

/// Keywords that start a parameter line.
pub(crate) fn is_param(k: Keyword) -> bool {
    matches!(
        k,
        Keyword::Chap | Keyword::HeaderDigest | Keyword::DataDigest
    ) || NumKey::of(k).is_some()
        || BoolKey::of(k).is_some()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumKey {
    MaxRecvDataSegmentLength,
    MaxBurstLength,
    FirstBurstLength,
    MaxOutstandingR2T,
    DefaultTime2Wait,
    DefaultTime2Retain,
    QueueDepth,
    Timer(Timer),
}

impl NumKey {
    fn of(k: Keyword) -> Option<NumKey> {
        Some(match k {
            Keyword::MaxRecvDataSegmentLength => NumKey::MaxRecvDataSegmentLength,
            Keyword::MaxBurstLength => NumKey::MaxBurstLength,
            Keyword::FirstBurstLength => NumKey::FirstBurstLength,
            Keyword::MaxOutstandingR2T => NumKey::MaxOutstandingR2T,
            Keyword::DefaultTime2Wait => NumKey::DefaultTime2Wait,
            Keyword::DefaultTime2Retain => NumKey::DefaultTime2Retain,
            Keyword::QueueDepth => NumKey::QueueDepth,
            Keyword::Timer(t) => NumKey::Timer(t),
            _ => return None,
        })
    }

    /// Inclusive bounds: RFC 7143's for the negotiated keys, ours for
    /// queuedepth and the timers.
    fn range(self) -> (u32, u32) {
        match self {
            NumKey::MaxRecvDataSegmentLength
            | NumKey::MaxBurstLength
            | NumKey::FirstBurstLength => (512, 16_777_215),
            NumKey::MaxOutstandingR2T => (1, 65535),
            NumKey::DefaultTime2Wait | NumKey::DefaultTime2Retain => (0, 3600),
            NumKey::QueueDepth => (1, 4096),
            NumKey::Timer(t) => {
                let l = t.limits();
                (l.min, l.max)
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BoolKey {
    InitialR2T,
    ImmediateData,
}

impl BoolKey {
    fn of(k: Keyword) -> Option<BoolKey> {
        match k {
            Keyword::InitialR2T => Some(BoolKey::InitialR2T),
            Keyword::ImmediateData => Some(BoolKey::ImmediateData),
            _ => None,
        }
    }
}

/// One parsed parameter line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Setting {
    Chap(Chap),
    ChapMutual(Chap),
    ChapAlgorithm(ChapAlgorithm),
    HeaderDigest(DigestPref),
    DataDigest(DigestPref),
    Number(NumKey, u32),
    Bool(BoolKey, bool),
}

/// Parameters plus where the ones that take part in later checks were set.
#[derive(Debug, Clone, Default)]
pub(crate) struct ParamsAt {
    pub params: Params,
    pub first_burst: Option<Loc>,
    pub max_burst: Option<Loc>,
    pub mutual: Option<Loc>,
}

impl ParamsAt {
    /// Later lines overwrite earlier ones.
    pub(crate) fn apply(&mut self, set: Setting, at: Loc) {
        let p = &mut self.params;
        match set {
            Setting::Chap(c) => p.chap = Some(c),
            Setting::ChapMutual(c) => {
                p.chap_mutual = Some(c);
                self.mutual = Some(at);
            }
            Setting::ChapAlgorithm(a) => p.chap_algorithm = Some(a),
            Setting::HeaderDigest(d) => p.header_digest = Some(d),
            Setting::DataDigest(d) => p.data_digest = Some(d),
            Setting::Bool(BoolKey::InitialR2T, v) => p.initial_r2t = Some(v),
            Setting::Bool(BoolKey::ImmediateData, v) => p.immediate_data = Some(v),
            Setting::Number(k, v) => {
                let slot = match k {
                    NumKey::MaxRecvDataSegmentLength => &mut p.max_recv_data_segment_length,
                    NumKey::MaxBurstLength => {
                        self.max_burst = Some(at);
                        &mut p.max_burst_length
                    }
                    NumKey::FirstBurstLength => {
                        self.first_burst = Some(at);
                        &mut p.first_burst_length
                    }
                    NumKey::MaxOutstandingR2T => &mut p.max_outstanding_r2t,
                    NumKey::DefaultTime2Wait => &mut p.default_time2wait,
                    NumKey::DefaultTime2Retain => &mut p.default_time2retain,
                    NumKey::QueueDepth => &mut p.queue_depth,
                    NumKey::Timer(t) => t.slot(p),
                };
                *slot = Some(v);
            }
        }
    }
}

const DIGESTS: &[(&str, DigestPref)] = &[
    ("none", DigestPref::None),
    ("crc32c", DigestPref::Crc32c),
    ("any", DigestPref::Any),
];
const ALGORITHMS: &[(&str, ChapAlgorithm)] = &[
    ("md5", ChapAlgorithm::Md5),
    ("sha256", ChapAlgorithm::Sha256),
    ("any", ChapAlgorithm::Any),
];
const BOOLS: &[(&str, bool)] = &[("yes", true), ("no", false)];

impl Parser {
    /// The arguments of parameter keyword `k`, which has been consumed.
    pub(super) fn param(&mut self, s: &mut Stream, k: Keyword, at: Loc) -> PResult<Setting> {
        if let Some(n) = NumKey::of(k) {
            return self
                .number_value(s, k.name(), n.range())
                .map(|v| Setting::Number(n, v));
        }
        if let Some(b) = BoolKey::of(k) {
            let v = self.keyword_value(s, k.name(), "yes or no", BOOLS)?;
            return Ok(Setting::Bool(b, v));
        }
        match k {
            Keyword::HeaderDigest => self
                .keyword_value(s, k.name(), "none, crc32c or any", DIGESTS)
                .map(Setting::HeaderDigest),
            Keyword::DataDigest => self
                .keyword_value(s, k.name(), "none, crc32c or any", DIGESTS)
                .map(Setting::DataDigest),
            Keyword::Chap => self.chap(s),
            _ => Err(self.misplaced(k, at, super::Place::Global)),
        }
    }

    fn chap(&mut self, s: &mut Stream) -> PResult<Setting> {
        const SUB: &[&str] = &["name", "mutual", "algorithm"];
        match self.expect_word(s, "name, mutual or algorithm", SUB)? {
            0 => self.chap_identity(s).map(Setting::Chap),
            1 => {
                self.expect_word(s, "name", &["name"])?;
                self.chap_identity(s).map(Setting::ChapMutual)
            }
            _ => self
                .keyword_value(s, "chap algorithm", "md5, sha256 or any", ALGORITHMS)
                .map(Setting::ChapAlgorithm),
        }
    }

    /// `NAME secret SECRET`, after `name`. Digits-only values lex as
    /// NUMBERs, so those are taken as written.
    fn chap_identity(&mut self, s: &mut Stream) -> PResult<Chap> {
        let word = |t: &Tok| matches!(t, Tok::Str(_) | Tok::Num { .. });
        let t = self.expect(s, "a CHAP name", word)?;
        let at = Loc {
            file: s.file,
            line: t.line,
        };
        let name = self.text(at, raw_text(t.tok))?;
        if name.is_empty() {
            return Err(self.err(at, ErrorKind::ChapNameEmpty));
        }
        self.expect_word(s, "secret", &["secret"])?;
        let t = self.expect(s, "a CHAP secret", word)?;
        let at = Loc {
            file: s.file,
            line: t.line,
        };
        let files = self.files_of(&t.origin);
        let secret = raw_text(t.tok);
        if !(CHAP_SECRET_MIN..=CHAP_SECRET_MAX).contains(&secret.len()) {
            return Err(self.err(at, ErrorKind::ChapSecretLength { len: secret.len() }));
        }
        self.draft.secret_files.extend(files);
        Ok(Chap { name, secret })
    }

    /// A value from `table`, compared without regard to ASCII case like
    /// base's `isid` type.
    fn keyword_value<T: Copy>(
        &mut self,
        s: &mut Stream,
        keyword: &'static str,
        allowed: &'static str,
        table: &[(&str, T)],
    ) -> PResult<T> {
        let t = self.expect(s, allowed, |t| matches!(t, Tok::Str(_) | Tok::Num { .. }))?;
        let at = Loc {
            file: s.file,
            line: t.line,
        };
        let raw = raw_text(t.tok);
        table
            .iter()
            .find(|(w, _)| w.as_bytes().eq_ignore_ascii_case(&raw))
            .map(|&(_, v)| v)
            .ok_or_else(|| {
                let value = super::parser::quote(&raw);
                self.err(
                    at,
                    ErrorKind::BadKeywordValue {
                        keyword,
                        value,
                        allowed,
                    },
                )
            })
    }

    fn number_value(
        &mut self,
        s: &mut Stream,
        keyword: &'static str,
        (min, max): (u32, u32),
    ) -> PResult<u32> {
        let t = self.expect(s, "a number", |t| {
            matches!(t, Tok::Str(_) | Tok::Num { .. })
        })?;
        let at = Loc {
            file: s.file,
            line: t.line,
        };
        match t.tok {
            Tok::Num { value, .. } => u32::try_from(value)
                .ok()
                .filter(|v| (min..=max).contains(v))
                .ok_or_else(|| {
                    self.err(
                        at,
                        ErrorKind::OutOfRange {
                            keyword,
                            value,
                            min,
                            max,
                        },
                    )
                }),
            Tok::Str(b) => Err(self.err(
                at,
                ErrorKind::BadNumber {
                    keyword,
                    value: super::parser::quote(&b),
                },
            )),
            _ => Err(Reported),
        }
    }
}

/// The bytes of a STRING, or a NUMBER as written.
fn raw_text(t: Tok) -> Vec<u8> {
    match t {
        Tok::Str(b) => b,
        Tok::Num { text, .. } => text.into_bytes(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{errs, ok, target};
    use super::super::{Chap, ChapAlgorithm, DigestPref, Params, Timer};

    fn block_params(body: &str) -> Params {
        ok(&target(body)).targets[0].params.clone()
    }

    #[test]
    fn every_parameter_line() {
        let lines = "chap name alice secret \"s3cret-s3cret\"\n\
                     chap mutual name target1 secret 123456789012\n\
                     chap algorithm sha256\n\
                     headerdigest crc32c\n\
                     datadigest none\n\
                     maxrecvdatasegmentlength 262144\n\
                     maxburstlength 1048576\n\
                     firstburstlength 65536\n\
                     maxoutstandingr2t 4\n\
                     initialr2t no\n\
                     immediatedata yes\n\
                     defaulttime2wait 2\n\
                     defaulttime2retain 20\n\
                     queuedepth 64\n\
                     logintimeout 20\n\
                     nopinterval 5\n\
                     noptimeout 7\n\
                     commandtimeout 120\n\
                     tmftimeout 30\n\
                     replacementtimeout 0\n\
                     reconnectmax 300\n\
                     reissuelimit 0\n";
        let want = Params {
            chap: Some(Chap {
                name: "alice".into(),
                secret: b"s3cret-s3cret".to_vec(),
            }),
            chap_mutual: Some(Chap {
                name: "target1".into(),
                secret: b"123456789012".to_vec(),
            }),
            chap_algorithm: Some(ChapAlgorithm::Sha256),
            header_digest: Some(DigestPref::Crc32c),
            data_digest: Some(DigestPref::None),
            max_recv_data_segment_length: Some(262_144),
            max_burst_length: Some(1_048_576),
            first_burst_length: Some(65536),
            max_outstanding_r2t: Some(4),
            initial_r2t: Some(false),
            immediate_data: Some(true),
            default_time2wait: Some(2),
            default_time2retain: Some(20),
            queue_depth: Some(64),
            login_timeout: Some(20),
            nop_interval: Some(5),
            nop_timeout: Some(7),
            command_timeout: Some(120),
            tmf_timeout: Some(30),
            replacement_timeout: Some(0),
            reconnect_max: Some(300),
            reissue_limit: Some(0),
        };
        // The same lines work inside a block and as global defaults.
        assert_eq!(block_params(lines), want);
        assert_eq!(
            ok(&format!("{lines}{}", target(""))).targets[0].params,
            want
        );
    }

    #[test]
    fn keyword_values_ignore_case() {
        let p = block_params(
            " chap algorithm MD5\n headerdigest Any\n datadigest CRC32C\n\
             initialr2t YES\n immediatedata No",
        );
        assert_eq!(p.chap_algorithm, Some(ChapAlgorithm::Md5));
        assert_eq!(p.header_digest, Some(DigestPref::Any));
        assert_eq!(p.data_digest, Some(DigestPref::Crc32c));
        assert_eq!(p.initial_r2t, Some(true));
        assert_eq!(p.immediate_data, Some(false));
        assert_eq!(
            block_params(" chap algorithm any").chap_algorithm,
            Some(ChapAlgorithm::Any)
        );
        assert_eq!(
            block_params(" headerdigest none").header_digest,
            Some(DigestPref::None)
        );
    }

    #[test]
    fn numeric_bounds_are_inclusive() {
        let cases: &[(&str, u32, u32)] = &[
            ("maxrecvdatasegmentlength", 512, 16_777_215),
            ("maxburstlength", 512, 16_777_215),
            ("firstburstlength", 512, 16_777_215),
            ("maxoutstandingr2t", 1, 65535),
            ("defaulttime2wait", 0, 3600),
            ("defaulttime2retain", 0, 3600),
            ("queuedepth", 1, 4096),
        ];
        let timers: Vec<(&str, u32, u32)> = Timer::ALL
            .iter()
            .map(|t| (t.keyword(), t.limits().min, t.limits().max))
            .collect();
        // The bounds iscsi.conf(5) documents.
        assert_eq!(
            timers,
            [
                ("logintimeout", 1, 3600),
                ("nopinterval", 1, 3600),
                ("noptimeout", 1, 3600),
                ("commandtimeout", 1, 3600),
                ("tmftimeout", 1, 600),
                ("replacementtimeout", 0, 86400),
                ("reconnectmax", 1, 3600),
                ("reissuelimit", 0, 100),
            ]
        );
        for &(kw, min, max) in cases.iter().chain(&timers) {
            for v in [min, max] {
                // Keep firstburstlength legal against maxburstlength.
                let text = format!(" maxburstlength 16777215\n {kw} {v}");
                assert!(
                    super::super::parse_str(&target(&text), "t.conf").is_ok(),
                    "{kw} {v}"
                );
            }
            for v in [i64::from(min) - 1, i64::from(max) + 1] {
                assert_eq!(
                    errs(&target(&format!(" {kw} {v}"))),
                    [format!("t.conf:4: {kw} {v} out of range {min}..{max}")]
                );
            }
        }
        assert_eq!(
            errs(&target(" queuedepth -9223372036854775808")),
            ["t.conf:4: queuedepth -9223372036854775808 out of range 1..4096"]
        );
    }

    #[test]
    fn value_errors() {
        let e = |body: &str| errs(&target(body));
        assert_eq!(
            e(" maxburstlength 64k"),
            ["t.conf:4: maxburstlength: 64k is not a number"]
        );
        assert_eq!(
            e(" maxburstlength \"65536\""),
            ["t.conf:4: maxburstlength: 65536 is not a number"]
        );
        assert_eq!(
            e(" queuedepth"),
            ["t.conf:4: syntax error: expected a number, found end of line"]
        );
        assert_eq!(
            e(" headerdigest crc32"),
            ["t.conf:4: invalid headerdigest crc32: expected none, crc32c or any"]
        );
        assert_eq!(
            e(" initialr2t 1"),
            ["t.conf:4: invalid initialr2t 1: expected yes or no"]
        );
        assert_eq!(
            e(" chap algorithm sha1"),
            ["t.conf:4: invalid chap algorithm sha1: expected md5, sha256 or any"]
        );
        assert_eq!(
            e(" immediatedata yes no"),
            ["t.conf:4: syntax error: expected end of line, found \"no\""]
        );
    }

    #[test]
    fn chap_lines() {
        let p = block_params(" chap name a secret x\n chap name b secret y");
        assert_eq!(
            p.chap,
            Some(Chap {
                name: "b".into(),
                secret: b"y".to_vec()
            })
        );
        let s255 = "k".repeat(255);
        let p = block_params(&format!(" chap name 42 secret \"{s255}\""));
        assert_eq!(p.chap.unwrap().secret.len(), 255);
        let e = |body: &str| errs(&target(body));
        assert_eq!(
            e(" chap name a secret \"\""),
            ["t.conf:4: CHAP secret is 0 bytes long, must be 1..255"]
        );
        assert_eq!(
            e(&format!(" chap name a secret {s255}k")),
            ["t.conf:4: CHAP secret is 256 bytes long, must be 1..255"]
        );
        assert_eq!(
            e(" chap name \"\" secret x"),
            ["t.conf:4: CHAP name is empty"]
        );
        assert_eq!(
            e(" chap nam a secret x"),
            ["t.conf:4: syntax error: expected name, mutual or algorithm, found \"nam\""]
        );
        assert_eq!(
            e(" chap name a password x"),
            ["t.conf:4: syntax error: expected secret, found \"password\""]
        );
        assert_eq!(
            e(" chap mutual secret x"),
            ["t.conf:4: syntax error: expected name, found \"secret\""]
        );
        assert_eq!(
            e(" chap name a secret"),
            ["t.conf:4: syntax error: expected a CHAP secret, found end of line"]
        );
        assert_eq!(
            e(" chap"),
            ["t.conf:4: syntax error: expected name, mutual or algorithm, found end of line"]
        );
    }
}
