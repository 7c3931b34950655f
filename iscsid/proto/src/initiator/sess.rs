//! One session as the initiator keeps it across connections: its
//! configuration, vscsi target, the connection and the `Session` on it,
//! commands held while it is down, and the reconnect schedule.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::config::TargetConfig;
use super::luns::{is_internal, LunState};
use super::{ClientId, ConnId, SessionId, State, Stats};
use crate::chap::ChapConfig;
use crate::login::LoginConfig;
use crate::negotiate::{DigestPref, Params, SessionKind};
use crate::session::{Counters, Session, SessionConfig, Timeouts};
use crate::task::{ScsiTask, Tag};

/// The first reconnect waits this long; each failure doubles it up to the
/// configured maximum.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Jitter adds up to 1/JITTER_DIVISOR of the wait, so that many sessions
/// do not reconnect in lockstep.
pub const JITTER_DIVISOR: u32 = 4;

/// The connection and the protocol state on it.
pub struct Conn {
    pub id: ConnId,
    pub session: Session,
    pub addr: SocketAddr,
    /// A `Send` action is out and not yet answered by writes.
    pub send_queued: bool,
}

/// Why a session is going away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Removed from the configuration (or disabled): log out, detach, forget.
    Remove,
    /// Settings changed: log out, and in again with the new ones; commands
    /// are held across.
    Restart,
    /// The daemon is stopping.
    Shutdown,
}

/// Command latencies kept for the mean and the 99th percentile.
pub const LATENCY_WINDOW: usize = 1024;

pub struct Sess {
    pub id: SessionId,
    pub cfg: TargetConfig,
    pub vscsi_target: Option<u32>,
    pub conn: Option<Conn>,
    /// Connections opened so far, for the next ConnId.
    pub conn_seq: u32,
    pub state: State,
    pub retry_at: Option<Instant>,
    pub backoff: Duration,
    /// Commands waiting for a connection (reissued after login).
    pub held: VecDeque<ScsiTask>,
    /// When held commands go back to the kernel if no login came.
    pub held_deadline: Option<Instant>,
    /// Where the next connection goes instead of the configured portal (a
    /// temporary login redirect: good for one login).
    pub redirect: Option<SocketAddr>,
    /// Where a permanent redirect sent us (until the configuration changes).
    pub moved_to: Option<SocketAddr>,
    pub ending: Option<Ending>,
    /// A control client waiting for this one-off discovery.
    pub waiter: Option<ClientId>,
    /// `iscsictl discover`: forget the session once it is over.
    pub oneoff: bool,
    /// The discovery block that created this session.
    pub parent: Option<String>,
    pub params: Option<Params>,
    pub tsih: u16,
    /// LUNs the kernel has sent commands to.
    pub luns: BTreeSet<u32>,
    /// Counters of the session itself; the connections' are added in.
    pub stats: Stats,
    /// The counters of connections that are gone.
    pub conn_totals: Counters,
    /// When each kernel command in flight or held was handed over.
    pub started: BTreeMap<Tag, Instant>,
    /// The latest command latencies, in microseconds.
    pub latency: VecDeque<u32>,
    pub last_error: Option<String>,
    pub isid: [u8; 6],
    /// Bumped after a login that timed out once connected: the target may
    /// still answer that login, and with the same ISID it would reinstate
    /// the session over the next one. Changes the ISID's qualifier.
    pub isid_generation: u16,
    /// Offer only CHAP_A=5: set after a login failed with SHA-256 on offer
    /// (tgt takes CHAP_A=7 for SHA-1), until the configuration changes.
    pub chap_md5_only: bool,
    /// Offer "CRC32C,None" for (HeaderDigest, DataDigest): set after the
    /// target answered Reject to our None, until the configuration changes.
    pub digest_any: (bool, bool),
    /// Redirects since the last login: a portal that sends us round in a
    /// loop must not have us reconnect at once for ever.
    pub redirects: u8,
    /// The kernel's disks as far as we know them, and our own queries.
    pub luns_state: LunState,
    /// Kernel tag -> connections the command has gone down with.
    pub reissued: BTreeMap<Tag, u8>,
}

