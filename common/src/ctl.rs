//! The control protocol between iscsictl(8) and iscsid(8): imsg messages
//! over the control socket. One request, then replies until a terminal one
//! (`OK`, `FAIL`, `END` or a single-answer reply such as `STATS` or
//! `RELOAD_RESULT`).

use std::fmt;
use std::net::SocketAddr;

use crate::config::{Chap, ChapAlgorithm, Config, DigestPref, Isid, Params, SessionType, Target};
use crate::wire::{Reader, WireError, Writer};

/// The control socket, as in base.
pub const SOCKET: &str = "/var/run/iscsid.sock";

/// Largest control message: a reload carries the whole configuration.
pub const MAX_MSG: usize = 1 << 20;

/// Message types (the imsg `type` field).
pub mod kind {
    // Requests.
    pub const RELOAD: u32 = 1;
    pub const SHOW: u32 = 2;
    pub const VSCSI_STATS: u32 = 3;
    pub const DISCOVER: u32 = 4;
    pub const LOG_VERBOSE: u32 = 5;
    pub const POLL: u32 = 6;
    // Replies.
    pub const OK: u32 = 100;
    pub const FAIL: u32 = 101;
    pub const SESSION: u32 = 102;
    pub const END: u32 = 103;
    pub const STATS: u32 = 104;
    pub const DISCOVERED: u32 = 105;
    pub const POLL_RESULT: u32 = 106;
    /// Answer to `RELOAD` that lists the blocks the daemon could not
    /// start; a daemon that predates it answers `OK`.
    pub const RELOAD_RESULT: u32 = 107;
}

/// Requests that change the daemon's state need root (checked with the
/// peer's credentials); the others only need access to the socket.
pub fn needs_root(k: u32) -> bool {
    matches!(k, kind::RELOAD | kind::DISCOVER | kind::LOG_VERBOSE)
}

/// Session states and reasons are the core's own; these give them their
/// codes on the wire.
pub use proto::initiator::{NotStarted, NotStartedReason, State as SessionState};

fn state_code(s: SessionState) -> u8 {
    use SessionState::*;
    match s {
        Idle => 0,
        Disabled => 1,
        Connecting => 2,
        LoggingIn => 3,
        LoggedIn => 4,
        LoggingOut => 5,
        Failed => 6,
        Done => 7,
    }
}

fn state_from_code(c: u8) -> Result<SessionState, WireError> {
    use SessionState::*;
    [
        Idle, Disabled, Connecting, LoggingIn, LoggedIn, LoggingOut, Failed, Done,
    ]
    .get(usize::from(c))
    .copied()
    .ok_or(WireError::BadTag("session state", c))
}

/// One session as `iscsictl show` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionInfo {
    pub name: String,
    pub discovery: bool,
    pub state: Option<SessionState>,
    pub targetname: Option<String>,
    pub portal: Option<SocketAddr>,
    pub initiatorname: String,
    pub isid: u64,
    pub tsih: u16,
    /// The vscsi(4) target number the session's LUNs appear on.
    pub vscsi_target: Option<u32>,
    /// Negotiated parameters in effect, as iSCSI keys and values.
    pub params: Vec<(String, String)>,
    /// The session's timers and recovery limits in effect, as iscsi.conf(5)
    /// keywords and values.
    pub timers: Vec<(String, String)>,
    pub luns: Vec<u32>,
    pub in_flight: u32,
    pub queued: u32,
    pub stats: SessionStats,
    pub last_error: Option<String>,
    /// Milliseconds until the next login attempt, while not connected.
    pub next_attempt_ms: Option<u64>,
}

/// The counters of a session are the core's own.
pub use proto::initiator::Stats as SessionStats;

/// vscsi(4) counters kept by the daemon, per direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VscsiStats {
    pub probes: u64,
    pub detaches: u64,
    /// Commands from the kernel, by direction (none, read, write).
    pub commands: [u64; 3],
    /// Completions by status (done, sense, reset, error).
    pub completions: [u64; 4],
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub data_reads: u64,
    pub data_writes: u64,
    /// Commands that did not complete with "done", by direction.
    pub errors: [u64; 3],
}

/// A target found by SendTargets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    pub targetname: String,
    /// TargetAddress values ("addr:port,tpgt"); empty means the portal asked.
    pub addresses: Vec<String>,
}

