//! Login and Full Feature Phase key negotiation (RFC 7143 sections 6 and 13,
//! iSCSIProtocolLevel from RFC 7144). The initiator offers; the target
//! answers, and may offer keys of its own, which we answer here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

const NOT_UNDERSTOOD: &str = "NotUnderstood";
const IRRELEVANT: &str = "Irrelevant";
const REJECT: &str = "Reject";
/// Largest data segment length any side may declare or negotiate (2^24-1).
const MAX_LEN: u32 = 16_777_215;
/// Distinct keys one negotiation remembers: a hostile target must not make
/// duplicate tracking grow without bound.
const MAX_KEYS: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestPref {
    None,
    Crc32c,
    /// Prefer CRC32C but accept None: offered as "CRC32C,None".
    Any,
}

impl DigestPref {
    fn offer(self) -> &'static str {
        match self {
            DigestPref::None => "None",
            DigestPref::Crc32c => "CRC32C",
            DigestPref::Any => "CRC32C,None",
        }
    }

    fn accepts(self, v: &str) -> bool {
        match self {
            DigestPref::None => v == "None",
            DigestPref::Crc32c => v == "CRC32C",
            DigestPref::Any => v == "None" || v == "CRC32C",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    Normal,
    Discovery,
}

/// What we ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefs {
    pub header_digest: DigestPref,
    pub data_digest: DigestPref,
    pub max_recv_dsl: u32,
    pub max_burst: u32,
    pub first_burst: u32,
    pub initial_r2t: bool,
    pub immediate_data: bool,
    pub max_outstanding_r2t: u32,
    pub default_time2wait: u32,
    pub default_time2retain: u32,
    pub max_connections: u16,
    pub error_recovery_level: u8,
    pub data_pdu_in_order: bool,
    pub data_sequence_in_order: bool,
}

impl Default for Prefs {
    fn default() -> Self {
        Prefs {
            header_digest: DigestPref::None,
            data_digest: DigestPref::None,
            max_recv_dsl: 262_144,
            max_burst: 1_048_576,
            first_burst: 262_144,
            initial_r2t: false,
            immediate_data: true,
            max_outstanding_r2t: 16,
            default_time2wait: 2,
            default_time2retain: 20,
            max_connections: 1,
            error_recovery_level: 0,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
        }
    }
}

impl Prefs {
    /// Pulls every value into its legal range so that we never offer
    /// something the target must refuse.
    fn clamped(&self) -> Prefs {
        let mut p = self.clone();
        p.max_recv_dsl = p.max_recv_dsl.clamp(512, MAX_LEN);
        p.max_burst = p.max_burst.clamp(512, MAX_LEN);
        p.first_burst = p.first_burst.clamp(512, p.max_burst);
        p.max_outstanding_r2t = p.max_outstanding_r2t.clamp(1, 65_535);
        p.default_time2wait = p.default_time2wait.min(3600);
        p.default_time2retain = p.default_time2retain.min(3600);
        p.max_connections = p.max_connections.max(1);
        p.error_recovery_level = p.error_recovery_level.min(2);
        p
    }
}

/// Parameters in effect after login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub header_digest: bool,
    pub data_digest: bool,
    /// What we declared: the most the target may send us per PDU.
    pub max_recv_dsl: u32,
    /// The target's declared MaxRecvDataSegmentLength: the most we send per PDU.
    pub max_xmit_dsl: u32,
    pub max_burst: u32,
    pub first_burst: u32,
    pub initial_r2t: bool,
    pub immediate_data: bool,
    pub max_outstanding_r2t: u32,
    pub default_time2wait: u32,
    pub default_time2retain: u32,
    pub max_connections: u16,
    pub error_recovery_level: u8,
    pub data_pdu_in_order: bool,
    pub data_sequence_in_order: bool,
    pub target_portal_group_tag: Option<u16>,
    pub target_alias: Option<String>,
    pub task_reporting: Option<String>,
}

/// RFC 7143 defaults: what applies to any key not negotiated.
impl Default for Params {
    fn default() -> Self {
        Params {
            header_digest: false,
            data_digest: false,
            max_recv_dsl: 8192,
            max_xmit_dsl: 8192,
            max_burst: 262_144,
            first_burst: 65_536,
            initial_r2t: true,
            immediate_data: true,
            max_outstanding_r2t: 1,
            default_time2wait: 2,
            default_time2retain: 20,
            max_connections: 1,
            error_recovery_level: 0,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            target_portal_group_tag: None,
            target_alias: None,
            task_reporting: None,
        }
    }
}

/// Log-worthy outcomes; each carries the key name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NegEvent {
    /// The target answered "Reject": the key keeps its default.
    Rejected(String),
    /// The target answered "NotUnderstood": the key keeps its default.
    NotUnderstood(String),
    /// The target answered "Irrelevant": the key keeps its default.
    Irrelevant(String),
    /// An offer that needed an answer got none: the key keeps its default.
    Defaulted(String),
    /// The value was cut down to stay consistent (FirstBurstLength).
    Clamped(String),
}

impl fmt::Display for NegEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NegEvent::Rejected(k) => write!(f, "target rejected {k}, using the default"),
            NegEvent::NotUnderstood(k) => {
                write!(f, "target did not understand {k}, using the default")
            }
            NegEvent::Irrelevant(k) => write!(f, "target says {k} is irrelevant"),
            NegEvent::Defaulted(k) => write!(f, "target did not answer {k}, using the default"),
            NegEvent::Clamped(k) => write!(f, "{k} clamped to MaxBurstLength"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NegError {
    /// Not a decimal or 0x-hex number below 2^64.
    BadNumber { key: String, value: String },
    /// A number outside the key's legal range.
    OutOfRange { key: String, value: u64 },
    /// Not exactly "Yes" or "No".
    BadBoolean { key: String, value: String },
    /// A list answer that is not one of the values we offered.
    NotOffered { key: String, value: String },
    /// An answer the key's result function does not allow (e.g. a
    /// minimum-function answer above our offer).
    Violation { key: String, value: String },
    /// The target sent the same key twice in one negotiation.
    Duplicate { key: String },
    /// The target sent more distinct keys than we are willing to track.
    TooManyKeys,
}

/// Hostile values may be long; error messages carry a bounded prefix.
fn short(v: &str) -> &str {
    let mut end = v.len().min(64);
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    v.get(..end).unwrap_or_default()
}

impl fmt::Display for NegError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NegError::BadNumber { key, value } => {
                write!(f, "{key}: bad number {:?}", short(value))
            }
            NegError::OutOfRange { key, value } => write!(f, "{key}: {value} out of range"),
            NegError::BadBoolean { key, value } => {
                write!(f, "{key}: bad boolean {:?}", short(value))
            }
            NegError::NotOffered { key, value } => {
                write!(f, "{key}: answer {:?} was not offered", short(value))
            }
            NegError::Violation { key, value } => {
                write!(
                    f,
                    "{key}: answer {:?} breaks the result function",
                    short(value)
                )
            }
            NegError::Duplicate { key } => write!(f, "{key}: sent twice"),
            NegError::TooManyKeys => write!(f, "too many distinct keys"),
        }
    }
}

impl std::error::Error for NegError {}