impl Sess {
    pub fn new(id: SessionId, cfg: TargetConfig, isid: [u8; 6], vscsi_target: Option<u32>) -> Sess {
        let state = if cfg.disabled {
            State::Disabled
        } else {
            State::Idle
        };
        Sess {
            id,
            cfg,
            vscsi_target,
            conn: None,
            conn_seq: 0,
            state,
            retry_at: None,
            backoff: BACKOFF_MIN,
            held: VecDeque::new(),
            held_deadline: None,
            redirect: None,
            moved_to: None,
            ending: None,
            waiter: None,
            oneoff: false,
            parent: None,
            params: None,
            tsih: 0,
            luns: BTreeSet::new(),
            stats: Stats::default(),
            conn_totals: Counters::default(),
            started: BTreeMap::new(),
            latency: VecDeque::with_capacity(LATENCY_WINDOW),
            last_error: None,
            isid,
            isid_generation: 0,
            chap_md5_only: false,
            digest_any: (false, false),
            redirects: 0,
            luns_state: LunState::default(),
            reissued: BTreeMap::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    pub fn discovery(&self) -> bool {
        self.cfg.kind == SessionKind::Discovery
    }

    /// On its way out for good: no new commands, not found by name.
    pub fn removing(&self) -> bool {
        self.ending == Some(Ending::Remove)
    }

    pub fn portal(&self) -> Option<SocketAddr> {
        self.redirect.or(self.moved_to).or(self.cfg.portal)
    }

    /// Keeps a command for the next login, within the replacement timeout.
    pub fn hold(&mut self, t: ScsiTask, now: Instant) {
        self.held_deadline
            .get_or_insert(now + self.cfg.timers.replacement);
        self.held.push_back(t);
    }

    /// The kernel's commands off the connection (in flight oldest first,
    /// then queued); our own queries are asked again after the next login.
    pub fn take_kernel_tasks(&mut self) -> Vec<ScsiTask> {
        let Some(c) = self.conn.as_mut() else {
            return Vec::new();
        };
        self.luns_state.connection_lost();
        c.session
            .take_tasks()
            .into_iter()
            .filter(|t| !is_internal(t.tag))
            .collect()
    }

    /// A kernel command finished after `took`.
    pub fn note_latency(&mut self, took: Duration) {
        if self.latency.len() == LATENCY_WINDOW {
            self.latency.pop_front();
        }
        self.latency
            .push_back(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
    }

    /// Every counter: the session's, its old connections', the live one's.
    pub fn totals(&self) -> Stats {
        let mut c = self.conn_totals;
        if let Some(conn) = &self.conn {
            c.add(conn.session.counters());
        }
        let mut sorted: Vec<u32> = self.latency.iter().copied().collect();
        sorted.sort_unstable();
        let n = sorted.len() as u64;
        let sum: u64 = sorted.iter().map(|&v| u64::from(v)).sum();
        // The sample below which 99% of them lie.
        let p99 = sorted
            .get((sorted.len() * 99).div_ceil(100).saturating_sub(1))
            .copied()
            .unwrap_or(0);
        Stats {
            pdus_in: c.pdus_in,
            pdus_out: c.pdus_out,
            timeouts: c.timeouts,
            aborts: c.aborts,
            resets: c.resets,
            latency_samples: n,
            latency_mean_us: sum.checked_div(n).unwrap_or(0),
            latency_p99_us: u64::from(p99),
            ..self.stats
        }
    }

    /// Would start a connection if its time had come.
    pub fn wants_connection(&self, stopping: bool) -> bool {
        self.conn.is_none()
            && !self.cfg.disabled
            && self.ending.is_none()
            && !stopping
            && self.state != State::Done
    }

    pub fn next_deadline(&self, stopping: bool) -> Option<Instant> {
        let conn = match &self.conn {
            Some(c) => c.session.next_timeout(),
            // Every session that wants a connection has its time set.
            None if self.wants_connection(stopping) => self.retry_at,
            None => None,
        };
        [conn, self.held_deadline].into_iter().flatten().min()
    }

    /// Schedules the next attempt, doubling the wait each time, plus up to
    /// a quarter of it at random. `permanent` failures wait the longest.
    pub fn schedule_retry(&mut self, now: Instant, permanent: bool, random: u16) {
        let max = self.cfg.timers.reconnect_max.max(BACKOFF_MIN);
        let base = if permanent {
            max
        } else {
            self.backoff.min(max)
        };
        let span = base.as_millis() as u64 / u64::from(JITTER_DIVISOR);
        let jitter = Duration::from_millis(u64::from(random) % (span + 1));
        self.retry_at = Some(now + base + jitter);
        self.backoff = (self.backoff * 2).min(max);
    }

    /// The sans-IO session for a new connection. `random` gives the CID,
    /// first ITT and CmdSN, and the CHAP challenge material.
    pub fn session(&self, default_initiatorname: &str, now: Instant, random: [u8; 43]) -> Session {
        let chap = self.cfg.chap.as_ref().map(|c| ChapConfig {
            name: c.name.clone(),
            secret: c.secret.clone(),
            mutual: c.mutual.clone(),
            algs: c.algs.offer(self.chap_md5_only),
        });
        let r = &random;
        let t = self.cfg.timers;
        let mut prefs = self.cfg.prefs.clone();
        if self.digest_any.0 {
            prefs.header_digest = DigestPref::Any;
        }
        if self.digest_any.1 {
            prefs.data_digest = DigestPref::Any;
        }
        let cfg = SessionConfig {
            login: LoginConfig {
                isid: self.current_isid(),
                tsih: 0,
                cid: u16::from_be_bytes([r[0], r[1]]),
                itt: u32::from_be_bytes([r[2], r[3], r[4], r[5]]) & ITT_RANDOM_MASK,
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
                kind: self.cfg.kind,
                prefs,
                chap,
            },
            queue_depth: self.cfg.queue_depth,
            timeouts: Timeouts {
                login: t.login,
                command: t.command,
                tmf: t.tmf,
                nop_interval: t.nop_interval,
                nop_timeout: t.nop_timeout,
                ..Timeouts::default()
            },
        };
        let mut chap_random = [0u8; 33];
        chap_random.copy_from_slice(&random[10..]);
        Session::new(cfg, now, chap_random)
    }

    /// The ISID the next login uses.
    pub fn current_isid(&self) -> [u8; 6] {
        let mut isid = self.isid;
        let q = u16::from_be_bytes([isid[4], isid[5]])
            .wrapping_add(self.isid_generation.wrapping_mul(ISID_GENERATION_STEP));
        isid[4..].copy_from_slice(&q.to_be_bytes());
        isid
    }

    pub fn next_conn_id(&mut self) -> ConnId {
        self.conn_seq = self.conn_seq.wrapping_add(1);
        ConnId {
            session: self.id,
            seq: self.conn_seq,
        }
    }
}

/// Redirects followed at once before the reconnect backoff applies.
pub const REDIRECTS_AT_ONCE: u8 = 4;

/// Qualifier step between ISID generations: past the 256 vscsi targets
/// and the discovery sessions' range, so that no generation of one session
/// meets another session's ISID.
pub const ISID_GENERATION_STEP: u16 = 0x200;

/// The top ITT bit stays clear so that an ITT never reads as the reserved
/// tag 0xffffffff however far it counts.
const ITT_RANDOM_MASK: u32 = 0x7fff_ffff;
