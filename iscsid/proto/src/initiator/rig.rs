//! A test rig for the `Initiator`: it plays the daemon (performs every
//! `Action` at once) and every target portal (a scripted fake target per
//! connection that decodes what the initiator sends and answers it), on a
//! fake clock.

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{
    Action, ClientId, CloseCause, ConnId, Entropy, EntropyError, Initiator, InitiatorConfig,
    KernelCommand, SessionStatus, TargetConfig,
};
use crate::discovery::TargetRecord;
use crate::framing::Framer;
use crate::login::{FULL_FEATURE, OPERATIONAL};
use crate::login_tests::{answer, keys, kv, op_answer, val};
use crate::negotiate::SessionKind;
use crate::pdu::{
    AsyncMsg, DataIn, Digests, LoginReq, LoginRsp, LogoutRsp, NopIn, Pdu, ScsiResponse, TextRsp,
    MAX_DATA_SEGMENT_LEN, RESERVED_TAG,
};
use crate::scsi::Direction;
use crate::task::{Completion, Placement, Tag};
use crate::text;

pub(super) const INITIATOR: &str = "iqn.1995-11.org.openbsd.iscsid:rig";
pub(super) const TARGET: &str = "iqn.2026-11.org.example:disk";

/// A deterministic random source: a 64-bit LCG from `seed`. It fails
/// once `budget` calls have been made (if a budget is set); `calls`
/// counts the calls.
pub(super) struct Seq {
    state: u64,
    budget: Option<u32>,
    calls: Rc<Cell<u32>>,
}

impl Seq {
    pub(super) fn new(seed: u64) -> Seq {
        Seq {
            state: seed,
            budget: None,
            calls: Rc::new(Cell::new(0)),
        }
    }

    /// Fails from call `n + 1` on.
    pub(super) fn failing_after(seed: u64, n: u32) -> (Seq, Rc<Cell<u32>>) {
        let s = Seq {
            budget: Some(n),
            ..Seq::new(seed)
        };
        let calls = s.calls.clone();
        (s, calls)
    }
}

impl Entropy for Seq {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyError> {
        let n = self.calls.get() + 1;
        self.calls.set(n);
        if self.budget.is_some_and(|b| n > b) {
            return Err(EntropyError);
        }
        for b in buf {
            self.state = self
                .state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            *b = (self.state >> 33) as u8;
        }
        Ok(())
    }
}

/// How a portal answers the Login Requests of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LoginPlan {
    /// AuthMethod None, then our operational offer echoed.
    Accept,
    /// Login status class 1 with this TargetAddress.
    Redirect { addr: String, permanent: bool },
    /// A failure status class and detail.
    Fail(u8, u8),
    /// Picks CHAP, and hangs up (EOF) on the CHAP_A offer.
    ChapHangUp,
    /// Picks CHAP, offers MD5 with a challenge, and hangs up on the
    /// initiator's CHAP response (which it records).
    ChapChallengeHangUp,
    /// Hangs up (EOF) on the first Login Request.
    HangUp,
    /// Never answers.
    Silent,
}

/// A scripted target portal.
#[derive(Debug, Clone)]
pub(super) struct Portal {
    /// Connections are refused (closed with `CloseCause::Refused`).
    pub refuse: bool,
    /// Plans for the next connections, in order; then `login`.
    pub logins: VecDeque<LoginPlan>,
    pub login: LoginPlan,
    /// SCSI commands get GOOD (with Data-In for reads); else no answer.
    pub answer_scsi: bool,
    pub answer_logout: bool,
    /// The SendTargets answer.
    pub send_targets: Vec<(String, String)>,
    /// Text Responses wait for `release`.
    pub hold_text: bool,
    /// SCSI answers wait for `release`.
    pub hold_scsi: bool,
    /// Sense data for the next SCSI commands, one each (CHECK CONDITION).
    pub sense: VecDeque<Vec<u8>>,
}