/// RFC 7143 5.1 numerical values: decimal, or hex with a 0x/0X prefix.
pub fn parse_number(v: &str) -> Result<u64, NegError> {
    let bad = || NegError::BadNumber {
        key: String::new(),
        value: v.to_owned(),
    };
    let (digits, radix) = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(h) => (h, 16),
        None => (v, 10),
    };
    if digits.is_empty() {
        return Err(bad());
    }
    let mut n: u64 = 0;
    for c in digits.chars() {
        let d = c.to_digit(radix).ok_or_else(bad)?;
        n = n
            .checked_mul(u64::from(radix))
            .and_then(|n| n.checked_add(u64::from(d)))
            .ok_or_else(bad)?;
    }
    Ok(n)
}

fn parse_bool(key: Key, v: &str) -> Result<bool, NegError> {
    match v {
        "Yes" => Ok(true),
        "No" => Ok(false),
        _ => Err(NegError::BadBoolean {
            key: key.name().to_owned(),
            value: v.to_owned(),
        }),
    }
}

fn yes_no(b: bool) -> String {
    if b { "Yes" } else { "No" }.to_owned()
}

/// The event for a special answer, or None if `v` is an ordinary value.
fn special_event(key: &str, v: &str) -> Option<NegEvent> {
    let k = key.to_owned();
    match v {
        NOT_UNDERSTOOD => Some(NegEvent::NotUnderstood(k)),
        IRRELEVANT => Some(NegEvent::Irrelevant(k)),
        REJECT => Some(NegEvent::Rejected(k)),
        _ => None,
    }
}

/// How a key's outcome is computed (RFC 7143 13, "result function").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    List,
    Min,
    Max,
    Or,
    And,
    /// Declared by the target; recorded, never answered.
    TargetDecl,
    /// Declared by the initiator (or both, for MaxRecvDataSegmentLength).
    InitiatorDecl,
    /// RFC 7143 13.26: IFMarker, OFMarker, IFMarkInt, OFMarkInt.
    Obsolete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    HeaderDigest,
    DataDigest,
    MaxConnections,
    InitialR2T,
    ImmediateData,
    MaxRecvDsl,
    MaxBurst,
    FirstBurst,
    Time2Wait,
    Time2Retain,
    MaxOutR2T,
    DataPduInOrder,
    DataSeqInOrder,
    Erl,
    TaskReporting,
    ProtocolLevel,
    TargetAlias,
    TargetAddress,
    Tpgt,
    InitiatorAlias,
    InitiatorName,
    TargetName,
    SessionType,
    IfMarker,
    OfMarker,
    IfMarkInt,
    OfMarkInt,
}

const KEYS: [(Key, &str); 27] = [
    (Key::HeaderDigest, "HeaderDigest"),
    (Key::DataDigest, "DataDigest"),
    (Key::MaxConnections, "MaxConnections"),
    (Key::InitialR2T, "InitialR2T"),
    (Key::ImmediateData, "ImmediateData"),
    (Key::MaxRecvDsl, "MaxRecvDataSegmentLength"),
    (Key::MaxBurst, "MaxBurstLength"),
    (Key::FirstBurst, "FirstBurstLength"),
    (Key::Time2Wait, "DefaultTime2Wait"),
    (Key::Time2Retain, "DefaultTime2Retain"),
    (Key::MaxOutR2T, "MaxOutstandingR2T"),
    (Key::DataPduInOrder, "DataPDUInOrder"),
    (Key::DataSeqInOrder, "DataSequenceInOrder"),
    (Key::Erl, "ErrorRecoveryLevel"),
    (Key::TaskReporting, "TaskReporting"),
    (Key::ProtocolLevel, "iSCSIProtocolLevel"),
    (Key::TargetAlias, "TargetAlias"),
    (Key::TargetAddress, "TargetAddress"),
    (Key::Tpgt, "TargetPortalGroupTag"),
    (Key::InitiatorAlias, "InitiatorAlias"),
    (Key::InitiatorName, "InitiatorName"),
    (Key::TargetName, "TargetName"),
    (Key::SessionType, "SessionType"),
    (Key::IfMarker, "IFMarker"),
    (Key::OfMarker, "OFMarker"),
    (Key::IfMarkInt, "IFMarkInt"),
    (Key::OfMarkInt, "OFMarkInt"),
];

const NORMAL_OFFER: [Key; 14] = [
    Key::HeaderDigest,
    Key::DataDigest,
    Key::MaxConnections,
    Key::InitialR2T,
    Key::ImmediateData,
    Key::MaxRecvDsl,
    Key::MaxBurst,
    Key::FirstBurst,
    Key::Time2Wait,
    Key::Time2Retain,
    Key::MaxOutR2T,
    Key::DataPduInOrder,
    Key::DataSeqInOrder,
    Key::Erl,
];

/// Discovery sessions only move SendTargets text: the data-transfer keys
/// are irrelevant there (RFC 7143 13), the rest stay at their defaults.
const DISCOVERY_OFFER: [Key; 5] = [
    Key::HeaderDigest,
    Key::DataDigest,
    Key::MaxRecvDsl,
    Key::Time2Wait,
    Key::Time2Retain,
];

impl Key {
    fn from_name(name: &str) -> Option<Key> {
        KEYS.iter().find(|(_, n)| *n == name).map(|(k, _)| *k)
    }

    fn name(self) -> &'static str {
        KEYS.iter()
            .find(|(k, _)| *k == self)
            .map_or("?", |(_, n)| n)
    }

    fn func(self) -> Func {
        use Key::*;
        match self {
            HeaderDigest | DataDigest | TaskReporting => Func::List,
            MaxConnections | MaxBurst | FirstBurst | Time2Retain | MaxOutR2T | Erl
            | ProtocolLevel => Func::Min,
            Time2Wait => Func::Max,
            InitialR2T | DataPduInOrder | DataSeqInOrder => Func::Or,
            ImmediateData => Func::And,
            MaxRecvDsl | TargetAlias | TargetAddress | Tpgt => Func::TargetDecl,
            InitiatorAlias | InitiatorName | TargetName | SessionType => Func::InitiatorDecl,
            IfMarker | OfMarker | IfMarkInt | OfMarkInt => Func::Obsolete,
        }
    }

    /// Legal range of numeric keys (inclusive).
    fn range(self) -> (u64, u64) {
        use Key::*;
        match self {
            MaxRecvDsl | MaxBurst | FirstBurst => (512, u64::from(MAX_LEN)),
            MaxConnections | MaxOutR2T => (1, 65_535),
            Time2Wait | Time2Retain => (0, 3600),
            Erl => (0, 2),
            ProtocolLevel => (0, 31),
            Tpgt => (0, 65_535),
            _ => (0, u64::MAX),
        }
    }

    fn discovery_irrelevant(self) -> bool {
        use Key::*;
        matches!(
            self,
            MaxConnections
                | InitialR2T
                | ImmediateData
                | MaxBurst
                | FirstBurst
                | MaxOutR2T
                | DataPduInOrder
                | DataSeqInOrder
                | TaskReporting
        )
    }

    /// Keys that may come back with the same value without being a
    /// renegotiation (declarations repeated across login responses).
    fn may_repeat(self) -> bool {
        matches!(self.func(), Func::TargetDecl | Func::InitiatorDecl)
    }
}

/// A number from the target, checked against the key's legal range.
fn number(key: Key, v: &str) -> Result<u64, NegError> {
    let n = parse_number(v).map_err(|_| NegError::BadNumber {
        key: key.name().to_owned(),
        value: v.to_owned(),
    })?;
    let (lo, hi) = key.range();
    if n < lo || n > hi {
        return Err(NegError::OutOfRange {
            key: key.name().to_owned(),
            value: n,
        });
    }
    Ok(n)
}

