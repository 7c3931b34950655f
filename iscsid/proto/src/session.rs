//! One iSCSI connection's life, sans-IO: login, full feature phase and
//! logout (RFC 7143). Bytes and commands go in with the time; bytes to send
//! and events come out. The engine owns the socket and the reconnects; a
//! `Session` lives for one TCP connection.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::IoSlice;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use super::discovery::{self, DiscoveryError, TargetRecord};
use super::framing::{FrameError, Framer};
use super::login::{LoggedIn, Login, LoginConfig, LoginError, Step, LOGIN_MAX_DATA};
use super::negotiate::{NegError, Negotiation, Params, SessionKind};
use super::pdu::{
    async_event, logout_reason, logout_rsp, op, reject, tmf, tmf_rsp, AsyncMsg, Digests, LogoutReq,
    NopIn, NopOut, Pdu, Reject, TaskMgmtReq, TaskMgmtRsp, TextReq, TextRsp, RESERVED_TAG,
};
use super::serial;
use super::task::{sense_codes, Completion, Gather, Placement, ScsiTask, Task, TaskError, Wire};
use super::text::{self, TextBuf, TextError};
use crate::lun;
use crate::scsi::{Outcome, ASC_REPORTED_LUNS_CHANGED, KEY_UNIT_ATTENTION};
use crate::tx::TxQueue;

/// Timers; `Default` gives what the engine uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub login: Duration,
    /// A command not answered in this time, counted from when it first
    /// went on the wire, is aborted.
    pub command: Duration,
    /// Each task management step (ABORT TASK, LOGICAL UNIT RESET, TARGET
    /// WARM RESET) not answered in this time escalates to the next.
    pub tmf: Duration,
    /// Idle time before we ping with NOP-Out.
    pub nop_interval: Duration,
    /// No PDU at all this long after a ping: the connection is dead.
    pub nop_timeout: Duration,
    pub logout: Duration,
    pub text: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            login: Duration::from_secs(15),
            command: Duration::from_secs(60),
            tmf: Duration::from_secs(10),
            nop_interval: Duration::from_secs(10),
            nop_timeout: Duration::from_secs(15),
            logout: Duration::from_secs(5),
            text: Duration::from_secs(15),
        }
    }
}

#[derive(Clone)]
pub struct SessionConfig {
    pub login: LoginConfig,
    /// Most commands in flight at once (besides the target's window).
    pub queue_depth: u32,
    pub timeouts: Timeouts,
}

/// Why the connection must be dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    Login(LoginError),
    LoginTimeout,
    HeaderDigest,
    DataDigest {
        itt: u32,
    },
    DataTooLong {
        len: u32,
        max: u32,
    },
    BadPdu(String),
    UnexpectedPdu(&'static str),
    UnknownItt {
        pdu: &'static str,
        itt: u32,
    },
    Task {
        itt: u32,
        error: TaskError,
    },
    PingTimeout,
    /// The last task management step, TARGET WARM RESET, failed too.
    TargetReset(TmfFailure),
    Rejected {
        reason: u8,
        opcode: u8,
    },
    /// Async event 2 or 3: the target drops us and says when to return.
    TargetDrop {
        time2wait: u16,
    },
    TextTimeout,
    Text(TextError),
    Negotiation(NegError),
    Discovery(DiscoveryError),
    LogoutTimeout,
    /// The target kept MaxCmdSN shut for a whole command timeout.
    WindowClosed,
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Login(e) => write!(f, "login failed: {e}"),
            SessionError::LoginTimeout => write!(f, "login timed out"),
            SessionError::HeaderDigest => write!(f, "header digest error"),
            SessionError::DataDigest { itt } => write!(f, "data digest error (itt 0x{itt:08x})"),
            SessionError::DataTooLong { len, max } => {
                write!(
                    f,
                    "PDU data of {len} bytes exceeds our MaxRecvDataSegmentLength {max}"
                )
            }
            SessionError::BadPdu(e) => write!(f, "malformed PDU: {e}"),
            SessionError::UnexpectedPdu(p) => write!(f, "unexpected {p}"),
            SessionError::UnknownItt { pdu, itt } => {
                write!(f, "{pdu} for unknown itt 0x{itt:08x}")
            }
            SessionError::Task { itt, error } => write!(f, "itt 0x{itt:08x}: {error}"),
            SessionError::PingTimeout => write!(f, "target stopped answering (NOP-Out timeout)"),
            SessionError::TargetReset(why) => write!(f, "TARGET WARM RESET {why}"),
            SessionError::Rejected { reason, opcode } => {
                write!(
                    f,
                    "target rejected opcode 0x{opcode:02x} (reason 0x{reason:02x})"
                )
            }
            SessionError::TargetDrop { time2wait } => {
                write!(f, "target dropped the connection (retry in {time2wait}s)")
            }
            SessionError::TextTimeout => write!(f, "text request timed out"),
            SessionError::Text(e) => write!(f, "text: {e}"),
            SessionError::Negotiation(e) => write!(f, "negotiation: {e}"),
            SessionError::Discovery(e) => write!(f, "discovery: {e}"),
            SessionError::LogoutTimeout => write!(f, "logout timed out"),
            SessionError::WindowClosed => {
                write!(
                    f,
                    "target kept its command window closed (MaxCmdSN), commands could not be sent"
                )
            }
        }
    }
}