impl Default for Portal {
    fn default() -> Portal {
        Portal {
            refuse: false,
            logins: VecDeque::new(),
            login: LoginPlan::Accept,
            answer_scsi: true,
            answer_logout: true,
            send_targets: Vec::new(),
            hold_text: false,
            hold_scsi: false,
            sense: VecDeque::new(),
        }
    }
}

/// The target end of one connection.
struct FakeConn {
    addr: SocketAddr,
    plan: LoginPlan,
    rx: Framer,
    statsn: u32,
    expcmdsn: u32,
    /// Answers held back.
    pending: Vec<Pdu>,
}

impl FakeConn {
    /// StatSN, ExpCmdSN, MaxCmdSN for the next target PDU.
    fn sns(&mut self, advance: bool) -> (u32, u32, u32) {
        let st = self.statsn;
        if advance {
            self.statsn = self.statsn.wrapping_add(1);
        }
        (st, self.expcmdsn, self.expcmdsn.wrapping_add(31))
    }

    fn login_rsp(&mut self, mut rsp: LoginRsp) -> Pdu {
        let (st, exp, max) = self.sns(true);
        (rsp.statsn, rsp.expcmdsn, rsp.maxcmdsn) = (st, exp, max);
        Pdu::LoginRsp(rsp)
    }

    fn failure(&mut self, req: &LoginReq, class: u8, detail: u8, data: Vec<u8>) -> Pdu {
        let rsp = LoginRsp {
            status_class: class,
            status_detail: detail,
            ..answer(req, 0, false, 0, data)
        };
        self.login_rsp(rsp)
    }
}

/// What a fake target does with one PDU.
enum Reply {
    Pdus(Vec<Pdu>),
    HangUp,
}

/// A recorded action with the time it came out.
#[derive(Debug)]
pub(super) struct Timed<T> {
    pub at: Instant,
    pub what: T,
}

pub(super) struct Rig {
    pub init: Initiator,
    pub t0: Instant,
    pub now: Instant,
    pub portals: BTreeMap<SocketAddr, Portal>,
    conns: BTreeMap<ConnId, FakeConn>,
    /// Every Connect: when, which connection, where.
    pub connects: Vec<Timed<(ConnId, SocketAddr)>>,
    /// The local address of each Connect.
    pub locals: Vec<Option<std::net::IpAddr>>,
    pub closes: Vec<Timed<ConnId>>,
    /// Every PDU the initiator sent, by connection.
    pub sent: Vec<(ConnId, Pdu)>,
    pub completions: Vec<Timed<Completion>>,
    pub probes: Vec<(u32, Option<u32>)>,
    pub detaches: Vec<(u32, Option<u32>)>,
    pub discovered: Vec<(ClientId, Vec<TargetRecord>)>,
    pub discover_failed: Vec<(ClientId, String)>,
    pub fatal: Vec<EntropyError>,
    /// Every action and every byte sent, with times relative to t0, for
    /// comparing runs.
    pub log: Vec<String>,
    /// CHAP keys of the responses `ChapChallengeHangUp` recorded.
    pub chap_responses: Vec<Vec<(String, String)>>,
    /// Read data goes to `placed` (as the engine's arena slots), for every
    /// command the initiator lets the shell place.
    pub placing: bool,
    pub placed: BTreeMap<Tag, Vec<u8>>,
}

/// The shell's buffers when `placing`: any tag, any offset.
struct Buffers<'a>(&'a mut BTreeMap<Tag, Vec<u8>>);

impl Placement for Buffers<'_> {
    fn place(&mut self, tag: Tag, offset: usize, data: &[u8]) -> bool {
        let b = self.0.entry(tag).or_default();
        if b.len() < offset + data.len() {
            b.resize(offset + data.len(), 0);
        }
        b[offset..offset + data.len()].copy_from_slice(data);
        true
    }
}

impl Rig {
    pub(super) fn new(seed: u64) -> Rig {
        Rig::with_entropy(Box::new(Seq::new(seed)))
    }