// Values have passed `number`, whose ranges fit these types; saturating
// keeps the conversions total anyway.
fn to_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn to_u16(n: u64) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

fn to_u8(n: u64) -> u8 {
    u8::try_from(n).unwrap_or(u8::MAX)
}

struct Offer {
    key: Key,
    value: String,
    num: u64,
    yes: bool,
    answered: bool,
}

impl Offer {
    /// RFC 7143 6.2.2: an answer is optional when the offer already decides
    /// the outcome (OR offered Yes, AND offered No).
    fn answer_optional(&self) -> bool {
        match self.key.func() {
            Func::Or => self.yes,
            Func::And => !self.yes,
            _ => false,
        }
    }
}

/// One login's operational negotiation, from our offer to the final Params.
pub struct Negotiation {
    prefs: Prefs,
    kind: SessionKind,
    cur: Params,
    offers: Vec<Offer>,
    declared_mrdsl: bool,
    /// Keys the target sent so far, with their values (for duplicate checks).
    seen: BTreeMap<String, String>,
    events: Vec<NegEvent>,
    /// Our HeaderDigest / DataDigest offer was answered Reject.
    header_digest_rejected: bool,
    data_digest_rejected: bool,
}

impl Negotiation {
    pub fn new(prefs: &Prefs, kind: SessionKind) -> Negotiation {
        Negotiation {
            prefs: prefs.clamped(),
            kind,
            cur: Params::default(),
            offers: Vec::new(),
            declared_mrdsl: false,
            seen: BTreeMap::new(),
            events: Vec::new(),
            header_digest_rejected: false,
            data_digest_rejected: false,
        }
    }

    /// Keys for the first operational-stage Login Request (ordered; all we
    /// want to negotiate). Keys already offered, or already settled by a
    /// target offer, are left out, so a second call returns nothing new.
    pub fn offer(&mut self) -> Vec<(String, String)> {
        let keys: &[Key] = match self.kind {
            SessionKind::Normal => &NORMAL_OFFER,
            SessionKind::Discovery => &DISCOVERY_OFFER,
        };
        let mut out = Vec::new();
        for &key in keys {
            if key == Key::MaxRecvDsl {
                // Declarative: in effect as soon as we send it, never answered.
                if !self.declared_mrdsl {
                    self.declared_mrdsl = true;
                    self.cur.max_recv_dsl = self.prefs.max_recv_dsl;
                    out.push((key.name().to_owned(), self.prefs.max_recv_dsl.to_string()));
                }
                continue;
            }
            if self.seen.contains_key(key.name()) || self.offers.iter().any(|o| o.key == key) {
                continue;
            }
            let offer = self.make_offer(key);
            out.push((key.name().to_owned(), offer.value.clone()));
            self.offers.push(offer);
        }
        out
    }

    fn make_offer(&self, key: Key) -> Offer {
        let (value, num, yes) = match key.func() {
            Func::List => (self.digest_pref(key).offer().to_owned(), 0, false),
            Func::Min | Func::Max => {
                let n = self.our_number(key);
                (n.to_string(), n, false)
            }
            _ => {
                let b = self.our_bool(key);
                (yes_no(b), 0, b)
            }
        };
        Offer {
            key,
            value,
            num,
            yes,
            answered: false,
        }
    }

    fn digest_pref(&self, key: Key) -> DigestPref {
        if key == Key::DataDigest {
            self.prefs.data_digest
        } else {
            self.prefs.header_digest
        }
    }

    fn our_number(&self, key: Key) -> u64 {
        let p = &self.prefs;
        match key {
            Key::MaxConnections => u64::from(p.max_connections),
            Key::MaxBurst => u64::from(p.max_burst),
            Key::FirstBurst => u64::from(p.first_burst),
            Key::Time2Wait => u64::from(p.default_time2wait),
            Key::Time2Retain => u64::from(p.default_time2retain),
            Key::MaxOutR2T => u64::from(p.max_outstanding_r2t),
            Key::Erl => u64::from(p.error_recovery_level),
            // RFC 7144: level 1 is RFC 7143 compliance, all we implement.
            Key::ProtocolLevel => 1,
            _ => 0,
        }
    }

    fn our_bool(&self, key: Key) -> bool {
        let p = &self.prefs;
        match key {
            Key::InitialR2T => p.initial_r2t,
            Key::ImmediateData => p.immediate_data,
            Key::DataPduInOrder => p.data_pdu_in_order,
            Key::DataSeqInOrder => p.data_sequence_in_order,
            _ => false,
        }
    }

    fn set_number(&mut self, key: Key, n: u64) {
        let c = &mut self.cur;
        match key {
            Key::MaxConnections => c.max_connections = to_u16(n),
            Key::MaxBurst => c.max_burst = to_u32(n),
            Key::FirstBurst => c.first_burst = to_u32(n),
            Key::Time2Wait => c.default_time2wait = to_u32(n),
            Key::Time2Retain => c.default_time2retain = to_u32(n),
            Key::MaxOutR2T => c.max_outstanding_r2t = to_u32(n),
            Key::Erl => c.error_recovery_level = to_u8(n),
            _ => {}
        }
    }

    fn set_bool(&mut self, key: Key, b: bool) {
        let c = &mut self.cur;
        match key {
            Key::InitialR2T => c.initial_r2t = b,
            Key::ImmediateData => c.immediate_data = b,
            Key::DataPduInOrder => c.data_pdu_in_order = b,
            Key::DataSeqInOrder => c.data_sequence_in_order = b,
            _ => {}
        }
    }

    fn set_list(&mut self, key: Key, v: &str) {
        match key {
            Key::HeaderDigest => self.cur.header_digest = v == "CRC32C",
            Key::DataDigest => self.cur.data_digest = v == "CRC32C",
            Key::TaskReporting => self.cur.task_reporting = Some(v.to_owned()),
            _ => {}
        }
    }

    /// Keys from a Login Response (any stage). Returns the keys to send back:
    /// answers to the target's offers and NotUnderstood for unknown keys.
    /// AuthMethod and CHAP_* belong to the login code and are skipped.
    pub fn respond(
        &mut self,
        keys: &[(String, String)],
    ) -> Result<Vec<(String, String)>, NegError> {
        let mut out = Vec::new();
        for (k, v) in keys {
            let (k, v) = (k.as_str(), v.as_str());
            if k == "AuthMethod" || k.starts_with("CHAP_") {
                continue;
            }
            let key = Key::from_name(k);
            if self.is_repeat(k, v, key)? {
                continue;
            }
            let Some(key) = key else {
                match special_event(k, v) {
                    // An answer to something the login code sent: nothing to say.
                    Some(ev) => self.events.push(ev),
                    None => out.push((k.to_owned(), NOT_UNDERSTOOD.to_owned())),
                }
                continue;
            };
            let pending = self.offers.iter_mut().find(|o| o.key == key && !o.answered);
            if let Some(offer) = pending {
                offer.answered = true;
                let (value, num, yes) = (offer.value.clone(), offer.num, offer.yes);
                self.answer(key, &value, num, yes, v)?;
            } else if let Some(reply) = self.target_offer(key, v)? {
                out.push((k.to_owned(), reply));
            }
        }
        Ok(out)
    }