impl std::error::Error for SessionError {}

/// How a task management step went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TmfFailure {
    /// A Task Management Function Response other than "function complete"
    /// (or, for ABORT TASK, "task does not exist").
    Response(u8),
    /// The target rejected the request (Reject PDU, with its reason).
    Rejected(u8),
    /// No answer within `Timeouts::tmf`.
    Timeout,
}

impl fmt::Display for TmfFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TmfFailure::Response(r) => write!(f, "failed (response {r})"),
            TmfFailure::Rejected(r) => write!(f, "rejected (reason 0x{r:02x})"),
            TmfFailure::Timeout => write!(f, "timed out"),
        }
    }
}

/// The task management steps for a command that is not answered, in the
/// order they are tried (RFC 7143 11.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TmfKind {
    AbortTask { itt: u32 },
    LunReset { lun: u64 },
    TargetReset,
}

/// The one task management request in flight. One at a time: a target
/// need only take one immediate TMF per connection (RFC 7143 4.2.2.1).
#[derive(Debug, Clone, Copy)]
struct TmfOp {
    itt: u32,
    kind: TmfKind,
    deadline: Instant,
}

/// Task management requests given up on (timed out) whose late answers
/// are ignored rather than taken for strays; bounded, oldest forgotten.
const STALE_TMF_MAX: usize = 16;

/// A LUN field for the log: the number where it has one.
fn lun_name(field: u64) -> String {
    lun::decode(field).map_or_else(|| format!("0x{field:016x}"), |n| n.to_string())
}

#[derive(Debug)]
pub enum Event {
    LoggedIn,
    Complete(Completion),
    /// A LUN inventory change (REPORTED LUNS DATA HAS CHANGED): probe again.
    Rescan,
    Discovered(Vec<TargetRecord>),
    /// The target asked us to log out (async event 1); we did. Come back
    /// after `time2wait` seconds.
    TargetLogout {
        time2wait: u16,
    },
    LoggedOut,
    Redirect {
        addr: String,
        permanent: bool,
    },
    Failed(SessionError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Login,
    FullFeature,
    LoggingOut,
    Closed,
}

/// A text exchange in the full feature phase.
struct TextOp {
    itt: u32,
    buf: TextBuf,
    deadline: Instant,
    discovery: bool,
    /// The next Text Request, waiting for the CmdSN window: its TTT
    /// (RESERVED_TAG for the first) and data chunks.
    held: Option<(u32, Vec<Vec<u8>>)>,
}

/// What one connection did, for `iscsictl show`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub pdus_in: u64,
    pub pdus_out: u64,
    /// Commands that were not answered in time.
    pub timeouts: u64,
    /// ABORT TASK requests sent.
    pub aborts: u64,
    /// LOGICAL UNIT RESET and TARGET WARM RESET requests sent.
    pub resets: u64,
}

impl Counters {
    pub fn add(&mut self, o: &Counters) {
        self.pdus_in += o.pdus_in;
        self.pdus_out += o.pdus_out;
        self.timeouts += o.timeouts;
        self.aborts += o.aborts;
        self.resets += o.resets;
    }
}

pub struct Session {
    cfg: SessionConfig,
    counters: Counters,
    phase: Phase,
    login: Option<Box<Login>>,
    login_deadline: Instant,
    framer: Framer,
    tx: TxQueue,
    digests: Digests,
    params: Params,
    tsih: u16,
    cmdsn: u32,
    expcmdsn: u32,
    maxcmdsn: u32,
    expstatsn: u32,
    next_itt: u32,
    /// By ITT; ordered, so that whatever walks it acts the same every run.
    tasks: BTreeMap<u32, Task>,
    queue: VecDeque<ScsiTask>,
    tmf: Option<TmfOp>,
    stale_tmf: VecDeque<u32>,
    ping: Option<(u32, Instant)>,
    last_rx: Instant,
    text: Option<TextOp>,
    logout: Option<(u32, Instant)>,
    target_logout: Option<u16>,
    /// Since when queued commands wait on a closed CmdSN window.
    window_shut: Option<Instant>,
    events: VecDeque<Event>,
}