    pub(super) fn with_entropy(rng: Box<dyn Entropy>) -> Rig {
        let init = Initiator::new(INITIATOR.into(), rng).expect("random source");
        let t0 = Instant::now();
        Rig {
            init,
            t0,
            now: t0,
            portals: BTreeMap::new(),
            conns: BTreeMap::new(),
            connects: Vec::new(),
            locals: Vec::new(),
            closes: Vec::new(),
            sent: Vec::new(),
            completions: Vec::new(),
            probes: Vec::new(),
            detaches: Vec::new(),
            discovered: Vec::new(),
            discover_failed: Vec::new(),
            fatal: Vec::new(),
            log: Vec::new(),
            chap_responses: Vec::new(),
            placing: false,
            placed: BTreeMap::new(),
        }
    }

    pub(super) fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    pub(super) fn portal(&mut self, addr: SocketAddr) -> &mut Portal {
        self.portals.entry(addr).or_default()
    }

    pub(super) fn reload(&mut self, cfg: InitiatorConfig) -> super::ReloadReport {
        let r = self
            .init
            .reload(cfg, self.now)
            .expect("configuration taken");
        self.step();
        r
    }

    pub(super) fn command(&mut self, c: KernelCommand) {
        self.init.command(c, self.now);
        self.step();
    }

    pub(super) fn discover(&mut self, client: ClientId, cfg: TargetConfig) {
        self.init
            .discover(client, cfg, self.now)
            .expect("discovery started");
        self.step();
    }

    /// The live connection to a fake target, the newest first.
    pub(super) fn live_conns(&self) -> Vec<ConnId> {
        self.conns.keys().rev().copied().collect()
    }

    /// The target end of `conn` goes silent: it no longer reads or answers.
    pub(super) fn forget_conn(&mut self, conn: ConnId) {
        self.conns.remove(&conn);
    }

    /// The connection drops (the daemon saw `cause` on its socket).
    pub(super) fn drop_conn(&mut self, conn: ConnId, cause: CloseCause) {
        self.conns.remove(&conn);
        self.init.closed(conn, cause, self.now);
        self.step();
    }

    /// Performs every action queued; answers what the targets get.
    pub(super) fn step(&mut self) {
        let mut guard = 0;
        while let Some(a) = self.init.poll_action() {
            guard += 1;
            assert!(guard < 100_000, "the initiator keeps producing actions");
            let rel = self.now.duration_since(self.t0);
            self.log.push(format!("{rel:?} {a:?}"));
            match a {
                Action::Connect { conn, addr, local } => {
                    self.locals.push(local);
                    self.connects.push(Timed {
                        at: self.now,
                        what: (conn, addr),
                    });
                    let portal = self.portal(addr);
                    if portal.refuse {
                        self.init.closed(conn, CloseCause::Refused, self.now);
                        continue;
                    }
                    let plan = portal.logins.pop_front().unwrap_or(portal.login.clone());
                    self.conns.insert(
                        conn,
                        FakeConn {
                            addr,
                            plan,
                            rx: Framer::new(MAX_DATA_SEGMENT_LEN),
                            statsn: 0x5000,
                            expcmdsn: 0,
                            pending: Vec::new(),
                        },
                    );
                    self.init.connected(conn, self.now);
                }
                Action::Send(conn) => self.deliver(conn),
                Action::Close(conn) => {
                    self.conns.remove(&conn);
                    self.closes.push(Timed {
                        at: self.now,
                        what: conn,
                    });
                }
                Action::Complete(c) => self.completions.push(Timed {
                    at: self.now,
                    what: c,
                }),
                Action::Probe { target, lun } => self.probes.push((target, lun)),
                Action::Detach { target, lun } => self.detaches.push((target, lun)),
                Action::Discovered { client, targets } => self.discovered.push((client, targets)),
                Action::DiscoverFailed { client, error } => {
                    self.discover_failed.push((client, error))
                }
                Action::Fatal(e) => self.fatal.push(e),
            }
        }
    }