/// Answer to `POLL`: are the configured sessions settled?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PollResult {
    pub sessions: u32,
    pub disabled: u32,
    pub logged_in: u32,
    pub failed: u32,
    pub connecting: u32,
}

impl PollResult {
    /// Every enabled session is logged in or has failed at least once.
    pub fn settled(&self) -> bool {
        // Counts come from the daemon; a sum in u64 cannot overflow.
        u64::from(self.logged_in) + u64::from(self.failed) + u64::from(self.disabled)
            >= u64::from(self.sessions)
    }
}

fn reason_code(r: NotStartedReason) -> u8 {
    match r {
        NotStartedReason::NoFreeVscsiTarget => 0,
    }
}

fn reason_from_code(c: u8) -> Result<NotStartedReason, WireError> {
    match c {
        0 => Ok(NotStartedReason::NoFreeVscsiTarget),
        v => Err(WireError::BadTag("not-started reason", v)),
    }
}

/// `RELOAD_RESULT`: the configuration was taken, but these blocks were
/// not started.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReloadResult {
    pub not_started: Vec<NotStarted>,
}

/// `iscsictl discover`: a one-off discovery session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoverRequest {
    pub addr: SocketAddr,
    pub initiatorname: Option<String>,
    pub params: Params,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtlError {
    Wire(WireError),
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CtlError::Wire(e) => write!(f, "bad control message: {e}"),
        }
    }
}

impl std::error::Error for CtlError {}

impl From<WireError> for CtlError {
    fn from(e: WireError) -> Self {
        CtlError::Wire(e)
    }
}

fn digest_code(d: Option<DigestPref>) -> u8 {
    match d {
        None => 0,
        Some(DigestPref::None) => 1,
        Some(DigestPref::Crc32c) => 2,
        Some(DigestPref::Any) => 3,
    }
}

fn digest_from(c: u8) -> Result<Option<DigestPref>, WireError> {
    Ok(match c {
        0 => None,
        1 => Some(DigestPref::None),
        2 => Some(DigestPref::Crc32c),
        3 => Some(DigestPref::Any),
        v => return Err(WireError::BadTag("digest", v)),
    })
}

fn put_chap(w: &mut Writer, c: Option<&Chap>) {
    match c {
        Some(c) => {
            w.u8(1).str(&c.name).bytes(&c.secret);
        }
        None => {
            w.u8(0);
        }
    }
}

fn get_chap(r: &mut Reader<'_>) -> Result<Option<Chap>, WireError> {
    match r.u8()? {
        0 => Ok(None),
        1 => Ok(Some(Chap {
            name: r.str()?,
            secret: r.bytes()?.to_vec(),
        })),
        v => Err(WireError::BadTag("chap", v)),
    }
}

pub fn put_params(w: &mut Writer, p: &Params) {
    put_chap(w, p.chap.as_ref());
    put_chap(w, p.chap_mutual.as_ref());
    w.u8(match p.chap_algorithm {
        None => 0,
        Some(ChapAlgorithm::Md5) => 1,
        Some(ChapAlgorithm::Sha256) => 2,
        Some(ChapAlgorithm::Any) => 3,
    });
    w.u8(digest_code(p.header_digest))
        .u8(digest_code(p.data_digest))
        .opt_u32(p.max_recv_data_segment_length)
        .opt_u32(p.max_burst_length)
        .opt_u32(p.first_burst_length)
        .opt_u32(p.max_outstanding_r2t)
        .opt_bool(p.initial_r2t)
        .opt_bool(p.immediate_data)
        .opt_u32(p.default_time2wait)
        .opt_u32(p.default_time2retain)
        .opt_u32(p.queue_depth)
        .opt_u32(p.login_timeout)
        .opt_u32(p.nop_interval)
        .opt_u32(p.nop_timeout)
        .opt_u32(p.command_timeout)
        .opt_u32(p.tmf_timeout)
        .opt_u32(p.replacement_timeout)
        .opt_u32(p.reconnect_max)
        .opt_u32(p.reissue_limit);
}