impl Session {
    /// Starts a login at once: the first Login Request is ready to send.
    pub fn new(cfg: SessionConfig, now: Instant, random: [u8; 33]) -> Session {
        let mut login = Box::new(Login::new(cfg.login.clone(), random));
        let first = login.start();
        let itt = cfg.login.itt;
        let cmdsn = cfg.login.cmdsn;
        let mut s = Session {
            counters: Counters::default(),
            login_deadline: now + cfg.timeouts.login,
            framer: Framer::new(LOGIN_MAX_DATA as u32),
            phase: Phase::Login,
            login: Some(login),
            tx: TxQueue::default(),
            digests: Digests::default(),
            params: Params::default(),
            tsih: 0,
            cmdsn,
            expcmdsn: cmdsn,
            maxcmdsn: cmdsn,
            expstatsn: 0,
            next_itt: itt.wrapping_add(1),
            tasks: BTreeMap::new(),
            queue: VecDeque::new(),
            tmf: None,
            stale_tmf: VecDeque::new(),
            ping: None,
            last_rx: now,
            text: None,
            logout: None,
            target_logout: None,
            window_shut: None,
            events: VecDeque::new(),
            cfg,
        };
        // Read data is copied once, from the receive buffer to its place.
        s.framer.hold_data_in();
        s.send(&Pdu::LoginReq(first));
        s
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn tsih(&self) -> u16 {
        self.tsih
    }

    pub fn in_flight(&self) -> usize {
        self.tasks.len()
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ---- bytes in and out ----

    /// Room to read into; then call `rx_filled`.
    pub fn rx_space(&mut self, min: usize) -> &mut [u8] {
        self.framer.spare(min)
    }

    pub fn rx_filled(&mut self, n: usize, now: Instant) {
        self.rx_filled_with(n, now, &mut Gather);
    }

    /// As `rx_filled`, copying read data straight to where `place` keeps
    /// it for the commands it has buffers for.
    pub fn rx_filled_with(&mut self, n: usize, now: Instant, place: &mut dyn Placement) {
        if n == 0 {
            return;
        }
        self.framer.filled(n);
        self.last_rx = now;
        while self.phase != Phase::Closed {
            match self.framer.next() {
                Ok(Some(pdu)) => {
                    self.counters.pdus_in += 1;
                    self.dispatch(pdu, now, place);
                }
                Ok(None) => break,
                Err(e) => {
                    let err = match e {
                        FrameError::HeaderDigest { .. } => SessionError::HeaderDigest,
                        // At ErrorRecoveryLevel 0 the only recovery is a new
                        // connection; the tasks are reissued there.
                        FrameError::DataDigest { pdu, .. } => {
                            SessionError::DataDigest { itt: pdu.itt() }
                        }
                        FrameError::DataTooLong { len, max } => {
                            SessionError::DataTooLong { len, max }
                        }
                        FrameError::Pdu(e) => SessionError::BadPdu(e.to_string()),
                    };
                    self.fail(err);
                }
            }
        }
        self.pump(now);
    }

    /// The first contiguous bytes waiting to be written.
    pub fn tx_data(&self) -> &[u8] {
        self.tx.front()
    }

    /// All the bytes waiting, in order, for writev(2); returns how many
    /// slices of `out` it filled.
    pub fn tx_slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        self.tx.slices(out)
    }

    /// Bytes waiting to be written.
    pub fn tx_pending(&self) -> usize {
        self.tx.pending()
    }

    pub fn tx_advance(&mut self, n: usize) {
        self.tx.advance(n);
    }

    /// Everything waiting, copied out and taken as written: for a caller
    /// that has no writev (tests, the fuzzers).
    pub fn tx_drain(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.tx.pending());
        loop {
            let front = self.tx.front();
            if front.is_empty() {
                return out;
            }
            out.extend_from_slice(front);
            let n = front.len();
            self.tx.advance(n);
        }
    }

    /// Frees the receive buffer and the send buffer while both are empty.
    fn release_buffers(&mut self) {
        self.framer.release_if_empty();
        self.tx.release_if_empty();
    }

    /// Bytes of buffer the connection holds (receive and send).
    pub fn buffer_bytes(&self) -> usize {
        self.framer.capacity() + self.tx.capacity()
    }

    fn send(&mut self, pdu: &Pdu) {
        self.counters.pdus_out += 1;
        pdu.encode(self.digests, self.tx.stage());
    }

    fn fail(&mut self, e: SessionError) {
        if self.phase != Phase::Closed {
            self.phase = Phase::Closed;
            self.events.push_back(Event::Failed(e));
        }
    }

    // ---- commands ----

    /// Queues a command; it goes out as soon as the window allows.
    pub fn submit(&mut self, t: ScsiTask, now: Instant) {
        match self.phase {
            Phase::Login | Phase::FullFeature => {
                self.queue.push_back(t);
                if self.phase == Phase::FullFeature {
                    self.pump(now);
                }
            }
            // Logging out or gone: the midlayer retries elsewhere or later.
            Phase::LoggingOut | Phase::Closed => {
                self.events
                    .push_back(Event::Complete(Completion::status_only(
                        t.tag,
                        t.dir,
                        Outcome::Retry,
                    )))
            }
        }
    }

    /// Every command not completed: in flight first (oldest first), then
    /// queued. For reissue on the next connection; each carries its
    /// deadline, so the next connection keeps the timer running.
    pub fn take_tasks(&mut self) -> Vec<ScsiTask> {
        let inflight = self.remove_tasks(|_| true);
        self.tmf = None;
        let mut out: Vec<ScsiTask> = inflight.into_iter().map(|t| t.req).collect();
        out.extend(self.queue.drain(..));
        out
    }

    /// Removes the tasks `which` picks, oldest first.
    fn remove_tasks(&mut self, which: impl Fn(&Task) -> bool) -> Vec<Task> {
        let itts: Vec<u32> = self
            .tasks
            .values()
            .filter(|t| which(t))
            .map(|t| t.itt)
            .collect();
        let mut out: Vec<Task> = itts
            .iter()
            .filter_map(|itt| self.tasks.remove(itt))
            .collect();
        // Every CmdSN in flight is below the next one to issue; counted
        // back from there they sort oldest first. (From ExpCmdSN, those
        // the target already received would wrap around to the end.)
        let next = self.cmdsn;
        out.sort_by_key(|t| t.cmdsn.wrapping_sub(next));
        out
    }