    /// Moves the initiator's bytes to the fake target and its answers back.
    fn deliver(&mut self, conn: ConnId) {
        let mut bytes = Vec::new();
        loop {
            let n = {
                let d = self.init.tx_data(conn);
                bytes.extend_from_slice(d);
                d.len()
            };
            if n == 0 {
                break;
            }
            self.init.tx_advance(conn, n);
        }
        let rel = self.now.duration_since(self.t0);
        self.log
            .push(format!("{rel:?} bytes {conn:?} {bytes:02x?}"));
        let Some(fc) = self.conns.get_mut(&conn) else {
            return;
        };
        fc.rx.push(&bytes);
        let mut pdus = Vec::new();
        while let Some(p) = fc.rx.next().expect("the initiator's PDUs decode") {
            pdus.push(p);
        }
        let mut out = Vec::new();
        let mut hangup = false;
        for p in pdus {
            self.sent.push((conn, p.clone()));
            match self.reply(conn, p) {
                Reply::Pdus(mut v) => out.append(&mut v),
                Reply::HangUp => {
                    hangup = true;
                    break;
                }
            }
        }
        if !out.is_empty() {
            let mut wire = Vec::new();
            for p in &out {
                p.encode(Digests::default(), &mut wire);
            }
            self.feed(conn, &wire);
        }
        if hangup {
            self.conns.remove(&conn);
            self.init.closed(conn, CloseCause::Eof, self.now);
        }
    }

    /// The target on `conn` sends the answers it held back.
    pub(super) fn release(&mut self, conn: ConnId) {
        let fc = self.conns.get_mut(&conn).expect("live connection");
        let mut wire = Vec::new();
        for p in fc.pending.drain(..) {
            p.encode(Digests::default(), &mut wire);
        }
        self.feed(conn, &wire);
        self.step();
    }

    /// The target on `conn` sends an Asynchronous Message.
    pub(super) fn async_msg(&mut self, conn: ConnId, event: u8, param3: u16, data: Vec<u8>) {
        let fc = self.conns.get_mut(&conn).expect("live connection");
        let (statsn, expcmdsn, maxcmdsn) = fc.sns(true);
        let p = Pdu::AsyncMsg(AsyncMsg {
            lun: 0,
            statsn,
            expcmdsn,
            maxcmdsn,
            event,
            vcode: 0,
            param1: 0,
            param2: 0,
            param3,
            data,
        });
        let mut wire = Vec::new();
        p.encode(Digests::default(), &mut wire);
        self.feed(conn, &wire);
        self.step();
    }

    /// Bytes from the target on `conn`; false if the initiator took none.
    pub(super) fn feed(&mut self, conn: ConnId, b: &[u8]) -> bool {
        let mut off = 0;
        while off < b.len() {
            let want = b.len() - off;
            let Some(room) = self.init.rx_space(conn, want) else {
                return false;
            };
            let n = room.len().min(want);
            room[..n].copy_from_slice(&b[off..off + n]);
            if self.placing {
                let mut place = Buffers(&mut self.placed);
                self.init.rx_filled_with(conn, n, self.now, &mut place);
            } else {
                self.init.rx_filled(conn, n, self.now);
            }
            off += n;
        }
        true
    }