pub fn get_params(r: &mut Reader<'_>) -> Result<Params, WireError> {
    let chap = get_chap(r)?;
    let chap_mutual = get_chap(r)?;
    let chap_algorithm = match r.u8()? {
        0 => None,
        1 => Some(ChapAlgorithm::Md5),
        2 => Some(ChapAlgorithm::Sha256),
        3 => Some(ChapAlgorithm::Any),
        v => return Err(WireError::BadTag("chap algorithm", v)),
    };
    Ok(Params {
        chap,
        chap_mutual,
        chap_algorithm,
        header_digest: digest_from(r.u8()?)?,
        data_digest: digest_from(r.u8()?)?,
        max_recv_data_segment_length: r.opt_u32()?,
        max_burst_length: r.opt_u32()?,
        first_burst_length: r.opt_u32()?,
        max_outstanding_r2t: r.opt_u32()?,
        initial_r2t: r.opt_bool()?,
        immediate_data: r.opt_bool()?,
        default_time2wait: r.opt_u32()?,
        default_time2retain: r.opt_u32()?,
        queue_depth: r.opt_u32()?,
        login_timeout: r.opt_u32()?,
        nop_interval: r.opt_u32()?,
        nop_timeout: r.opt_u32()?,
        command_timeout: r.opt_u32()?,
        tmf_timeout: r.opt_u32()?,
        replacement_timeout: r.opt_u32()?,
        reconnect_max: r.opt_u32()?,
        reissue_limit: r.opt_u32()?,
    })
}

fn put_target(w: &mut Writer, t: &Target) {
    w.str(&t.name)
        .u32(u32::try_from(t.line).unwrap_or(u32::MAX))
        .bool(t.disabled)
        .bool(t.session_type == SessionType::Discovery)
        .opt_str(t.targetname.as_deref())
        .opt_str(t.initiatorname.as_deref())
        .opt_sockaddr(t.targetaddr.as_ref())
        .opt_ip(t.initiatoraddr.as_ref());
    put_params(w, &t.params);
}

fn get_target(r: &mut Reader<'_>) -> Result<Target, WireError> {
    Ok(Target {
        name: r.str()?,
        line: usize::try_from(r.u32()?).unwrap_or(usize::MAX),
        disabled: r.bool()?,
        session_type: if r.bool()? {
            SessionType::Discovery
        } else {
            SessionType::Normal
        },
        targetname: r.opt_str()?,
        initiatorname: r.opt_str()?,
        targetaddr: r.opt_sockaddr()?,
        initiatoraddr: r.opt_ip()?,
        params: get_params(r)?,
    })
}

/// `RELOAD`: the whole configuration.
pub fn encode_config(c: &Config) -> Vec<u8> {
    let mut w = Writer::new();
    match c.isid {
        Some(i) => w.u8(1).u32(i.base).u16(i.qual),
        None => w.u8(0),
    };
    w.opt_str(c.initiatorname.as_deref());
    w.u32(u32::try_from(c.targets.len()).unwrap_or(u32::MAX));
    for t in &c.targets {
        put_target(&mut w, t);
    }
    put_params(&mut w, &c.defaults);
    w.into_inner()
}

pub fn decode_config(b: &[u8]) -> Result<Config, CtlError> {
    let mut r = Reader::new(b);
    let isid = match r.u8()? {
        0 => None,
        1 => Some(Isid {
            base: r.u32()?,
            qual: r.u16()?,
        }),
        v => return Err(WireError::BadTag("isid", v).into()),
    };
    let initiatorname = r.opt_str()?;
    let n = r.u32()?;
    let mut targets = Vec::new();
    for _ in 0..n {
        targets.push(get_target(&mut r)?);
    }
    let defaults = get_params(&mut r)?;
    r.end()?;
    Ok(Config {
        isid,
        initiatorname,
        targets,
        defaults,
    })
}

impl DiscoverRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.sockaddr(&self.addr)
            .opt_str(self.initiatorname.as_deref());
        put_params(&mut w, &self.params);
        w.into_inner()
    }

    pub fn decode(b: &[u8]) -> Result<DiscoverRequest, CtlError> {
        let mut r = Reader::new(b);
        let d = DiscoverRequest {
            addr: r.sockaddr()?,
            initiatorname: r.opt_str()?,
            params: get_params(&mut r)?,
        };
        r.end()?;
        Ok(d)
    }
}