    fn alloc_itt(&mut self) -> u32 {
        loop {
            let itt = self.next_itt;
            self.next_itt = self.next_itt.wrapping_add(1);
            let tmf = self.tmf.is_some_and(|t| t.itt == itt) || self.stale_tmf.contains(&itt);
            if itt != RESERVED_TAG && !self.tasks.contains_key(&itt) && !tmf {
                return itt;
            }
        }
    }

    fn window_open(&self) -> bool {
        serial::le(self.cmdsn, self.maxcmdsn)
    }

    /// Sends queued commands while the CmdSN window and queue depth allow.
    fn pump(&mut self, now: Instant) {
        if self.phase != Phase::FullFeature {
            return;
        }
        self.send_text();
        // Commands waiting on a window the target keeps shut must not wait
        // forever: note since when, and tick() gives up on the connection.
        if self.queue.is_empty() || self.window_open() {
            self.window_shut = None;
        } else if self.window_shut.is_none() {
            self.window_shut = Some(now);
        }
        let mut expired = false;
        while !self.queue.is_empty()
            && self.window_open()
            && self.tasks.len() < self.cfg.queue_depth as usize
        {
            let Some(req) = self.queue.pop_front() else {
                break;
            };
            let itt = self.alloc_itt();
            let cmdsn = self.cmdsn;
            self.cmdsn = self.cmdsn.wrapping_add(1);
            let deadline = now + self.cfg.timeouts.command;
            let task = Task::new(req, itt, cmdsn, deadline);
            let w = Wire {
                params: &self.params,
                expstatsn: self.expstatsn,
                digests: self.digests,
            };
            self.counters.pdus_out += task.issue(w, &mut self.tx);
            expired |= task.deadline <= now;
            self.tasks.insert(itt, task);
        }
        // A reissued command may have used up its time on earlier
        // connections: escalate it now, not a whole timeout later.
        if expired {
            self.check_commands(now);
        }
    }

    fn complete(&mut self, c: Completion) {
        self.events.push_back(Event::Complete(c));
    }

    // ---- incoming PDUs ----

    fn update_sns(&mut self, pdu: &Pdu) {
        let Some((statsn, exp, max)) = pdu.target_sns() else {
            return;
        };
        if pdu.statsn_advances() && serial::ge(statsn, self.expstatsn) {
            self.expstatsn = statsn.wrapping_add(1);
        }
        // RFC 7143 4.2.2.1: MaxCmdSN < ExpCmdSN - 1 means "ignore both".
        if serial::lt(max, exp.wrapping_sub(1)) {
            return;
        }
        if serial::gt(exp, self.expcmdsn) {
            self.expcmdsn = exp;
        }
        if serial::gt(max, self.maxcmdsn) {
            self.maxcmdsn = max;
        }
        // Some targets (istgt) count an immediate command into ExpCmdSN.
        // Moving our CmdSN up to theirs keeps every later command inside the
        // window they expect, where insisting would stall (libiscsi does).
        if serial::gt(self.expcmdsn, self.cmdsn) {
            debug!(
                "target ExpCmdSN {} is past our CmdSN {}, following it",
                self.expcmdsn, self.cmdsn
            );
            self.cmdsn = self.expcmdsn;
        }
    }

    fn dispatch(&mut self, pdu: Pdu, now: Instant, place: &mut dyn Placement) {
        if self.phase == Phase::Login {
            return self.dispatch_login(pdu, now);
        }
        self.update_sns(&pdu);
        match pdu {
            Pdu::NopIn(n) => self.nop_in(n),
            Pdu::ScsiResponse(r) => match self.tasks.get_mut(&r.itt) {
                Some(t) => match t.response(&r) {
                    Ok(c) => self.finish_task(r.itt, c),
                    Err(error) => self.fail(SessionError::Task { itt: r.itt, error }),
                },
                None => self.fail(SessionError::UnknownItt {
                    pdu: "SCSI Response",
                    itt: r.itt,
                }),
            },
            Pdu::DataIn(d) => {
                let itt = d.itt;
                // Its data stays in the receive buffer (`hold_data_in`).
                let data = self.framer.held();
                match self.tasks.get_mut(&itt) {
                    Some(t) => match t.data_in(&d, data, place) {
                        Ok(Some(c)) => self.finish_task(itt, c),
                        Ok(None) => {}
                        Err(error) => self.fail(SessionError::Task { itt, error }),
                    },
                    None => self.fail(SessionError::UnknownItt {
                        pdu: "Data-In",
                        itt,
                    }),
                }
            }
            Pdu::R2t(r) => {
                let Some(t) = self.tasks.get_mut(&r.itt) else {
                    return self.fail(SessionError::UnknownItt {
                        pdu: "R2T",
                        itt: r.itt,
                    });
                };
                let w = Wire {
                    params: &self.params,
                    expstatsn: self.expstatsn,
                    digests: self.digests,
                };
                match t.r2t(&r, w, &mut self.tx) {
                    Ok(n) => self.counters.pdus_out += n,
                    Err(error) => self.fail(SessionError::Task { itt: r.itt, error }),
                }
            }
            Pdu::TaskMgmtRsp(r) => self.tmf_response(&r, now),
            Pdu::TextRsp(r) => self.text_response(r, now),
            Pdu::LogoutRsp(r) => {
                if self.logout.is_some_and(|(itt, _)| itt == r.itt) {
                    if r.response != logout_rsp::SUCCESS {
                        warn!("logout response {}", r.response);
                    }
                    self.close_logged_out();
                } else {
                    self.fail(SessionError::UnknownItt {
                        pdu: "Logout Response",
                        itt: r.itt,
                    });
                }
            }
            Pdu::AsyncMsg(a) => self.async_msg(a, now),
            Pdu::Reject(r) => self.reject(r, now),
            other => self.fail(SessionError::UnexpectedPdu(other.name())),
        }
    }

