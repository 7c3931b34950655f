//! One configured session as the engine keeps it: its configuration, its
//! vscsi target, the TCP connection and the sans-IO `Session` on it, held
//! commands across reconnects, and the reconnect schedule.

use std::collections::{BTreeSet, VecDeque};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use common::config::{self, ChapAlgorithm, SessionType, Target};
use common::ctl::{SessionInfo, SessionState};
use mio::net::TcpStream;
use mio::Token;
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrStorage};

use proto::chap::{ChapAlg, ChapConfig};
use proto::login::LoginConfig;
use proto::negotiate::{self, Params, Prefs, SessionKind};
use proto::session::{Session, SessionConfig, Timeouts};
use proto::task::ScsiTask;

/// How long commands wait for a lost session to come back before they go
/// back to the kernel with XS_RESET.
pub const REPLACEMENT_TIMEOUT: Duration = Duration::from_secs(30);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
const DEFAULT_QUEUE_DEPTH: u32 = 64;
/// Bytes queued for a target above which we stop reading from it.
const TX_HIGH: usize = 32 << 20;

/// The TCP connection and the protocol state on it.
pub struct Conn {
    pub stream: TcpStream,
    pub token: Token,
    /// connect(2) has finished.
    pub connected: bool,
    pub session: Session,
    pub addr: SocketAddr,
}

/// Why a session is going away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Removed from the config (or disabled): log out, detach, forget.
    Remove,
    /// Config changed: log out and log in again with the new one.
    Restart,
    /// The daemon is stopping.
    Shutdown,
}

pub struct Sess {
    pub name: String,
    pub cfg: Target,
    pub vscsi_target: Option<u32>,
    pub conn: Option<Conn>,
    pub state: SessionState,
    pub retry_at: Option<Instant>,
    pub backoff: Duration,
    /// Commands waiting for a connection (reissued after login).
    pub held: VecDeque<ScsiTask>,
    pub held_deadline: Option<Instant>,
    /// Where the next connection goes if not the configured portal
    /// (a temporary login redirect).
    pub redirect: Option<SocketAddr>,
    pub ending: Option<Ending>,
    /// A control client waiting for this (one-off discovery) session.
    pub waiter: Option<Token>,
    /// `iscsictl discover`: forget the session once it is over.
    pub oneoff: bool,
    /// The discovery block that created this session.
    pub parent: Option<String>,
    pub params: Option<Params>,
    pub tsih: u16,
    pub luns: BTreeSet<u32>,
    pub commands: u64,
    pub errors: u64,
    pub logins: u64,
    pub last_error: Option<String>,
    pub isid: [u8; 6],
    /// Offer only CHAP_A=5: set after a SHA-256 login failed (tgt takes
    /// CHAP_A=7 for SHA-1, for one) until the configuration changes.
    pub chap_md5_only: bool,
    /// Kernel tag -> connections a command has gone down with.
    pub reissued: std::collections::HashMap<u32, u8>,
    /// Where a permanent login redirect sent us (kept out of `cfg`, which
    /// must stay what iscsi.conf says so that reloads compare equal).
    pub moved_to: Option<SocketAddr>,
}

impl Sess {
    pub fn new(cfg: Target, isid: [u8; 6], vscsi_target: Option<u32>) -> Sess {
        let state = if cfg.disabled {
            SessionState::Disabled
        } else {
            SessionState::Idle
        };
        Sess {
            name: cfg.name.clone(),
            cfg,
            vscsi_target,
            conn: None,
            state,
            retry_at: None,
            backoff: BACKOFF_MIN,
            held: VecDeque::new(),
            held_deadline: None,
            redirect: None,
            ending: None,
            waiter: None,
            oneoff: false,
            parent: None,
            params: None,
            tsih: 0,
            luns: BTreeSet::new(),
            commands: 0,
            errors: 0,
            logins: 0,
            last_error: None,
            isid,
            chap_md5_only: false,
            reissued: std::collections::HashMap::new(),
            moved_to: None,
        }
    }

    /// A CHAP login that failed while SHA-256 was on offer is retried at
    /// once with MD5 only; returns true if that is what happens now.
    pub fn chap_fallback(&mut self, now: Instant) -> bool {
        let p = &self.cfg.params;
        let any = matches!(p.chap_algorithm, None | Some(ChapAlgorithm::Any));
        if p.chap.is_none() || !any || self.chap_md5_only || self.state != SessionState::LoggingIn {
            return false;
        }
        log::info!(
            "{}: CHAP login failed with SHA-256 offered, retrying with MD5 only",
            self.name
        );
        self.chap_md5_only = true;
        self.state = SessionState::Failed;
        self.retry_at = Some(now);
        true
    }

    pub fn discovery(&self) -> bool {
        self.cfg.session_type == SessionType::Discovery
    }

    pub fn kind(&self) -> SessionKind {
        if self.discovery() {
            SessionKind::Discovery
        } else {
            SessionKind::Normal
        }
    }

    pub fn portal(&self) -> Option<SocketAddr> {
        self.redirect.or(self.moved_to).or(self.cfg.targetaddr)
    }