impl SessionInfo {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.str(&self.name)
            .bool(self.discovery)
            .u8(self.state.map_or(0xff, state_code))
            .opt_str(self.targetname.as_deref())
            .opt_sockaddr(self.portal.as_ref())
            .str(&self.initiatorname)
            .u64(self.isid)
            .u16(self.tsih)
            .opt_u32(self.vscsi_target)
            .u32(u32::try_from(self.params.len()).unwrap_or(u32::MAX));
        for (k, v) in &self.params {
            w.str(k).str(v);
        }
        w.u32(u32::try_from(self.timers.len()).unwrap_or(u32::MAX));
        for (k, v) in &self.timers {
            w.str(k).str(v);
        }
        w.u32(u32::try_from(self.luns.len()).unwrap_or(u32::MAX));
        for l in &self.luns {
            w.u32(*l);
        }
        w.u32(self.in_flight).u32(self.queued);
        for v in self.stats.values() {
            w.u64(v);
        }
        w.opt_str(self.last_error.as_deref())
            .opt_u64(self.next_attempt_ms);
        w.into_inner()
    }

    pub fn decode(b: &[u8]) -> Result<SessionInfo, CtlError> {
        let mut r = Reader::new(b);
        let name = r.str()?;
        let discovery = r.bool()?;
        let state = match r.u8()? {
            0xff => None,
            c => Some(state_from_code(c)?),
        };
        let targetname = r.opt_str()?;
        let portal = r.opt_sockaddr()?;
        let initiatorname = r.str()?;
        let isid = r.u64()?;
        let tsih = r.u16()?;
        let vscsi_target = r.opt_u32()?;
        let mut params = Vec::new();
        for _ in 0..r.u32()? {
            params.push((r.str()?, r.str()?));
        }
        let mut timers = Vec::new();
        for _ in 0..r.u32()? {
            timers.push((r.str()?, r.str()?));
        }
        let mut luns = Vec::new();
        for _ in 0..r.u32()? {
            luns.push(r.u32()?);
        }
        let in_flight = r.u32()?;
        let queued = r.u32()?;
        let mut f = [0u64; 16];
        for v in &mut f {
            *v = r.u64()?;
        }
        let s = SessionInfo {
            name,
            discovery,
            state,
            targetname,
            portal,
            initiatorname,
            isid,
            tsih,
            vscsi_target,
            params,
            timers,
            luns,
            in_flight,
            queued,
            stats: SessionStats::from_values(f),
            last_error: r.opt_str()?,
            next_attempt_ms: r.opt_u64()?,
        };
        r.end()?;
        Ok(s)
    }
}

impl VscsiStats {
    fn fields(&self) -> [u64; 17] {
        let s = self;
        [
            s.probes,
            s.detaches,
            s.commands[0],
            s.commands[1],
            s.commands[2],
            s.completions[0],
            s.completions[1],
            s.completions[2],
            s.completions[3],
            s.bytes_read,
            s.bytes_written,
            s.data_reads,
            s.data_writes,
            s.errors[0],
            s.errors[1],
            s.errors[2],
            0,
        ]
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        for v in self.fields() {
            w.u64(v);
        }
        w.into_inner()
    }

    pub fn decode(b: &[u8]) -> Result<VscsiStats, CtlError> {
        let mut r = Reader::new(b);
        let mut f = [0u64; 17];
        for v in f.iter_mut() {
            *v = r.u64()?;
        }
        r.end()?;
        Ok(VscsiStats {
            probes: f[0],
            detaches: f[1],
            commands: [f[2], f[3], f[4]],
            completions: [f[5], f[6], f[7], f[8]],
            bytes_read: f[9],
            bytes_written: f[10],
            data_reads: f[11],
            data_writes: f[12],
            errors: [f[13], f[14], f[15]],
        })
    }
}

impl Discovered {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.str(&self.targetname)
            .u32(u32::try_from(self.addresses.len()).unwrap_or(u32::MAX));
        for a in &self.addresses {
            w.str(a);
        }
        w.into_inner()
    }

    pub fn decode(b: &[u8]) -> Result<Discovered, CtlError> {
        let mut r = Reader::new(b);
        let targetname = r.str()?;
        let mut addresses = Vec::new();
        for _ in 0..r.u32()? {
            addresses.push(r.str()?);
        }
        r.end()?;
        Ok(Discovered {
            targetname,
            addresses,
        })
    }
}