    /// Records `k`; true means "identical repeat of a declaration, skip it".
    fn is_repeat(&mut self, k: &str, v: &str, key: Option<Key>) -> Result<bool, NegError> {
        // Redirection and SendTargets-style answers may list several addresses.
        if key == Some(Key::TargetAddress) {
            return Ok(false);
        }
        match self.seen.get(k) {
            Some(prev) if prev == v && key.is_some_and(Key::may_repeat) => Ok(true),
            Some(_) => Err(NegError::Duplicate { key: k.to_owned() }),
            None if self.seen.len() >= MAX_KEYS => Err(NegError::TooManyKeys),
            None => {
                self.seen.insert(k.to_owned(), v.to_owned());
                Ok(false)
            }
        }
    }

    /// Checks the target's answer to one of our offers.
    fn answer(
        &mut self,
        key: Key,
        offered: &str,
        num: u64,
        yes: bool,
        v: &str,
    ) -> Result<(), NegError> {
        if let Some(ev) = special_event(key.name(), v) {
            // RFC 7143 6.2: the key is left at its default. For a digest
            // that default (None) is what the target just turned down, so
            // the login code must know (see digests_rejected).
            if v == REJECT {
                match key {
                    Key::HeaderDigest => self.header_digest_rejected = true,
                    Key::DataDigest => self.data_digest_rejected = true,
                    _ => {}
                }
            }
            self.events.push(ev);
            return Ok(());
        }
        let violation = || NegError::Violation {
            key: key.name().to_owned(),
            value: v.to_owned(),
        };
        match key.func() {
            Func::List => {
                if !offered.split(',').any(|o| o == v) {
                    return Err(NegError::NotOffered {
                        key: key.name().to_owned(),
                        value: v.to_owned(),
                    });
                }
                self.set_list(key, v);
            }
            Func::Min | Func::Max => {
                let n = number(key, v)?;
                let bad = if key.func() == Func::Min {
                    n > num
                } else {
                    n < num
                };
                if bad {
                    return Err(violation());
                }
                self.set_number(key, n);
            }
            Func::Or | Func::And => {
                let b = parse_bool(key, v)?;
                // OR offered Yes can only end Yes; AND offered No only No.
                if (key.func() == Func::Or && yes && !b) || (key.func() == Func::And && !yes && b) {
                    return Err(violation());
                }
                self.set_bool(key, b);
            }
            Func::TargetDecl | Func::InitiatorDecl | Func::Obsolete => {}
        }
        Ok(())
    }

    /// A key the target sent that answers no offer of ours: its own offer or
    /// declaration. Returns our reply, if one is due.
    fn target_offer(&mut self, key: Key, v: &str) -> Result<Option<String>, NegError> {
        if let Some(ev) = special_event(key.name(), v) {
            // Not a legal offer; there is nothing to answer, keep the default.
            self.events.push(ev);
            return Ok(None);
        }
        let func = key.func();
        if self.kind == SessionKind::Discovery && key.discovery_irrelevant() {
            return Ok(Some(IRRELEVANT.to_owned()));
        }
        let reply = match func {
            Func::TargetDecl => {
                self.declaration(key, v)?;
                return Ok(None);
            }
            // Only initiators declare these; a target echoing them changes nothing.
            Func::InitiatorDecl => return Ok(None),
            // RFC 7143 13.26: answer Reject, never NotUnderstood.
            Func::Obsolete => REJECT.to_owned(),
            Func::List => {
                let choice = v.split(',').find(|c| self.accepts(key, c));
                match choice {
                    Some(c) => {
                        self.set_list(key, c);
                        c.to_owned()
                    }
                    None => REJECT.to_owned(),
                }
            }
            Func::Min | Func::Max => {
                let n = match number(key, v) {
                    Ok(n) => n,
                    // RFC 7143 6.2: an inadmissible offer is answered Reject.
                    Err(NegError::OutOfRange { .. }) => return Ok(Some(REJECT.to_owned())),
                    Err(e) => return Err(e),
                };
                let ours = self.our_number(key);
                let r = if func == Func::Min {
                    n.min(ours)
                } else {
                    n.max(ours)
                };
                self.set_number(key, r);
                r.to_string()
            }
            Func::Or | Func::And => {
                let b = parse_bool(key, v)?;
                let ours = self.our_bool(key);
                let r = if func == Func::Or {
                    b || ours
                } else {
                    b && ours
                };
                self.set_bool(key, r);
                yes_no(r)
            }
        };
        Ok(Some(reply))
    }

    fn accepts(&self, key: Key, v: &str) -> bool {
        match key {
            // ResponseFence and FastAbort semantics are not implemented.
            Key::TaskReporting => v == "RFC3720",
            _ => self.digest_pref(key).accepts(v),
        }
    }

    fn declaration(&mut self, key: Key, v: &str) -> Result<(), NegError> {
        match key {
            Key::MaxRecvDsl => self.cur.max_xmit_dsl = to_u32(number(key, v)?),
            Key::Tpgt => self.cur.target_portal_group_tag = Some(to_u16(number(key, v)?)),
            Key::TargetAlias => self.cur.target_alias = Some(v.to_owned()),
            // Redirection addresses are the login code's business.
            _ => {}
        }
        Ok(())
    }

    /// Whether the target answered Reject to our HeaderDigest and our
    /// DataDigest offer, in that order.
    pub fn digests_rejected(&self) -> (bool, bool) {
        (self.header_digest_rejected, self.data_digest_rejected)
    }

    /// True while an offer whose answer is required has not been answered.
    pub fn pending(&self) -> bool {
        self.offers
            .iter()
            .any(|o| !o.answered && !o.answer_optional())
    }

    /// Applies the rules for unanswered offers and returns what is in effect.
    pub fn finish(mut self) -> Result<(Params, Vec<NegEvent>), NegError> {
        let unanswered: Vec<(Key, bool, bool)> = self
            .offers
            .iter()
            .filter(|o| !o.answered)
            .map(|o| (o.key, o.answer_optional(), o.yes))
            .collect();
        for (key, optional, yes) in unanswered {
            if optional {
                self.set_bool(key, yes);
            } else {
                self.events.push(NegEvent::Defaulted(key.name().to_owned()));
            }
        }
        // RFC 7143 13.14: FirstBurstLength MUST NOT exceed MaxBurstLength.
        if self.cur.first_burst > self.cur.max_burst {
            self.cur.first_burst = self.cur.max_burst;
            self.events
                .push(NegEvent::Clamped(Key::FirstBurst.name().to_owned()));
        }
        Ok((self.cur, self.events))
    }

    /// Full Feature Phase text negotiation (after an Async "parameter
    /// negotiation" request): we re-declare our MaxRecvDataSegmentLength.
    pub fn ffp_offer(params: &Params) -> Vec<(String, String)> {
        vec![(
            Key::MaxRecvDsl.name().to_owned(),
            params.max_recv_dsl.to_string(),
        )]
    }