    fn reply(&mut self, conn: ConnId, p: Pdu) -> Reply {
        let addr = self.conns[&conn].addr;
        let portal = self.portals.get(&addr).cloned().unwrap_or_default();
        let fc = self.conns.get_mut(&conn).expect("live connection");
        let pdu = match p {
            Pdu::LoginReq(r) => {
                fc.expcmdsn = r.cmdsn;
                let k = keys(&r.data);
                match fc.plan.clone() {
                    LoginPlan::Silent => return Reply::Pdus(Vec::new()),
                    LoginPlan::HangUp => return Reply::HangUp,
                    LoginPlan::Fail(class, detail) => fc.failure(&r, class, detail, Vec::new()),
                    LoginPlan::Redirect { addr, permanent } => {
                        let detail = if permanent { 2 } else { 1 };
                        let data = kv(&[("TargetAddress", &format!("{addr},1"))]);
                        fc.failure(&r, 1, detail, data)
                    }
                    LoginPlan::ChapHangUp | LoginPlan::ChapChallengeHangUp
                        if r.csg == 0 && val(&k, "AuthMethod").is_some() =>
                    {
                        let rsp = answer(&r, 0, false, 0, kv(&[("AuthMethod", "CHAP")]));
                        fc.login_rsp(rsp)
                    }
                    LoginPlan::ChapHangUp => {
                        self.chap_responses.push(k);
                        return Reply::HangUp;
                    }
                    LoginPlan::ChapChallengeHangUp if val(&k, "CHAP_A").is_some() => {
                        let c = crate::chap::encode_binary(&[0x11; 16]);
                        let data = kv(&[("CHAP_A", "5"), ("CHAP_I", "3"), ("CHAP_C", &c)]);
                        let rsp = answer(&r, 0, false, 0, data);
                        fc.login_rsp(rsp)
                    }
                    LoginPlan::ChapChallengeHangUp => {
                        self.chap_responses.push(k);
                        return Reply::HangUp;
                    }
                    LoginPlan::Accept if r.csg == 0 => {
                        let rsp = answer(&r, 0, true, OPERATIONAL, kv(&[("AuthMethod", "None")]));
                        fc.login_rsp(rsp)
                    }
                    LoginPlan::Accept => {
                        let data = text::encode(
                            op_answer(&k, &[])
                                .iter()
                                .map(|(k, v)| (k.as_str(), v.as_str())),
                        );
                        let rsp = answer(&r, 0, true, FULL_FEATURE, data);
                        fc.login_rsp(rsp)
                    }
                }
            }
            Pdu::ScsiCommand(c) => {
                if !c.immediate {
                    fc.expcmdsn = c.cmdsn.wrapping_add(1);
                }
                if !portal.answer_scsi {
                    return Reply::Pdus(Vec::new());
                }
                let (statsn, expcmdsn, maxcmdsn) = fc.sns(true);
                let sense = self
                    .portals
                    .get_mut(&addr)
                    .and_then(|p| p.sense.pop_front());
                let rsp = if let Some(sense) = sense {
                    let mut data = (sense.len() as u16).to_be_bytes().to_vec();
                    data.extend_from_slice(&sense);
                    Pdu::ScsiResponse(ScsiResponse {
                        status: crate::pdu::status::CHECK_CONDITION,
                        itt: c.itt,
                        statsn,
                        expcmdsn,
                        maxcmdsn,
                        data,
                        ..Default::default()
                    })
                } else if c.read && c.expected_len > 0 {
                    Pdu::DataIn(DataIn {
                        final_: true,
                        status_present: true,
                        status: 0,
                        lun: c.lun,
                        itt: c.itt,
                        ttt: RESERVED_TAG,
                        statsn,
                        expcmdsn,
                        maxcmdsn,
                        datasn: 0,
                        buffer_offset: 0,
                        data: vec![0xa5; c.expected_len as usize],
                        ..Default::default()
                    })
                } else {
                    Pdu::ScsiResponse(ScsiResponse {
                        status: 0,
                        itt: c.itt,
                        statsn,
                        expcmdsn,
                        maxcmdsn,
                        ..Default::default()
                    })
                };
                if portal.hold_scsi {
                    fc.pending.push(rsp);
                    return Reply::Pdus(Vec::new());
                }
                rsp
            }
            Pdu::NopOut(n) => {
                if n.itt == RESERVED_TAG {
                    return Reply::Pdus(Vec::new());
                }
                let (statsn, expcmdsn, maxcmdsn) = fc.sns(true);
                Pdu::NopIn(NopIn {
                    lun: n.lun,
                    itt: n.itt,
                    ttt: RESERVED_TAG,
                    statsn,
                    expcmdsn,
                    maxcmdsn,
                    data: n.data,
                })
            }
            Pdu::LogoutReq(l) => {
                if !portal.answer_logout {
                    return Reply::Pdus(Vec::new());
                }
                let (statsn, expcmdsn, maxcmdsn) = fc.sns(true);
                Pdu::LogoutRsp(LogoutRsp {
                    response: 0,
                    itt: l.itt,
                    statsn,
                    expcmdsn,
                    maxcmdsn,
                    time2wait: 0,
                    time2retain: 0,
                })
            }
            Pdu::TextReq(t) => {
                if !t.immediate {
                    fc.expcmdsn = t.cmdsn.wrapping_add(1);
                }
                let (statsn, expcmdsn, maxcmdsn) = fc.sns(true);
                let data = text::encode(
                    portal
                        .send_targets
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str())),
                );
                let rsp = Pdu::TextRsp(TextRsp {
                    final_: true,
                    cont: false,
                    lun: 0,
                    itt: t.itt,
                    ttt: RESERVED_TAG,
                    statsn,
                    expcmdsn,
                    maxcmdsn,
                    data,
                });
                if portal.hold_text {
                    fc.pending.push(rsp);
                    return Reply::Pdus(Vec::new());
                }
                rsp
            }
            // Task management and anything else: no answer.
            _ => return Reply::Pdus(Vec::new()),
        };
        Reply::Pdus(vec![pdu])
    }

    /// Runs time forward to `t`, handling every timeout on its way at its
    /// exact deadline.
    pub(super) fn run_until(&mut self, t: Instant) {
        self.step();
        let mut guard = 0;
        while let Some(d) = self.init.poll_timeout() {
            if d > t {
                break;
            }
            guard += 1;
            assert!(guard < 10_000, "timeout at {d:?} never handled");
            self.now = self.now.max(d);
            self.init.handle_timeout(self.now);
            self.step();
        }
        self.now = self.now.max(t);
        self.init.handle_timeout(self.now);
        self.step();
    }

    pub(super) fn run_ms(&mut self, ms: u64) {
        let t = self.at(ms);
        self.run_until(t);
    }

    pub(super) fn status(&self) -> Vec<SessionStatus> {
        self.init.status(self.now)
    }

    pub(super) fn status_of(&self, name: &str) -> SessionStatus {
        self.status()
            .into_iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no session {name}"))
    }

    /// Login Requests sent on `conn`.
    pub(super) fn logins_on(&self, conn: ConnId) -> Vec<LoginReq> {
        self.sent
            .iter()
            .filter(|(c, _)| *c == conn)
            .filter_map(|(_, p)| match p {
                Pdu::LoginReq(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    /// PDUs sent on `conn` for which `f` holds.
    pub(super) fn count_on(&self, conn: ConnId, f: impl Fn(&Pdu) -> bool) -> usize {
        self.sent.iter().filter(|(c, p)| *c == conn && f(p)).count()
    }

    /// Connections opened so far, in order.
    pub(super) fn conn_ids(&self) -> Vec<ConnId> {
        self.connects.iter().map(|c| c.what.0).collect()
    }

    /// Completions so far for `tag`.
    pub(super) fn completed(&self, tag: u32) -> Vec<&Timed<Completion>> {
        self.completions
            .iter()
            .filter(|c| c.what.tag == u64::from(tag))
            .collect()
    }
}

pub(super) fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

/// A normal block for `portal` with TargetName `TARGET`.
pub(super) fn block(name: &str, portal: SocketAddr) -> TargetConfig {
    let mut t = TargetConfig::new(name, SessionKind::Normal, Some(portal));
    t.targetname = Some(TARGET.into());
    t
}

pub(super) fn config(targets: Vec<TargetConfig>) -> InitiatorConfig {
    InitiatorConfig {
        isid: None,
        initiatorname: None,
        targets,
    }
}

/// READ(10) of `len` bytes from LUN 0 of vscsi target `target`.
pub(super) fn read(tag: u32, target: u32, len: u32) -> KernelCommand {
    let blocks = (len / 512) as u16;
    let mut cdb = vec![0x28, 0, 0, 0, 0, 0x10, 0, 0, 0, 0];
    cdb[7..9].copy_from_slice(&blocks.to_be_bytes());
    KernelCommand {
        tag,
        target,
        lun: 0,
        cdb,
        dir: Direction::Read,
        datalen: len,
        data: Vec::new(),
    }
}