impl ReloadResult {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(u32::try_from(self.not_started.len()).unwrap_or(u32::MAX));
        for n in &self.not_started {
            w.str(&n.name).u8(reason_code(n.reason));
        }
        w.into_inner()
    }

    pub fn decode(b: &[u8]) -> Result<ReloadResult, CtlError> {
        let mut r = Reader::new(b);
        let mut not_started = Vec::new();
        // No capacity from the count: it comes from the peer.
        for _ in 0..r.u32()? {
            not_started.push(NotStarted {
                name: r.str()?,
                reason: reason_from_code(r.u8()?)?,
            });
        }
        r.end()?;
        Ok(ReloadResult { not_started })
    }
}

impl PollResult {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(self.sessions)
            .u32(self.disabled)
            .u32(self.logged_in)
            .u32(self.failed)
            .u32(self.connecting);
        w.into_inner()
    }

    pub fn decode(b: &[u8]) -> Result<PollResult, CtlError> {
        let mut r = Reader::new(b);
        let p = PollResult {
            sessions: r.u32()?,
            disabled: r.u32()?,
            logged_in: r.u32()?,
            failed: r.u32()?,
            connecting: r.u32()?,
        };
        r.end()?;
        Ok(p)
    }
}

/// `LOG_VERBOSE` payload.
pub fn encode_bool(v: bool) -> Vec<u8> {
    vec![u8::from(v)]
}

pub fn decode_bool(b: &[u8]) -> Result<bool, CtlError> {
    let mut r = Reader::new(b);
    let v = r.bool()?;
    r.end()?;
    Ok(v)
}