    pub fn logged_in(&self) -> bool {
        self.state == SessionState::LoggedIn
    }

    /// Schedules the next attempt, doubling the wait each time (with jitter
    /// so that many sessions do not reconnect in lockstep).
    pub fn schedule_retry(&mut self, now: Instant, permanent: bool) {
        let base = if permanent { BACKOFF_MAX } else { self.backoff };
        let jitter =
            Duration::from_millis(u64::from(random_u16()) % (base.as_millis() as u64 / 4 + 1));
        self.retry_at = Some(now + base + jitter);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    /// Opens a non-blocking TCP connection and starts the login on it.
    pub fn connect(&mut self, token: Token, now: Instant, initiatorname: &str) -> io::Result<()> {
        let addr = self
            .portal()
            .ok_or_else(|| io::Error::other("no targetaddr"))?;
        let stream = tcp_connect(addr, self.cfg.initiatoraddr)?;
        let cfg = self.session_config(initiatorname);
        let session = Session::new(cfg, now, random_33());
        self.conn = Some(Conn {
            stream,
            token,
            connected: false,
            session,
            addr,
        });
        self.state = SessionState::Connecting;
        self.retry_at = None;
        Ok(())
    }

    fn session_config(&self, default_initiatorname: &str) -> SessionConfig {
        let p = &self.cfg.params;
        let chap = p.chap.as_ref().map(|c| ChapConfig {
            name: c.name.clone(),
            secret: c.secret.clone(),
            mutual: p
                .chap_mutual
                .as_ref()
                .map(|m| (m.name.clone(), m.secret.clone())),
            algs: match p.chap_algorithm {
                _ if self.chap_md5_only => vec![ChapAlg::Md5],
                Some(ChapAlgorithm::Md5) => vec![ChapAlg::Md5],
                Some(ChapAlgorithm::Sha256) => vec![ChapAlg::Sha256],
                Some(ChapAlgorithm::Any) | None => vec![ChapAlg::Sha256, ChapAlg::Md5],
            },
        });
        let r = random_33();
        SessionConfig {
            login: LoginConfig {
                isid: self.isid,
                tsih: 0,
                cid: u16::from_be_bytes([r[0], r[1]]),
                itt: u32::from_be_bytes([r[2], r[3], r[4], r[5]]) & 0x7fff_ffff,
                cmdsn: u32::from_be_bytes([r[6], r[7], r[8], r[9]]),
                initiatorname: self
                    .cfg
                    .initiatorname
                    .clone()
                    .unwrap_or_else(|| default_initiatorname.to_owned()),
                targetname: if self.discovery() {
                    None
                } else {
                    self.cfg.targetname.clone()
                },
                kind: self.kind(),
                prefs: prefs(p),
                chap,
            },
            queue_depth: p.queue_depth.unwrap_or(DEFAULT_QUEUE_DEPTH),
            timeouts: Timeouts::default(),
        }
    }

    /// Moves bytes between the socket and the session. Returns an error
    /// when the connection is finished (EOF or a socket error).
    pub fn io(&mut self, now: Instant) -> io::Result<()> {
        let Some(c) = self.conn.as_mut() else {
            return Ok(());
        };
        if !c.connected {
            match c.stream.take_error()? {
                Some(e) => return Err(e),
                None => match c.stream.peer_addr() {
                    Ok(_) => {
                        c.connected = true;
                        c.stream.set_nodelay(true)?;
                        self.state = SessionState::LoggingIn;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                    Err(e) => return Err(e),
                },
            }
        }
        // Reading stops while too much waits to be sent (a target flooding
        // R2Ts but not reading must not grow our buffer without end), and
        // goes on once a flush makes room: the writable event brings us back.
        loop {
            let mut drained = false;
            while self
                .conn
                .as_ref()
                .is_some_and(|c| c.session.tx_data().len() < TX_HIGH)
            {
                let Some(c) = self.conn.as_mut() else { break };
                let buf = c.session.rx_space(256 * 1024);
                match c.stream.read(buf) {
                    Ok(0) => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "connection closed by target",
                        ))
                    }
                    Ok(n) => c.session.rx_filled(n, now),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        drained = true;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            self.flush()?;
            let full = self
                .conn
                .as_ref()
                .is_some_and(|c| c.session.tx_data().len() >= TX_HIGH);
            if drained || full {
                return Ok(());
            }
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        let Some(c) = self.conn.as_mut() else {
            return Ok(());
        };
        if !c.connected {
            return Ok(());
        }
        while !c.session.tx_data().is_empty() {
            match c.stream.write(c.session.tx_data()) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0")),
                Ok(n) => c.session.tx_advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    pub fn info(&self, initiatorname: &str) -> SessionInfo {
        let mut params = Vec::new();
        if let (Some(p), true) = (&self.params, self.logged_in()) {
            params = describe_params(p);
        }
        let (in_flight, queued) = match &self.conn {
            Some(c) => (c.session.in_flight(), c.session.queued() + self.held.len()),
            None => (0, self.held.len()),
        };
        let mut isid = [0u8; 8];
        isid[2..].copy_from_slice(&self.isid);
        SessionInfo {
            name: self.name.clone(),
            discovery: self.discovery(),
            state: Some(self.state),
            targetname: self.cfg.targetname.clone(),
            portal: self.conn.as_ref().map(|c| c.addr).or(self.portal()),
            initiatorname: self
                .cfg
                .initiatorname
                .clone()
                .unwrap_or_else(|| initiatorname.to_owned()),
            isid: u64::from_be_bytes(isid),
            tsih: self.tsih,
            vscsi_target: self.vscsi_target,
            params,
            luns: self.luns.iter().copied().collect(),
            in_flight: in_flight as u32,
            queued: queued as u32,
            commands: self.commands,
            errors: self.errors,
            logins: self.logins,
            last_error: self.last_error.clone(),
        }
    }
}

fn yn(b: bool) -> String {
    if b { "Yes" } else { "No" }.to_owned()
}

fn digest(b: bool) -> String {
    if b { "CRC32C" } else { "None" }.to_owned()
}

pub fn describe_params(p: &Params) -> Vec<(String, String)> {
    let mut v = vec![
        ("HeaderDigest".to_owned(), digest(p.header_digest)),
        ("DataDigest".to_owned(), digest(p.data_digest)),
        (
            "MaxRecvDataSegmentLength".to_owned(),
            p.max_recv_dsl.to_string(),
        ),
        (
            "MaxXmitDataSegmentLength".to_owned(),
            p.max_xmit_dsl.to_string(),
        ),
        ("MaxBurstLength".to_owned(), p.max_burst.to_string()),
        ("FirstBurstLength".to_owned(), p.first_burst.to_string()),
        ("InitialR2T".to_owned(), yn(p.initial_r2t)),
        ("ImmediateData".to_owned(), yn(p.immediate_data)),
        (
            "MaxOutstandingR2T".to_owned(),
            p.max_outstanding_r2t.to_string(),
        ),
        (
            "DefaultTime2Wait".to_owned(),
            p.default_time2wait.to_string(),
        ),
        (
            "DefaultTime2Retain".to_owned(),
            p.default_time2retain.to_string(),
        ),
        (
            "ErrorRecoveryLevel".to_owned(),
            p.error_recovery_level.to_string(),
        ),
    ];
    if let Some(t) = p.target_portal_group_tag {
        v.push(("TargetPortalGroupTag".to_owned(), t.to_string()));
    }
    if let Some(a) = &p.target_alias {
        v.push(("TargetAlias".to_owned(), a.clone()));
    }
    v
}

/// Our wishes from iscsi.conf over our defaults.
pub fn prefs(p: &config::Params) -> Prefs {
    let d = Prefs::default();
    let digest = |x: Option<config::DigestPref>| match x {
        None | Some(config::DigestPref::None) => negotiate::DigestPref::None,
        Some(config::DigestPref::Crc32c) => negotiate::DigestPref::Crc32c,
        Some(config::DigestPref::Any) => negotiate::DigestPref::Any,
    };
    let max_burst = p.max_burst_length.unwrap_or(d.max_burst);
    Prefs {
        header_digest: digest(p.header_digest),
        data_digest: digest(p.data_digest),
        max_recv_dsl: p.max_recv_data_segment_length.unwrap_or(d.max_recv_dsl),
        max_burst,
        first_burst: p.first_burst_length.unwrap_or(d.first_burst.min(max_burst)),
        initial_r2t: p.initial_r2t.unwrap_or(d.initial_r2t),
        immediate_data: p.immediate_data.unwrap_or(d.immediate_data),
        max_outstanding_r2t: p.max_outstanding_r2t.unwrap_or(d.max_outstanding_r2t),
        default_time2wait: p.default_time2wait.unwrap_or(d.default_time2wait),
        default_time2retain: p.default_time2retain.unwrap_or(d.default_time2retain),
        ..d
    }
}

/// A non-blocking connect, bound to `local` first if configured.
fn tcp_connect(addr: SocketAddr, local: Option<std::net::IpAddr>) -> io::Result<TcpStream> {
    let Some(local) = local else {
        return TcpStream::connect(addr);
    };
    let fam = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd: OwnedFd = socket::socket(
        fam,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    socket::bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &storage(SocketAddr::new(local, 0)),
    )?;
    match socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &storage(addr)) {
        Ok(()) | Err(nix::Error::EINPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(TcpStream::from_std(std::net::TcpStream::from(fd)))
}

fn storage(a: SocketAddr) -> SockaddrStorage {
    SockaddrStorage::from(a)
}

pub fn random_33() -> [u8; 33] {
    let mut r = [0u8; 33];
    // getrandom(2)/getentropy(2) do not fail for small buffers once the
    // kernel pool is ready; a zero fill would only weaken CHAP challenges.
    let _ = getrandom::getrandom(&mut r);
    r
}

fn random_u16() -> u16 {
    let r = random_33();
    u16::from_be_bytes([r[0], r[1]])
}