    fn finish_task(&mut self, itt: u32, c: Completion) {
        self.tasks.remove(&itt);
        if c.status == Outcome::Sense {
            let (asc, ascq) = ASC_REPORTED_LUNS_CHANGED;
            if sense_codes(&c.sense) == Some((KEY_UNIT_ATTENTION, asc, ascq)) {
                info!("reported LUNs data has changed, rescanning");
                self.events.push_back(Event::Rescan);
            }
        }
        self.complete(c);
    }

    fn dispatch_login(&mut self, pdu: Pdu, now: Instant) {
        let Pdu::LoginRsp(rsp) = pdu else {
            return self.fail(SessionError::UnexpectedPdu(pdu.name()));
        };
        let Some(login) = self.login.as_mut() else {
            return self.fail(SessionError::UnexpectedPdu("Login Response"));
        };
        match login.on_response(rsp) {
            Ok(Step::Send(req)) => self.send(&Pdu::LoginReq(req)),
            Ok(Step::Done(done)) => self.logged_in(*done, now),
            Ok(Step::Redirect { addr, permanent }) => {
                self.phase = Phase::Closed;
                self.events.push_back(Event::Redirect { addr, permanent });
            }
            Err(e) => self.fail(SessionError::Login(e)),
        }
    }

    fn logged_in(&mut self, l: LoggedIn, now: Instant) {
        self.login = None;
        for e in &l.events {
            debug!("negotiation: {e:?}");
        }
        self.params = l.params;
        self.tsih = l.tsih;
        self.expstatsn = l.expstatsn;
        self.expcmdsn = l.expcmdsn;
        self.maxcmdsn = l.maxcmdsn;
        if serial::gt(self.expcmdsn, self.cmdsn) {
            self.cmdsn = self.expcmdsn;
        }
        // Digests and our MaxRecvDataSegmentLength apply from the first
        // PDU after the final Login Response.
        self.digests = Digests {
            header: self.params.header_digest,
            data: self.params.data_digest,
        };
        self.framer.set_digests(self.digests);
        self.framer.set_max_data(self.params.max_recv_dsl);
        self.phase = Phase::FullFeature;
        self.events.push_back(Event::LoggedIn);
        if self.cfg.login.kind == SessionKind::Discovery {
            self.send_targets(now);
        }
    }

    fn nop_in(&mut self, n: NopIn) {
        if n.itt != RESERVED_TAG {
            if self.ping.is_some_and(|(itt, _)| itt == n.itt) {
                self.ping = None;
            } else {
                self.fail(SessionError::UnknownItt {
                    pdu: "NOP-In",
                    itt: n.itt,
                });
            }
            return;
        }
        if n.ttt == RESERVED_TAG {
            // The target only tells us its sequence numbers.
            return;
        }
        let max = self.params.max_xmit_dsl as usize;
        let data = n.data[..n.data.len().min(max)].to_vec();
        let reply = Pdu::NopOut(NopOut {
            immediate: true,
            lun: n.lun,
            itt: RESERVED_TAG,
            ttt: n.ttt,
            cmdsn: self.cmdsn,
            expstatsn: self.expstatsn,
            data,
        });
        self.send(&reply);
    }

    fn tmf_response(&mut self, r: &TaskMgmtRsp, now: Instant) {
        let op = match self.tmf {
            Some(op) if op.itt == r.itt => op,
            _ => {
                if let Some(i) = self.stale_tmf.iter().position(|&i| i == r.itt) {
                    // Answered after we moved on to the next step.
                    self.stale_tmf.remove(i);
                    return debug!("late TMF response for itt 0x{:08x}", r.itt);
                }
                return self.fail(SessionError::UnknownItt {
                    pdu: "Task Management Response",
                    itt: r.itt,
                });
            }
        };
        self.tmf = None;
        match (op.kind, r.response) {
            // Aborted, or the task had already ended on the target.
            (TmfKind::AbortTask { itt }, tmf_rsp::COMPLETE | tmf_rsp::NO_TASK) => {
                if let Some(t) = self.tasks.remove(&itt) {
                    info!("itt 0x{itt:08x}: aborted");
                    self.complete(Completion::status_only(
                        t.req.tag,
                        t.req.dir,
                        Outcome::Retry,
                    ));
                }
            }
            (TmfKind::LunReset { lun }, tmf_rsp::COMPLETE) => {
                info!("lun {}: reset", lun_name(lun));
                self.reset_done(|t| t.req.lun == lun);
            }
            (TmfKind::TargetReset, tmf_rsp::COMPLETE) => {
                info!("target reset");
                self.reset_done(|_| true);
            }
            (kind, response) => return self.escalate(kind, TmfFailure::Response(response), now),
        }
        // Commands that timed out meanwhile waited for this one.
        self.check_commands(now);
    }