/// `FAIL` payload: a message for the user.
pub fn decode_text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;

    #[test]
    fn config_round_trip() {
        let text = "isid en 5 7\ninitiatorname \"iqn.2001-04.com.example:y\"\nheaderdigest crc32c\n\
                    nopinterval 4\nreplacementtimeout 0\n\
                    target a {\n tmftimeout 9\n reissuelimit 1\n targetaddr 127.0.0.1 port 3261\n targetname \"iqn.2001-04.com.example:a\"\n\
                    chap name alice secret \"secretsecret12\"\n chap mutual name tgt secret s3cr3t\n\
                    initialr2t no\n queuedepth 8\n}\n\
                    target d {\n discovery\n disabled\n targetaddr ::1\n}\n";
        let cfg = parse_str(text, "t").unwrap();
        // The timers travel too, globally and per block.
        let a = &cfg.targets[0].params;
        assert_eq!(
            (a.nop_interval, a.tmf_timeout, a.reissue_limit),
            (Some(4), Some(9), Some(1))
        );
        assert_eq!(cfg.defaults.replacement_timeout, Some(0));
        let b = encode_config(&cfg);
        assert_eq!(decode_config(&b).unwrap(), cfg);
        // Every truncation is an error, never a panic.
        for n in 0..b.len() {
            assert!(decode_config(&b[..n]).is_err(), "prefix {n}");
        }
        let mut long = b.clone();
        long.push(0);
        assert_eq!(
            decode_config(&long),
            Err(CtlError::Wire(WireError::Trailing(1)))
        );
    }

    #[test]
    fn replies_round_trip() {
        let s = SessionInfo {
            name: "disk".into(),
            state: Some(SessionState::LoggedIn),
            portal: Some("[::1]:3260".parse().unwrap()),
            params: vec![("MaxBurstLength".into(), "262144".into())],
            timers: vec![
                ("logintimeout".into(), "15".into()),
                ("nopinterval".into(), "4".into()),
            ],
            luns: vec![0, 1, 300],
            last_error: Some("x".into()),
            ..SessionInfo::default()
        };
        assert_eq!(SessionInfo::decode(&s.encode()).unwrap(), s);
        assert_eq!(s.timers[1], ("nopinterval".into(), "4".into()));
        let b = s.encode();
        for n in 0..b.len() {
            assert!(SessionInfo::decode(&b[..n]).is_err(), "prefix {n}");
        }
        // The timers follow the parameters on the wire.
        let no_timers = SessionInfo {
            timers: Vec::new(),
            ..s.clone()
        };
        let pairs: usize = s.timers.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
        assert_eq!(b.len(), no_timers.encode().len() + pairs);
        let st = VscsiStats {
            probes: 1,
            commands: [1, 2, 3],
            completions: [4, 5, 6, 7],
            errors: [0, 8, 9],
            ..VscsiStats::default()
        };
        assert_eq!(VscsiStats::decode(&st.encode()).unwrap(), st);
        let d = Discovered {
            targetname: "iqn.a".into(),
            addresses: vec!["1.2.3.4:3260,1".into()],
        };
        assert_eq!(Discovered::decode(&d.encode()).unwrap(), d);
        let p = PollResult {
            sessions: 3,
            logged_in: 2,
            failed: 1,
            ..PollResult::default()
        };
        assert!(p.settled());
        assert_eq!(PollResult::decode(&p.encode()).unwrap(), p);
        let busy = PollResult {
            sessions: 3,
            logged_in: 1,
            failed: 1,
            connecting: 1,
            ..PollResult::default()
        };
        assert!(!busy.settled());
        assert!(decode_bool(&[7]).is_err());
        // A state code from the future is refused.
        let mut b = s.encode();
        b[4 + 4 + 1] = 42;
        assert!(SessionInfo::decode(&b).is_err());
    }

    #[test]
    fn reload_result_round_trip() {
        let empty = ReloadResult::default();
        assert_eq!(empty.encode(), [0, 0, 0, 0]);
        assert_eq!(ReloadResult::decode(&empty.encode()).unwrap(), empty);
        let r = ReloadResult {
            not_started: vec![
                NotStarted {
                    name: "disk9".into(),
                    reason: NotStartedReason::NoFreeVscsiTarget,
                },
                NotStarted {
                    name: "lab/iqn.2001-04.com.example:x".into(),
                    reason: NotStartedReason::NoFreeVscsiTarget,
                },
            ],
        };
        let b = r.encode();
        assert_eq!(ReloadResult::decode(&b).unwrap(), r);
        for n in 0..b.len() {
            assert!(ReloadResult::decode(&b[..n]).is_err(), "prefix {n}");
        }
        // count, then "disk9" with its u32 length, then the reason code.
        assert_eq!(&b[..4], [0, 0, 0, 2]);
        let reason_at = 4 + 4 + "disk9".len();
        assert_eq!(b[reason_at], 0);
        let mut future = b.clone();
        future[reason_at] = 9;
        assert_eq!(
            ReloadResult::decode(&future),
            Err(CtlError::Wire(WireError::BadTag("not-started reason", 9)))
        );
        // A huge count with nothing behind it is an error, not an
        // allocation.
        assert!(ReloadResult::decode(&[0xff, 0xff, 0xff, 0xff]).is_err());
        assert_eq!(
            NotStartedReason::NoFreeVscsiTarget.to_string(),
            "no free vscsi target"
        );
    }

    #[test]
    fn reply_kinds_are_distinct() {
        let mut all = [
            kind::RELOAD,
            kind::SHOW,
            kind::VSCSI_STATS,
            kind::DISCOVER,
            kind::LOG_VERBOSE,
            kind::POLL,
            kind::OK,
            kind::FAIL,
            kind::SESSION,
            kind::END,
            kind::STATS,
            kind::DISCOVERED,
            kind::POLL_RESULT,
            kind::RELOAD_RESULT,
        ];
        all.sort_unstable();
        assert!(all.windows(2).all(|w| w[0] != w[1]), "{all:?}");
        assert!(!needs_root(kind::RELOAD_RESULT));
    }

    #[test]
    fn poll_result_settled_does_not_overflow() {
        // Found by regress/fuzz (ctl): counts whose sum passes u32::MAX.
        let b = [
            0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let p = PollResult::decode(&b).unwrap();
        assert!(p.settled());
    }

    #[test]
    fn root_only_requests() {
        assert!(needs_root(kind::RELOAD));
        assert!(needs_root(kind::DISCOVER));
        assert!(needs_root(kind::LOG_VERBOSE));
        assert!(!needs_root(kind::SHOW));
        assert!(!needs_root(kind::VSCSI_STATS));
        assert!(!needs_root(kind::POLL));
    }
}