    /// Keys from a Full Feature Phase Text Response. Only the declaratives
    /// MaxRecvDataSegmentLength and TargetAlias may change; other known keys
    /// get Reject, unknown ones NotUnderstood.
    pub fn ffp_respond(
        params: &mut Params,
        keys: &[(String, String)],
    ) -> Result<Vec<(String, String)>, NegError> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for (k, v) in keys {
            let key = Key::from_name(k);
            if key != Some(Key::TargetAddress) && !seen.insert(k.as_str()) {
                return Err(NegError::Duplicate { key: k.clone() });
            }
            if special_event(k, v).is_some() {
                continue;
            }
            let known =
                key.is_some() || k == "AuthMethod" || k == "SendTargets" || k.starts_with("CHAP_");
            match key {
                Some(Key::MaxRecvDsl) => params.max_xmit_dsl = to_u32(number(Key::MaxRecvDsl, v)?),
                Some(Key::TargetAlias) => params.target_alias = Some(v.clone()),
                Some(Key::TargetAddress) => {}
                _ if known => out.push((k.clone(), REJECT.to_owned())),
                _ => out.push((k.clone(), NOT_UNDERSTOOD.to_owned())),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn normal() -> Negotiation {
        let mut n = Negotiation::new(&Prefs::default(), SessionKind::Normal);
        n.offer();
        n
    }

    /// A typical LIO answer to our default offer.
    fn lio_answer() -> Vec<(String, String)> {
        kv(&[
            ("HeaderDigest", "None"),
            ("DataDigest", "None"),
            ("MaxConnections", "1"),
            ("InitialR2T", "No"),
            ("ImmediateData", "Yes"),
            ("MaxRecvDataSegmentLength", "8192"),
            ("MaxBurstLength", "262144"),
            ("FirstBurstLength", "65536"),
            ("DefaultTime2Wait", "2"),
            ("DefaultTime2Retain", "20"),
            ("MaxOutstandingR2T", "1"),
            ("DataPDUInOrder", "Yes"),
            ("DataSequenceInOrder", "Yes"),
            ("ErrorRecoveryLevel", "0"),
        ])
    }

    #[test]
    fn offer_normal_defaults() {
        let mut n = Negotiation::new(&Prefs::default(), SessionKind::Normal);
        assert_eq!(
            n.offer(),
            kv(&[
                ("HeaderDigest", "None"),
                ("DataDigest", "None"),
                ("MaxConnections", "1"),
                ("InitialR2T", "No"),
                ("ImmediateData", "Yes"),
                ("MaxRecvDataSegmentLength", "262144"),
                ("MaxBurstLength", "1048576"),
                ("FirstBurstLength", "262144"),
                ("DefaultTime2Wait", "2"),
                ("DefaultTime2Retain", "20"),
                ("MaxOutstandingR2T", "16"),
                ("DataPDUInOrder", "Yes"),
                ("DataSequenceInOrder", "Yes"),
                ("ErrorRecoveryLevel", "0"),
            ])
        );
        assert!(n.pending());
        // Everything is on the wire already.
        assert_eq!(n.offer(), vec![]);
    }

    #[test]
    fn offer_discovery() {
        let p = Prefs {
            header_digest: DigestPref::Any,
            data_digest: DigestPref::Crc32c,
            ..Prefs::default()
        };
        let mut n = Negotiation::new(&p, SessionKind::Discovery);
        assert_eq!(
            n.offer(),
            kv(&[
                ("HeaderDigest", "CRC32C,None"),
                ("DataDigest", "CRC32C"),
                ("MaxRecvDataSegmentLength", "262144"),
                ("DefaultTime2Wait", "2"),
                ("DefaultTime2Retain", "20"),
            ])
        );
    }

    #[test]
    fn offer_clamps_prefs() {
        let p = Prefs {
            max_recv_dsl: 100,
            max_burst: 4096,
            first_burst: 65536,
            max_outstanding_r2t: 0,
            default_time2wait: 9999,
            max_connections: 0,
            error_recovery_level: 7,
            ..Prefs::default()
        };
        let mut n = Negotiation::new(&p, SessionKind::Normal);
        let o = n.offer();
        let get = |k: &str| o.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.as_str());
        assert_eq!(get("MaxRecvDataSegmentLength"), Some("512"));
        assert_eq!(get("MaxBurstLength"), Some("4096"));
        assert_eq!(get("FirstBurstLength"), Some("4096"));
        assert_eq!(get("MaxOutstandingR2T"), Some("1"));
        assert_eq!(get("DefaultTime2Wait"), Some("3600"));
        assert_eq!(get("MaxConnections"), Some("1"));
        assert_eq!(get("ErrorRecoveryLevel"), Some("2"));
    }

    #[test]
    fn full_answer() {
        let mut n = normal();
        let mut ans = lio_answer();
        ans.push(("TargetPortalGroupTag".into(), "1".into()));
        ans.push(("TargetAlias".into(), "disk one".into()));
        assert_eq!(n.respond(&ans).unwrap(), vec![]);
        assert!(!n.pending());
        let (p, ev) = n.finish().unwrap();
        assert_eq!(ev, vec![]);
        assert_eq!(
            p,
            Params {
                max_recv_dsl: 262_144,
                max_xmit_dsl: 8192,
                max_burst: 262_144,
                first_burst: 65_536,
                initial_r2t: false,
                target_portal_group_tag: Some(1),
                target_alias: Some("disk one".into()),
                ..Params::default()
            }
        );
    }

    #[test]
    fn digest_answers() {
        let p = Prefs {
            header_digest: DigestPref::Any,
            data_digest: DigestPref::Any,
            ..Prefs::default()
        };
        let mut n = Negotiation::new(&p, SessionKind::Normal);
        n.offer();
        n.respond(&kv(&[("HeaderDigest", "CRC32C"), ("DataDigest", "None")]))
            .unwrap();
        let (p, _) = n.finish().unwrap();
        assert!(p.header_digest);
        assert!(!p.data_digest);
    }

    #[test]
    fn digest_answer_not_offered() {
        let mut n = normal();
        let e = n.respond(&kv(&[("HeaderDigest", "CRC32C")])).unwrap_err();
        assert_eq!(
            e,
            NegError::NotOffered {
                key: "HeaderDigest".into(),
                value: "CRC32C".into()
            }
        );
        // A list is not a selection.
        let mut n = Negotiation::new(
            &Prefs {
                data_digest: DigestPref::Any,
                ..Prefs::default()
            },
            SessionKind::Normal,
        );
        n.offer();
        assert!(matches!(
            n.respond(&kv(&[("DataDigest", "CRC32C,None")])),
            Err(NegError::NotOffered { .. })
        ));
    }

    #[test]
    fn min_answers() {
        let mut n = normal();
        n.respond(&kv(&[
            ("MaxBurstLength", "0x10000"),
            ("MaxOutstandingR2T", "16"),
            ("MaxConnections", "1"),
        ]))
        .unwrap();
        let (p, _) = n.finish().unwrap();
        assert_eq!(p.max_burst, 65_536);
        assert_eq!(p.max_outstanding_r2t, 16);
    }

    #[test]
    fn min_answer_above_offer() {
        let mut n = normal();
        assert_eq!(
            n.respond(&kv(&[("MaxBurstLength", "2097152")])),
            Err(NegError::Violation {
                key: "MaxBurstLength".into(),
                value: "2097152".into()
            })
        );
        let mut n = normal();
        assert!(matches!(
            n.respond(&kv(&[("ErrorRecoveryLevel", "1")])),
            Err(NegError::Violation { .. })
        ));
        let mut n = normal();
        assert!(matches!(
            n.respond(&kv(&[("MaxConnections", "2")])),
            Err(NegError::Violation { .. })
        ));
    }

    #[test]
    fn answers_out_of_range() {
        for (k, v, n) in [
            ("MaxBurstLength", "511", 511),
            ("FirstBurstLength", "0", 0),
            ("MaxOutstandingR2T", "0", 0),
            ("DefaultTime2Retain", "3601", 3601),
            ("DefaultTime2Wait", "0xffffffff", 0xffff_ffff),
            ("MaxConnections", "0", 0),
            ("ErrorRecoveryLevel", "3", 3),
        ] {
            let mut neg = normal();
            assert_eq!(
                neg.respond(&kv(&[(k, v)])),
                Err(NegError::OutOfRange {
                    key: k.into(),
                    value: n
                }),
                "{k}={v}"
            );
        }
    }

    #[test]
    fn bad_numbers() {
        for v in ["", "abc", "12a", "-1", "+5", "0x", "0xg", " 5", "1.5"] {
            let mut neg = normal();
            assert_eq!(
                neg.respond(&kv(&[("MaxBurstLength", v)])),
                Err(NegError::BadNumber {
                    key: "MaxBurstLength".into(),
                    value: v.into()
                }),
                "{v:?}"
            );
        }
    }

    #[test]
    fn max_answers() {
        let mut n = normal();
        n.respond(&kv(&[("DefaultTime2Wait", "5")])).unwrap();
        assert_eq!(n.finish().unwrap().0.default_time2wait, 5);
        let mut n = normal();
        assert!(matches!(
            n.respond(&kv(&[("DefaultTime2Wait", "1")])),
            Err(NegError::Violation { .. })
        ));
    }

    #[test]
    fn or_answers() {
        // InitialR2T offered No: either answer is fine.
        let mut n = normal();
        n.respond(&kv(&[("InitialR2T", "Yes")])).unwrap();
        assert!(n.finish().unwrap().0.initial_r2t);
        // DataPDUInOrder offered Yes: the OR can only be Yes.
        let mut n = normal();
        assert_eq!(
            n.respond(&kv(&[("DataPDUInOrder", "No")])),
            Err(NegError::Violation {
                key: "DataPDUInOrder".into(),
                value: "No".into()
            })
        );
    }

    #[test]
    fn and_answers() {
        let mut n = normal();
        n.respond(&kv(&[("ImmediateData", "No")])).unwrap();
        assert!(!n.finish().unwrap().0.immediate_data);
        let p = Prefs {
            immediate_data: false,
            ..Prefs::default()
        };
        let mut n = Negotiation::new(&p, SessionKind::Normal);
        n.offer();
        assert!(matches!(
            n.respond(&kv(&[("ImmediateData", "Yes")])),
            Err(NegError::Violation { .. })
        ));
    }

    #[test]
    fn bad_boolean() {
        let mut n = normal();
        assert_eq!(
            n.respond(&kv(&[("InitialR2T", "yes")])),
            Err(NegError::BadBoolean {
                key: "InitialR2T".into(),
                value: "yes".into()
            })
        );
    }

    #[test]
    fn special_answers_default() {
        let mut n = normal();
        n.respond(&kv(&[
            ("MaxBurstLength", "Reject"),
            ("FirstBurstLength", "Irrelevant"),
            ("MaxOutstandingR2T", "NotUnderstood"),
            ("InitialR2T", "Reject"),
        ]))
        .unwrap();
        let (p, ev) = n.finish().unwrap();
        assert_eq!(p.max_burst, 262_144);
        assert_eq!(p.first_burst, 65_536);
        assert_eq!(p.max_outstanding_r2t, 1);
        assert!(p.initial_r2t);
        assert_eq!(
            &ev[..3],
            &[
                NegEvent::Rejected("MaxBurstLength".into()),
                NegEvent::Irrelevant("FirstBurstLength".into()),
                NegEvent::NotUnderstood("MaxOutstandingR2T".into()),
            ]
        );
        assert_eq!(ev[3], NegEvent::Rejected("InitialR2T".into()));
    }

    #[test]
    fn duplicate_answer() {
        let mut n = normal();
        assert_eq!(
            n.respond(&kv(&[
                ("MaxBurstLength", "65536"),
                ("MaxBurstLength", "65536")
            ])),
            Err(NegError::Duplicate {
                key: "MaxBurstLength".into()
            })
        );
        // Across two responses as well.
        let mut n = normal();
        n.respond(&kv(&[("ImmediateData", "Yes")])).unwrap();
        assert!(matches!(
            n.respond(&kv(&[("ImmediateData", "Yes")])),
            Err(NegError::Duplicate { .. })
        ));
        // An unknown key repeated is a duplicate too.
        let mut n = normal();
        n.respond(&kv(&[("X-foo", "1")])).unwrap();
        assert!(matches!(
            n.respond(&kv(&[("X-foo", "1")])),
            Err(NegError::Duplicate { .. })
        ));
    }

    #[test]
    fn unknown_keys_not_understood() {
        let mut n = normal();
        let r = n
            .respond(&kv(&[
                ("X-com.example.foo", "1"),
                ("X#org.example.bar", "abc"),
                ("SomeFutureKey", "Yes"),
                ("MaxBurstLength", "65536"),
            ]))
            .unwrap();
        assert_eq!(
            r,
            kv(&[
                ("X-com.example.foo", "NotUnderstood"),
                ("X#org.example.bar", "NotUnderstood"),
                ("SomeFutureKey", "NotUnderstood"),
            ])
        );
    }

    #[test]
    fn special_value_for_unoffered_key_is_not_answered() {
        let mut n = normal();
        let r = n
            .respond(&kv(&[
                ("X-ours", "NotUnderstood"),
                ("InitiatorAlias", "Reject"),
            ]))
            .unwrap();
        assert_eq!(r, vec![]);
        let (_, ev) = n.finish().unwrap();
        assert!(ev.contains(&NegEvent::NotUnderstood("X-ours".into())));
        assert!(ev.contains(&NegEvent::Rejected("InitiatorAlias".into())));
    }

    #[test]
    fn target_offers_numbers() {
        let mut n = Negotiation::new(&Prefs::default(), SessionKind::Normal);
        let r = n
            .respond(&kv(&[
                ("MaxBurstLength", "65536"),
                ("FirstBurstLength", "0xffffff"),
                ("DefaultTime2Wait", "1"),
                ("DefaultTime2Retain", "60"),
                ("MaxConnections", "4"),
                ("ErrorRecoveryLevel", "2"),
                ("MaxOutstandingR2T", "8"),
                ("iSCSIProtocolLevel", "2"),
            ]))
            .unwrap();
        assert_eq!(
            r,
            kv(&[
                ("MaxBurstLength", "65536"),
                ("FirstBurstLength", "262144"),
                ("DefaultTime2Wait", "2"),
                ("DefaultTime2Retain", "20"),
                ("MaxConnections", "1"),
                ("ErrorRecoveryLevel", "0"),
                ("MaxOutstandingR2T", "8"),
                ("iSCSIProtocolLevel", "1"),
            ])
        );
        // Settled keys are not offered again.
        let o = n.offer();
        assert!(!o.iter().any(|(k, _)| k == "MaxBurstLength"));
        assert!(o.iter().any(|(k, _)| k == "InitialR2T"));
        let (p, ev) = n.finish().unwrap();
        assert_eq!(p.max_burst, 65_536);
        assert_eq!(p.first_burst, 65_536);
        assert_eq!(p.max_outstanding_r2t, 8);
        assert!(ev.contains(&NegEvent::Clamped("FirstBurstLength".into())));
    }

    #[test]
    fn target_offers_out_of_range_get_reject() {
        let mut n = Negotiation::new(&Prefs::default(), SessionKind::Normal);
        let r = n
            .respond(&kv(&[
                ("MaxBurstLength", "100"),
                ("iSCSIProtocolLevel", "32"),
                ("DefaultTime2Wait", "4000"),
            ]))
            .unwrap();
        assert_eq!(
            r,
            kv(&[
                ("MaxBurstLength", "Reject"),
                ("iSCSIProtocolLevel", "Reject"),
                ("DefaultTime2Wait", "Reject"),
            ])
        );
        assert_eq!(n.finish().unwrap().0.max_burst, 262_144);
        // Malformed is still an error.
        let mut n = Negotiation::new(&Prefs::default(), SessionKind::Normal);
        assert!(matches!(
            n.respond(&kv(&[("MaxBurstLength", "lots")])),
            Err(NegError::BadNumber { .. })
        ));
    }

    #[test]
    fn target_offers_booleans() {
        let mut n = Negotiation::new(&Prefs::default(), SessionKind::Normal);
        let r = n
            .respond(&kv(&[
                ("InitialR2T", "No"),
                ("ImmediateData", "Yes"),
                ("DataPDUInOrder", "No"),
            ]))
            .unwrap();
        // OR with our No / AND with our Yes / OR with our Yes.
        assert_eq!(
            r,
            kv(&[
                ("InitialR2T", "No"),
                ("ImmediateData", "Yes"),
                ("DataPDUInOrder", "Yes"),
            ])
        );
        let p = Prefs {
            initial_r2t: true,
            immediate_data: false,
            ..Prefs::default()
        };
        let mut n = Negotiation::new(&p, SessionKind::Normal);
        let r = n
            .respond(&kv(&[("InitialR2T", "No"), ("ImmediateData", "Yes")]))
            .unwrap();
        assert_eq!(r, kv(&[("InitialR2T", "Yes"), ("ImmediateData", "No")]));
        let (p, _) = n.finish().unwrap();
        assert!(p.initial_r2t);
        assert!(!p.immediate_data);
    }

    #[test]
    fn target_offers_lists() {
        let mut n = Negotiation::new(&Prefs::default(), SessionKind::Normal);
        let r = n
            .respond(&kv(&[
                ("HeaderDigest", "CRC32C,None"),
                ("DataDigest", "CRC32C"),
                ("TaskReporting", "ResponseFence,RFC3720"),
            ]))
            .unwrap();
        assert_eq!(
            r,
            kv(&[
                ("HeaderDigest", "None"),
                ("DataDigest", "Reject"),
                ("TaskReporting", "RFC3720"),
            ])
        );
        let (p, _) = n.finish().unwrap();
        assert!(!p.header_digest);
        assert_eq!(p.task_reporting.as_deref(), Some("RFC3720"));

        let prefs = Prefs {
            header_digest: DigestPref::Any,
            data_digest: DigestPref::Crc32c,
            ..Prefs::default()
        };
        let mut n = Negotiation::new(&prefs, SessionKind::Normal);
        let r = n
            .respond(&kv(&[
                ("HeaderDigest", "X-weird,CRC32C,None"),
                ("DataDigest", "None,CRC32C"),
                ("TaskReporting", "FastAbort"),
            ]))
            .unwrap();
        assert_eq!(
            r,
            kv(&[
                ("HeaderDigest", "CRC32C"),
                ("DataDigest", "CRC32C"),
                ("TaskReporting", "Reject"),
            ])
        );
        let (p, _) = n.finish().unwrap();
        assert!(p.header_digest && p.data_digest);
        assert_eq!(p.task_reporting, None);
    }

    #[test]
    fn obsolete_marker_keys_rejected() {
        let mut n = normal();
        let r = n
            .respond(&kv(&[
                ("IFMarker", "No"),
                ("OFMarker", "No"),
                ("IFMarkInt", "2048~65535"),
                ("OFMarkInt", "2048~65535"),
            ]))
            .unwrap();
        assert_eq!(
            r,
            kv(&[
                ("IFMarker", "Reject"),
                ("OFMarker", "Reject"),
                ("IFMarkInt", "Reject"),
                ("OFMarkInt", "Reject"),
            ])
        );
    }

    #[test]
    fn declaratives_recorded() {
        let mut n = Negotiation::new(&Prefs::default(), SessionKind::Normal);
        let r = n
            .respond(&kv(&[
                ("AuthMethod", "CHAP"),
                ("CHAP_A", "5"),
                ("CHAP_C", "0x0102"),
                ("TargetPortalGroupTag", "0x10"),
                ("TargetAlias", "alias"),
                ("TargetAddress", "10.0.0.1:3260,1"),
                ("TargetAddress", "10.0.0.2:3260,1"),
                ("SessionType", "Normal"),
                ("TargetName", "iqn.x"),
                ("MaxRecvDataSegmentLength", "65536"),
            ]))
            .unwrap();
        assert_eq!(r, vec![]);
        // Identical repeats of declarations in a later response are fine.
        n.respond(&kv(&[("TargetPortalGroupTag", "0x10")])).unwrap();
        let (p, ev) = n.finish().unwrap();
        assert_eq!(ev, vec![]);
        assert_eq!(p.target_portal_group_tag, Some(16));
        assert_eq!(p.target_alias.as_deref(), Some("alias"));
        assert_eq!(p.max_xmit_dsl, 65_536);
        // offer() was never called: our side stays at the RFC default.
        assert_eq!(p.max_recv_dsl, 8192);
    }

    #[test]
    fn declaratives_validated() {
        let mut n = normal();
        assert_eq!(
            n.respond(&kv(&[("TargetPortalGroupTag", "65536")])),
            Err(NegError::OutOfRange {
                key: "TargetPortalGroupTag".into(),
                value: 65536
            })
        );
        let mut n = normal();
        assert!(matches!(
            n.respond(&kv(&[("MaxRecvDataSegmentLength", "16777216")])),
            Err(NegError::OutOfRange { .. })
        ));
        let mut n = normal();
        n.respond(&kv(&[("TargetPortalGroupTag", "1")])).unwrap();
        assert!(matches!(
            n.respond(&kv(&[("TargetPortalGroupTag", "2")])),
            Err(NegError::Duplicate { .. })
        ));
    }

    #[test]
    fn our_mrdsl_declaration_is_not_an_offer() {
        let mut n = normal();
        n.respond(&lio_answer()).unwrap();
        let (p, ev) = n.finish().unwrap();
        assert_eq!(ev, vec![]);
        assert_eq!(p.max_recv_dsl, 262_144);
        assert_eq!(p.max_xmit_dsl, 8192);
    }

    #[test]
    fn discovery_irrelevant_keys() {
        let mut n = Negotiation::new(&Prefs::default(), SessionKind::Discovery);
        n.offer();
        let r = n
            .respond(&kv(&[
                ("HeaderDigest", "None"),
                ("MaxBurstLength", "65536"),
                ("ImmediateData", "Yes"),
                ("InitialR2T", "Yes"),
                ("MaxConnections", "1"),
                ("TaskReporting", "RFC3720"),
                ("ErrorRecoveryLevel", "0"),
            ]))
            .unwrap();
        assert_eq!(
            r,
            kv(&[
                ("MaxBurstLength", "Irrelevant"),
                ("ImmediateData", "Irrelevant"),
                ("InitialR2T", "Irrelevant"),
                ("MaxConnections", "Irrelevant"),
                ("TaskReporting", "Irrelevant"),
                ("ErrorRecoveryLevel", "0"),
            ])
        );
        let (p, _) = n.finish().unwrap();
        assert_eq!(p.max_burst, 262_144);
        assert_eq!(p.task_reporting, None);
    }

    #[test]
    fn unanswered_offers() {
        let p = Prefs {
            immediate_data: false,
            ..Prefs::default()
        };
        let mut n = Negotiation::new(&p, SessionKind::Normal);
        n.offer();
        // Answer everything that needs an answer except InitialR2T.
        n.respond(&kv(&[
            ("HeaderDigest", "None"),
            ("DataDigest", "None"),
            ("MaxConnections", "1"),
            ("MaxBurstLength", "262144"),
            ("FirstBurstLength", "65536"),
            ("DefaultTime2Wait", "2"),
            ("DefaultTime2Retain", "20"),
            ("MaxOutstandingR2T", "4"),
            ("ErrorRecoveryLevel", "0"),
        ]))
        .unwrap();
        assert!(n.pending());
        let (p, ev) = n.finish().unwrap();
        // Offered No for an OR: unanswered means the default, Yes.
        assert!(p.initial_r2t);
        // Offered No for AND, Yes for OR: decided by the offer.
        assert!(!p.immediate_data);
        assert!(p.data_pdu_in_order && p.data_sequence_in_order);
        assert_eq!(ev, vec![NegEvent::Defaulted("InitialR2T".into())]);
    }

    #[test]
    fn pending_ignores_optional_answers() {
        let p = Prefs {
            immediate_data: false,
            initial_r2t: true,
            ..Prefs::default()
        };
        let mut n = Negotiation::new(&p, SessionKind::Normal);
        n.offer();
        n.respond(&kv(&[
            ("HeaderDigest", "None"),
            ("DataDigest", "None"),
            ("MaxConnections", "1"),
            ("MaxBurstLength", "262144"),
            ("FirstBurstLength", "65536"),
            ("DefaultTime2Wait", "2"),
            ("DefaultTime2Retain", "20"),
        ]))
        .unwrap();
        assert!(n.pending());
        n.respond(&kv(&[
            ("MaxOutstandingR2T", "1"),
            ("ErrorRecoveryLevel", "0"),
        ]))
        .unwrap();
        assert!(!n.pending());
        let (_, ev) = n.finish().unwrap();
        assert_eq!(ev, vec![]);
    }

    #[test]
    fn nothing_answered_takes_defaults() {
        let mut n = normal();
        n.respond(&[]).unwrap();
        let (p, ev) = n.finish().unwrap();
        assert_eq!(
            p,
            Params {
                max_recv_dsl: 262_144,
                ..Params::default()
            }
        );
        // Both required booleans and every number are reported.
        assert!(ev.contains(&NegEvent::Defaulted("MaxBurstLength".into())));
        assert!(ev.contains(&NegEvent::Defaulted("InitialR2T".into())));
        assert!(!ev.contains(&NegEvent::Defaulted("DataPDUInOrder".into())));
    }

    #[test]
    fn first_burst_clamped() {
        let mut n = normal();
        n.respond(&kv(&[
            ("MaxBurstLength", "65536"),
            ("FirstBurstLength", "262144"),
        ]))
        .unwrap();
        let (p, ev) = n.finish().unwrap();
        assert_eq!(p.max_burst, 65_536);
        assert_eq!(p.first_burst, 65_536);
        assert!(ev.contains(&NegEvent::Clamped("FirstBurstLength".into())));
        // Target rejects MaxBurstLength (default 262144) but accepts our first burst.
        let p = Prefs {
            first_burst: 1_048_576,
            ..Prefs::default()
        };
        let mut n = Negotiation::new(&p, SessionKind::Normal);
        n.offer();
        n.respond(&kv(&[
            ("MaxBurstLength", "Reject"),
            ("FirstBurstLength", "1048576"),
        ]))
        .unwrap();
        let (p, ev) = n.finish().unwrap();
        assert_eq!(p.first_burst, 262_144);
        assert!(ev.contains(&NegEvent::Clamped("FirstBurstLength".into())));
    }

    #[test]
    fn parse_number_forms() {
        assert_eq!(parse_number("0"), Ok(0));
        assert_eq!(parse_number("8192"), Ok(8192));
        assert_eq!(parse_number("0x2000"), Ok(8192));
        assert_eq!(parse_number("0X1f"), Ok(31));
        assert_eq!(parse_number("0xFFFFFF"), Ok(16_777_215));
        assert_eq!(parse_number("0x00000000000000000001"), Ok(1));
        assert_eq!(parse_number("18446744073709551615"), Ok(u64::MAX));
        assert!(parse_number("18446744073709551616").is_err());
        assert!(parse_number("0x10000000000000000").is_err());
        for bad in ["", "0x", "x10", "0b1010", "1e3", "٣", "0x-1", "+1"] {
            assert!(parse_number(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn too_many_keys() {
        let mut n = normal();
        let keys: Vec<(String, String)> = (0..MAX_KEYS + 1)
            .map(|i| (format!("X-k{i}"), "1".to_string()))
            .collect();
        assert_eq!(n.respond(&keys), Err(NegError::TooManyKeys));
    }

    #[test]
    fn error_display_is_bounded() {
        let e = NegError::BadNumber {
            key: "MaxBurstLength".into(),
            value: "é".repeat(5000),
        };
        let s = e.to_string();
        assert!(s.len() < 120, "{}", s.len());
        assert!(s.starts_with("MaxBurstLength: bad number"));
    }

    #[test]
    fn ffp() {
        let mut params = Params {
            max_recv_dsl: 262_144,
            ..Params::default()
        };
        assert_eq!(
            Negotiation::ffp_offer(&params),
            kv(&[("MaxRecvDataSegmentLength", "262144")])
        );
        let r = Negotiation::ffp_respond(
            &mut params,
            &kv(&[
                ("MaxRecvDataSegmentLength", "0x20000"),
                ("TargetAlias", "new"),
                ("MaxBurstLength", "65536"),
                ("HeaderDigest", "CRC32C"),
                ("X-vendor", "1"),
                ("InitialR2T", "Reject"),
            ]),
        )
        .unwrap();
        assert_eq!(
            r,
            kv(&[
                ("MaxBurstLength", "Reject"),
                ("HeaderDigest", "Reject"),
                ("X-vendor", "NotUnderstood"),
            ])
        );
        assert_eq!(params.max_xmit_dsl, 131_072);
        assert_eq!(params.max_burst, 262_144);
        assert_eq!(params.target_alias.as_deref(), Some("new"));
    }

    #[test]
    fn ffp_errors() {
        let mut params = Params::default();
        assert!(matches!(
            Negotiation::ffp_respond(&mut params, &kv(&[("MaxRecvDataSegmentLength", "100")])),
            Err(NegError::OutOfRange { .. })
        ));
        assert!(matches!(
            Negotiation::ffp_respond(
                &mut params,
                &kv(&[
                    ("MaxRecvDataSegmentLength", "512"),
                    ("MaxRecvDataSegmentLength", "1024")
                ])
            ),
            Err(NegError::Duplicate { .. })
        ));
    }
}