    /// A reset ended these tasks on the target: the kernel retries them
    /// (XS_RESET).
    fn reset_done(&mut self, which: impl Fn(&Task) -> bool) {
        for t in self.remove_tasks(which) {
            self.complete(Completion::status_only(
                t.req.tag,
                t.req.dir,
                Outcome::Retry,
            ));
        }
    }

    /// Sends a task management request; it is the one in flight.
    fn send_tmf(&mut self, kind: TmfKind, now: Instant) {
        let itt = self.alloc_itt();
        match kind {
            TmfKind::AbortTask { .. } => self.counters.aborts += 1,
            TmfKind::LunReset { .. } | TmfKind::TargetReset => self.counters.resets += 1,
        }
        let (function, lun, rtt, refcmdsn) = match kind {
            TmfKind::AbortTask { itt: task } => {
                let (lun, cmdsn) = self
                    .tasks
                    .get(&task)
                    .map_or((0, 0), |t| (t.req.lun, t.cmdsn));
                (tmf::ABORT_TASK, lun, task, cmdsn)
            }
            TmfKind::LunReset { lun } => (tmf::LOGICAL_UNIT_RESET, lun, RESERVED_TAG, 0),
            TmfKind::TargetReset => (tmf::TARGET_WARM_RESET, 0, RESERVED_TAG, 0),
        };
        self.send(&Pdu::TaskMgmtReq(TaskMgmtReq {
            immediate: true,
            function,
            lun,
            itt,
            rtt,
            cmdsn: self.cmdsn,
            expstatsn: self.expstatsn,
            refcmdsn,
            expdatasn: 0,
        }));
        self.tmf = Some(TmfOp {
            itt,
            kind,
            deadline: now + self.cfg.timeouts.tmf,
        });
    }

    /// The step `kind` failed: on to the next, the connection last.
    fn escalate(&mut self, kind: TmfKind, why: TmfFailure, now: Instant) {
        match kind {
            TmfKind::AbortTask { itt } => {
                let Some(lun) = self.tasks.get(&itt).map(|t| t.req.lun) else {
                    // It completed meanwhile: nothing left to recover.
                    return self.check_commands(now);
                };
                warn!(
                    "lun {}: ABORT TASK of itt 0x{itt:08x} {why}, LOGICAL UNIT RESET",
                    lun_name(lun)
                );
                self.send_tmf(TmfKind::LunReset { lun }, now);
            }
            TmfKind::LunReset { lun } => {
                warn!(
                    "lun {}: LOGICAL UNIT RESET {why}, TARGET WARM RESET",
                    lun_name(lun)
                );
                self.send_tmf(TmfKind::TargetReset, now);
            }
            TmfKind::TargetReset => self.fail(SessionError::TargetReset(why)),
        }
    }

    fn async_msg(&mut self, a: AsyncMsg, now: Instant) {
        match a.event {
            async_event::SCSI_EVENT => {
                let sense = a.data.get(2..).unwrap_or(&[]);
                let (asc, ascq) = ASC_REPORTED_LUNS_CHANGED;
                match sense_codes(sense) {
                    Some(codes) if codes == (KEY_UNIT_ATTENTION, asc, ascq) => {
                        self.events.push_back(Event::Rescan)
                    }
                    codes => debug!("async SCSI event, sense {codes:?}"),
                }
            }
            async_event::LOGOUT_REQUEST => {
                info!("target requests logout within {}s", a.param3);
                // Already logging out: that logout answers the request.
                if self.phase == Phase::FullFeature {
                    self.target_logout = Some(self.params.default_time2wait as u16);
                    self.logout(now);
                }
            }
            async_event::CONNECTION_DROP | async_event::SESSION_DROP => {
                self.fail(SessionError::TargetDrop {
                    time2wait: a.param2,
                })
            }
            async_event::NEGOTIATION_REQUEST => {
                let keys = Negotiation::ffp_offer(&self.params);
                self.start_text(&keys, false, now);
            }
            e => debug!("async event {e} ignored"),
        }
    }

    fn reject(&mut self, r: Reject, now: Instant) {
        let opcode = r.data.first().map_or(0xff, |b| b & 0x3f);
        let itt = r.data.get(16..20).map_or(RESERVED_TAG, |b| {
            u32::from_be_bytes([b[0], b[1], b[2], b[3]])
        });
        warn!(
            "target rejected opcode 0x{opcode:02x} itt 0x{itt:08x}, reason 0x{:02x}",
            r.reason
        );
        match opcode {
            // A rejected ping: nothing was pending on it.
            op::NOP_OUT => {
                if self.ping.is_some_and(|(p, _)| p == itt) {
                    self.ping = None;
                }
            }
            // A rejected command never ran: the midlayer may retry it,
            // unless the target cannot do it at all.
            op::SCSI_COMMAND if self.tasks.contains_key(&itt) => {
                if let Some(t) = self.tasks.remove(&itt) {
                    let st = if matches!(
                        r.reason,
                        reject::COMMAND_NOT_SUPPORTED | reject::INVALID_PDU_FIELD
                    ) {
                        Outcome::Failed
                    } else {
                        Outcome::Retry
                    };
                    self.complete(Completion::status_only(t.req.tag, t.req.dir, st));
                }
            }
            // A rejected task management step failed like any other.
            op::TASK_MGMT_REQ if self.tmf.is_some_and(|t| t.itt == itt) => {
                if let Some(t) = self.tmf.take() {
                    self.escalate(t.kind, TmfFailure::Rejected(r.reason), now);
                }
            }
            // One we gave up on already.
            op::TASK_MGMT_REQ if self.stale_tmf.contains(&itt) => {
                self.stale_tmf.retain(|&i| i != itt);
            }
            _ => self.fail(SessionError::Rejected {
                reason: r.reason,
                opcode,
            }),
        }
    }

    // ---- text requests (SendTargets, renegotiation) ----

    fn start_text(&mut self, keys: &[(String, String)], discovery: bool, now: Instant) {
        if self.text.is_some() || self.phase != Phase::FullFeature {
            return;
        }
        let itt = self.alloc_itt();
        let data = text::encode(keys.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut chunks: Vec<Vec<u8>> = text::chunks(&data, self.params.max_xmit_dsl as usize)
            .map(<[u8]>::to_vec)
            .collect();
        if chunks.is_empty() {
            chunks.push(Vec::new());
        }
        self.text = Some(TextOp {
            itt,
            buf: TextBuf::default(),
            deadline: now + self.cfg.timeouts.text,
            discovery,
            held: Some((RESERVED_TAG, chunks)),
        });
        self.send_text();
    }

    /// Sends the held Text Request if the CmdSN window has room for it.
    /// Each one is non-immediate, so CmdSN advances the same way on every
    /// target, and takes a CmdSN of its own (RFC 7143 4.2.2.1): it must
    /// wait for the window like any command (a SendTargets reply in many
    /// pieces would otherwise walk past MaxCmdSN). The text timer covers a
    /// window that never opens.
    fn send_text(&mut self) {
        if !self.window_open() {
            return;
        }
        let Some((itt, (ttt, chunks))) = self
            .text
            .as_mut()
            .and_then(|op| Some((op.itt, op.held.take()?)))
        else {
            return;
        };
        let cmdsn = self.cmdsn;
        self.cmdsn = self.cmdsn.wrapping_add(1);
        // Our text (SendTargets=All, MaxRecvDataSegmentLength) always fits
        // one PDU; the C bit covers the theoretical rest.
        let n = chunks.len();
        for (i, c) in chunks.into_iter().enumerate() {
            let last = i + 1 == n;
            self.send(&Pdu::TextReq(TextReq {
                immediate: false,
                final_: last,
                cont: !last,
                lun: 0,
                itt,
                ttt,
                cmdsn,
                expstatsn: self.expstatsn,
                data: c,
            }));
        }
    }

    /// Discovery sessions: ask for every target.
    fn send_targets(&mut self, now: Instant) {
        self.start_text(&[("SendTargets".into(), "All".into())], true, now);
    }

    fn text_response(&mut self, r: TextRsp, now: Instant) {
        let Some(op) = self.text.as_mut() else {
            return self.fail(SessionError::UnknownItt {
                pdu: "Text Response",
                itt: r.itt,
            });
        };
        if op.itt != r.itt {
            return self.fail(SessionError::UnknownItt {
                pdu: "Text Response",
                itt: r.itt,
            });
        }
        if let Err(e) = op.buf.push(&r.data) {
            return self.fail(SessionError::Text(e));
        }
        if r.cont || !r.final_ {
            // More to come: an empty request with the target's TTT, for
            // the same ITT, asks for it.
            op.deadline = now + self.cfg.timeouts.text;
            op.held = Some((r.ttt, vec![Vec::new()]));
            return self.send_text();
        }
        let Some(mut op) = self.text.take() else {
            return;
        };
        let keys = match op.buf.finish() {
            Ok(k) => k,
            Err(e) => return self.fail(SessionError::Text(e)),
        };
        if op.discovery {
            match discovery::parse(&keys) {
                Ok(recs) => self.events.push_back(Event::Discovered(recs)),
                Err(e) => self.fail(SessionError::Discovery(e)),
            }
        } else {
            match Negotiation::ffp_respond(&mut self.params, &keys) {
                Ok(reply) if !reply.is_empty() => self.start_text(&reply, false, now),
                Ok(_) => {}
                Err(e) => self.fail(SessionError::Negotiation(e)),
            }
        }
    }

    // ---- logout and timers ----

    /// Logs the session out (close the session, reason 0). Queued commands
    /// go back to the midlayer for a retry.
    pub fn logout(&mut self, now: Instant) {
        match self.phase {
            Phase::FullFeature | Phase::Login => {}
            Phase::LoggingOut | Phase::Closed => return,
        }
        for t in self.queue.drain(..) {
            self.events
                .push_back(Event::Complete(Completion::status_only(
                    t.tag,
                    t.dir,
                    Outcome::Retry,
                )));
        }
        if self.phase == Phase::Login {
            // Nothing to log out of; commands queued for the login went
            // back above rather than vanish with the connection.
            self.phase = Phase::Closed;
            self.events.push_back(Event::LoggedOut);
            return;
        }
        let itt = self.alloc_itt();
        self.send(&Pdu::LogoutReq(LogoutReq {
            immediate: true,
            reason: logout_reason::CLOSE_SESSION,
            itt,
            cid: 0,
            cmdsn: self.cmdsn,
            expstatsn: self.expstatsn,
        }));
        self.logout = Some((itt, now + self.cfg.timeouts.logout));
        self.phase = Phase::LoggingOut;
    }

    fn close_logged_out(&mut self) {
        // Whatever was still in flight ended with the session.
        for t in self.remove_tasks(|_| true) {
            self.events
                .push_back(Event::Complete(Completion::status_only(
                    t.req.tag,
                    t.req.dir,
                    Outcome::Retry,
                )));
        }
        self.phase = Phase::Closed;
        match self.target_logout.take() {
            Some(time2wait) => self.events.push_back(Event::TargetLogout { time2wait }),
            None => self.events.push_back(Event::LoggedOut),
        }
    }

    /// Runs the timers. Call at `next_timeout()` (or any time).
    pub fn tick(&mut self, now: Instant) {
        match self.phase {
            Phase::Closed => return,
            Phase::Login => {
                if now >= self.login_deadline {
                    self.fail(SessionError::LoginTimeout);
                }
                return;
            }
            Phase::LoggingOut => {
                if self.logout.is_some_and(|(_, d)| now >= d) {
                    warn!("no logout response, closing anyway");
                    self.close_logged_out();
                }
                return;
            }
            Phase::FullFeature => {}
        }
        if self.text.as_ref().is_some_and(|t| now >= t.deadline) {
            return self.fail(SessionError::TextTimeout);
        }
        self.check_commands(now);
        if self.phase != Phase::FullFeature {
            return;
        }
        if self
            .window_shut
            .is_some_and(|t| now.duration_since(t) >= self.cfg.timeouts.command)
        {
            return self.fail(SessionError::WindowClosed);
        }
        match self.ping {
            Some((_, sent))
                if now.duration_since(self.last_rx.max(sent)) >= self.cfg.timeouts.nop_timeout =>
            {
                self.fail(SessionError::PingTimeout)
            }
            Some(_) => {}
            None if now.duration_since(self.last_rx) >= self.cfg.timeouts.nop_interval => {
                // Idle: the buffers a burst grew go back until the next one.
                self.release_buffers();
                let itt = self.alloc_itt();
                self.send(&Pdu::NopOut(NopOut {
                    immediate: true,
                    lun: 0,
                    itt,
                    ttt: RESERVED_TAG,
                    cmdsn: self.cmdsn,
                    expstatsn: self.expstatsn,
                    data: Vec::new(),
                }));
                self.ping = Some((itt, now));
            }
            None => {}
        }
        self.pump(now);
    }

    /// Command and task management timers. Every command's deadline
    /// counts, not just the oldest's; while a TMF is in flight the
    /// commands that time out wait for it (one TMF at a time), then get
    /// their turn from `tmf_response`.
    fn check_commands(&mut self, now: Instant) {
        if self.phase != Phase::FullFeature {
            return;
        }
        if let Some(op) = self.tmf {
            if now >= op.deadline {
                self.tmf = None;
                if self.stale_tmf.len() >= STALE_TMF_MAX {
                    self.stale_tmf.pop_front();
                }
                self.stale_tmf.push_back(op.itt);
                self.escalate(op.kind, TmfFailure::Timeout, now);
            }
            return;
        }
        let next = self.cmdsn;
        let expired = self
            .tasks
            .values()
            .filter(|t| t.deadline <= now)
            .min_by_key(|t| (t.deadline, t.cmdsn.wrapping_sub(next)))
            .map(|t| t.itt);
        if let Some(itt) = expired {
            warn!(
                "itt 0x{itt:08x}: no answer in {}s, ABORT TASK",
                self.cfg.timeouts.command.as_secs()
            );
            self.counters.timeouts += 1;
            self.send_tmf(TmfKind::AbortTask { itt }, now);
        }
    }

    /// When `tick` next has work.
    pub fn next_timeout(&self) -> Option<Instant> {
        let mut next = match self.phase {
            Phase::Closed => return None,
            Phase::Login => return Some(self.login_deadline),
            Phase::LoggingOut => return self.logout.map(|(_, d)| d),
            Phase::FullFeature => match self.ping {
                Some((_, sent)) => self.last_rx.max(sent) + self.cfg.timeouts.nop_timeout,
                None => self.last_rx + self.cfg.timeouts.nop_interval,
            },
        };
        if let Some(t) = &self.text {
            next = next.min(t.deadline);
        }
        if let Some(t) = self.window_shut {
            next = next.min(t + self.cfg.timeouts.command);
        }
        // Command deadlines only count when a TMF could go out: one that
        // passed while another TMF is in flight would be a time in the past.
        let commands = match &self.tmf {
            Some(op) => Some(op.deadline),
            None => self.tasks.values().map(|t| t.deadline).min(),
        };
        if let Some(d) = commands {
            next = next.min(d);
        }
        Some(next)
    }
}
