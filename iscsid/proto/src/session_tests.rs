//! Session tests: a scripted target drives `Session` with PDUs.
//!
//! `Tgt` plays the target: it decodes what the session sends with a
//! framer of its own, encodes its answers with the digests in force, and
//! keeps StatSN/ExpCmdSN/MaxCmdSN as a target would. Time is a fake clock:
//! `Instant`s offset from a fixed start.

use std::time::{Duration, Instant};

use super::framing::Framer;
use super::login::{FULL_FEATURE, OPERATIONAL};
use super::login_tests::{answer, config, keys, kv, op_answer, random, val, CMDSN, TSIH};
use super::negotiate::{DigestPref, SessionKind};
use super::pdu::{
    reject, tmf, tmf_rsp, AsyncMsg, DataIn, DataOut, Digests, LoginRsp, LogoutRsp, NopIn, Pdu, R2t,
    Reject, ScsiCommand, ScsiResponse, TaskMgmtReq, TaskMgmtRsp, TextRsp, BHS_LEN,
    MAX_DATA_SEGMENT_LEN, RESERVED_TAG,
};
use super::session::{Event, Phase, Session, SessionConfig, SessionError, Timeouts, TmfFailure};
use super::task::{Completion, Gather, Placement, ScsiTask, TaskError};
use super::text;
use crate::scsi::{Direction, Outcome, ASC_RESET_OCCURRED, KEY_UNIT_ATTENTION};

const LUN1: u64 = 0x0001_0000_0000_0000;

fn cfg() -> SessionConfig {
    SessionConfig {
        login: config(None),
        queue_depth: 64,
        timeouts: Timeouts::default(),
    }
}

/// Pings out of the way, for tests of the other timers.
fn quiet(mut c: SessionConfig) -> SessionConfig {
    c.timeouts.nop_interval = Duration::from_secs(3600);
    c.timeouts.nop_timeout = Duration::from_secs(3600);
    c
}

struct Tgt {
    s: Session,
    t0: Instant,
    now: Instant,
    /// Decodes what the session sends.
    rx: Framer,
    /// Digests on what we send.
    dig: Digests,
    statsn: u32,
    expcmdsn: u32,
    window: u32,
}

impl Tgt {
    fn new(c: SessionConfig) -> Tgt {
        Tgt::new_at(c, Instant::now(), 0)
    }

    /// A session started `ms` after `t0`, on the clock of another `Tgt`.
    fn new_at(c: SessionConfig, t0: Instant, ms: u64) -> Tgt {
        let now = t0 + Duration::from_millis(ms);
        Tgt {
            s: Session::new(c, now, random()),
            t0,
            now,
            rx: Framer::new(MAX_DATA_SEGMENT_LEN),
            dig: Digests::default(),
            statsn: 0x7000,
            expcmdsn: CMDSN,
            window: 32,
        }
    }

    /// A session logged in with `over` applied to the operational answers.
    fn up(c: SessionConfig, over: &[(&str, &str)]) -> Tgt {
        let mut t = Tgt::new(c);
        t.login(over);
        t
    }

    /// Moves the clock to `ms` after the start.
    fn at(&mut self, ms: u64) -> Instant {
        self.now = self.t0 + Duration::from_millis(ms);
        self.now
    }

    fn tick(&mut self, ms: u64) {
        let now = self.at(ms);
        self.s.tick(now);
    }

    /// Everything the session queued for the wire, decoded.
    fn sent(&mut self) -> Vec<Pdu> {
        let bytes = self.s.tx_drain();
        assert_eq!(self.s.tx_pending(), 0);
        self.rx.push(&bytes);
        let mut out = Vec::new();
        while let Some(p) = self.rx.next().expect("the initiator's PDUs decode") {
            match &p {
                Pdu::ScsiCommand(c) if !c.immediate => self.expcmdsn = c.cmdsn.wrapping_add(1),
                Pdu::TextReq(c) if !c.immediate => self.expcmdsn = c.cmdsn.wrapping_add(1),
                _ => {}
            }
            out.push(p);
        }
        assert_eq!(self.rx.buffered(), 0, "half a PDU queued");
        out
    }

    fn wire(&self, pdus: &[Pdu]) -> Vec<u8> {
        let mut b = Vec::new();
        for p in pdus {
            p.encode(self.dig, &mut b);
        }
        b
    }

    fn feed(&mut self, p: Pdu) {
        self.feed_all(&[p]);
    }

    /// Several PDUs arriving in one read.
    fn feed_all(&mut self, pdus: &[Pdu]) {
        let b = self.wire(pdus);
        self.feed_bytes(&b);
    }

    fn feed_bytes(&mut self, b: &[u8]) {
        self.feed_bytes_with(b, &mut Gather);
    }

    /// Bytes from the target, in reads of at most `chunk`, read data going
    /// to `place`.
    fn feed_bytes_with(&mut self, b: &[u8], place: &mut dyn Placement) {
        let mut off = 0;
        while off < b.len() {
            let want = b.len() - off;
            let room = self.s.rx_space(want);
            let n = room.len().min(want);
            room[..n].copy_from_slice(&b[off..off + n]);
            self.s.rx_filled_with(n, self.now, place);
            off += n;
        }
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.s.poll_event()).collect()
    }

    /// StatSN, ExpCmdSN, MaxCmdSN for the next target PDU.
    fn sns(&mut self, advance: bool) -> (u32, u32, u32) {
        let st = self.statsn;
        if advance {
            self.statsn = self.statsn.wrapping_add(1);
        }
        let max = self.expcmdsn.wrapping_add(self.window).wrapping_sub(1);
        (st, self.expcmdsn, max)
    }

    fn login(&mut self, over: &[(&str, &str)]) {
        let r1 = match self.sent().as_slice() {
            [Pdu::LoginReq(r)] => r.clone(),
            other => panic!("expected the first Login Request: {other:?}"),
        };
        let (st, exp, max) = self.sns(true);
        let mut rsp = answer(&r1, st, true, OPERATIONAL, kv(&[("AuthMethod", "None")]));
        (rsp.expcmdsn, rsp.maxcmdsn) = (exp, max);
        self.feed(Pdu::LoginRsp(rsp));
        let r2 = match self.sent().as_slice() {
            [Pdu::LoginReq(r)] => r.clone(),
            other => panic!("expected the operational Login Request: {other:?}"),
        };
        assert_eq!(r2.expstatsn, self.statsn);
        let data = text::encode(
            op_answer(&keys(&r2.data), over)
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let (st, exp, max) = self.sns(true);
        let mut rsp = answer(&r2, st, true, FULL_FEATURE, data);
        (rsp.expcmdsn, rsp.maxcmdsn) = (exp, max);
        self.feed(Pdu::LoginRsp(rsp));
        let ev = self.events();
        assert!(matches!(ev.as_slice(), [Event::LoggedIn]), "{ev:?}");
        assert_eq!(self.s.phase(), Phase::FullFeature);
        let p = self.s.params();
        self.dig = Digests {
            header: p.header_digest,
            data: p.data_digest,
        };
        self.rx.set_digests(self.dig);
    }

    fn data_in(&mut self, itt: u32, datasn: u32, off: u32, data: Vec<u8>, st: Option<u8>) -> Pdu {
        let (statsn, expcmdsn, maxcmdsn) = self.sns(st.is_some());
        Pdu::DataIn(DataIn {
            final_: st.is_some(),
            status_present: st.is_some(),
            status: st.unwrap_or(0),
            lun: LUN1,
            itt,
            ttt: RESERVED_TAG,
            statsn,
            expcmdsn,
            maxcmdsn,
            datasn,
            buffer_offset: off,
            data,
            ..Default::default()
        })
    }

    fn response(&mut self, itt: u32, status: u8, sense: &[u8]) -> Pdu {
        let (statsn, expcmdsn, maxcmdsn) = self.sns(true);
        let mut data = Vec::new();
        if !sense.is_empty() {
            data.extend_from_slice(&(sense.len() as u16).to_be_bytes());
            data.extend_from_slice(sense);
        }
        Pdu::ScsiResponse(ScsiResponse {
            status,
            itt,
            statsn,
            expcmdsn,
            maxcmdsn,
            data,
            ..Default::default()
        })
    }

    fn r2t(&mut self, itt: u32, ttt: u32, r2tsn: u32, off: u32, len: u32) -> Pdu {
        let (statsn, expcmdsn, maxcmdsn) = self.sns(false);
        Pdu::R2t(R2t {
            lun: LUN1,
            itt,
            ttt,
            statsn,
            expcmdsn,
            maxcmdsn,
            r2tsn,
            buffer_offset: off,
            desired_len: len,
        })
    }

    fn nop_in(&mut self, itt: u32, ttt: u32, lun: u64, data: Vec<u8>) -> Pdu {
        let (statsn, expcmdsn, maxcmdsn) = self.sns(itt != RESERVED_TAG);
        Pdu::NopIn(NopIn {
            lun,
            itt,
            ttt,
            statsn,
            expcmdsn,
            maxcmdsn,
            data,
        })
    }

    fn async_msg(&mut self, event: u8, p2: u16, p3: u16, data: Vec<u8>) -> Pdu {
        let (statsn, expcmdsn, maxcmdsn) = self.sns(true);
        Pdu::AsyncMsg(AsyncMsg {
            lun: LUN1,
            statsn,
            expcmdsn,
            maxcmdsn,
            event,
            vcode: 0,
            param1: 0,
            param2: p2,
            param3: p3,
            data,
        })
    }

    fn reject(&mut self, reason: u8, rejected: &Pdu) -> Pdu {
        let (statsn, expcmdsn, maxcmdsn) = self.sns(true);
        let mut hdr = Vec::new();
        rejected.encode(Digests::default(), &mut hdr);
        hdr.truncate(BHS_LEN);
        Pdu::Reject(Reject {
            reason,
            statsn,
            expcmdsn,
            maxcmdsn,
            datasn_r2tsn: 0,
            data: hdr,
        })
    }

    fn tmf_rsp(&mut self, itt: u32, response: u8) -> Pdu {
        let (statsn, expcmdsn, maxcmdsn) = self.sns(true);
        Pdu::TaskMgmtRsp(TaskMgmtRsp {
            response,
            itt,
            statsn,
            expcmdsn,
            maxcmdsn,
        })
    }

    fn logout_rsp(&mut self, itt: u32) -> Pdu {
        let (statsn, expcmdsn, maxcmdsn) = self.sns(true);
        Pdu::LogoutRsp(LogoutRsp {
            response: 0,
            itt,
            statsn,
            expcmdsn,
            maxcmdsn,
            time2wait: 0,
            time2retain: 0,
        })
    }

    fn text_rsp(&mut self, itt: u32, ttt: u32, last: bool, data: Vec<u8>) -> Pdu {
        let (statsn, expcmdsn, maxcmdsn) = self.sns(true);
        Pdu::TextRsp(TextRsp {
            final_: last,
            cont: !last,
            lun: 0,
            itt,
            ttt,
            statsn,
            expcmdsn,
            maxcmdsn,
            data,
        })
    }

    /// Submits `t` and returns the SCSI Command (and any Data-Out) sent.
    fn issue(&mut self, t: ScsiTask) -> (ScsiCommand, Vec<DataOut>) {
        self.s.submit(t, self.now);
        let mut pdus = self.sent().into_iter();
        let Some(Pdu::ScsiCommand(c)) = pdus.next() else {
            panic!("no SCSI Command sent")
        };
        (c, pdus.map(data_out).collect())
    }

    /// The one Task Management Function Request sent since the last look.
    fn one_tmf(&mut self) -> TaskMgmtReq {
        match self.sent().as_slice() {
            [Pdu::TaskMgmtReq(m)] => m.clone(),
            other => panic!("expected one TMF request: {other:?}"),
        }
    }

    /// The one failure the session reported.
    fn failure(&mut self) -> SessionError {
        let ev = self.events();
        assert_eq!(self.s.phase(), Phase::Closed, "{ev:?}");
        match ev.as_slice() {
            [.., Event::Failed(e)] => e.clone(),
            other => panic!("expected a failure: {other:?}"),
        }
    }
}

fn data_out(p: Pdu) -> DataOut {
    match p {
        Pdu::DataOut(d) => d,
        other => panic!("expected Data-Out, got {other:?}"),
    }
}

fn read(tag: u64, len: u32) -> ScsiTask {
    let blocks = (len / 512) as u16;
    let mut cdb = vec![0x28, 0, 0, 0, 0, 0x10, 0, 0, 0, 0];
    cdb[7..9].copy_from_slice(&blocks.to_be_bytes());
    ScsiTask {
        tag,
        lun: LUN1,
        cdb,
        dir: Direction::Read,
        datalen: len,
        data: Default::default(),
        deadline: None,
    }
}

fn write(tag: u64, data: Vec<u8>) -> ScsiTask {
    let blocks = (data.len() / 512) as u16;
    let mut cdb = vec![0x2a, 0, 0, 0, 0, 0x20, 0, 0, 0, 0];
    cdb[7..9].copy_from_slice(&blocks.to_be_bytes());
    ScsiTask {
        tag,
        lun: LUN1,
        cdb,
        dir: Direction::Write,
        datalen: data.len() as u32,
        data: data.into(),
        deadline: None,
    }
}

/// Bytes that differ at every offset, so a misplaced chunk shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0])
        .collect()
}

fn completions(ev: Vec<Event>) -> Vec<Completion> {
    ev.into_iter()
        .map(|e| match e {
            Event::Complete(c) => c,
            other => panic!("expected only completions, got {other:?}"),
        })
        .collect()
}

fn one_completion(ev: Vec<Event>) -> Completion {
    let mut c = completions(ev);
    assert_eq!(c.len(), 1, "{c:?}");
    c.remove(0)
}

/// Fixed-format sense data with key, ASC and ASCQ.
fn fixed(key: u8, asc: u8, ascq: u8) -> Vec<u8> {
    let mut s = vec![0u8; 18];
    s[0] = 0x70;
    s[2] = key;
    s[7] = 10;
    s[12] = asc;
    s[13] = ascq;
    s
}

// ---- login through the session ----

#[test]
fn commands_wait_for_login() {
    let mut t = Tgt::new(cfg());
    t.s.submit(read(1, 512), t.now);
    assert_eq!(t.s.queued(), 1);
    t.login(&[]);
    let pdus = t.sent();
    let [Pdu::ScsiCommand(c)] = pdus.as_slice() else {
        panic!("{pdus:?}")
    };
    assert_eq!(c.cmdsn, CMDSN, "the first command takes the login's CmdSN");
    assert_eq!(c.expstatsn, t.statsn);
    assert!(c.read && !c.write && c.final_ && !c.immediate);
    assert_eq!(c.attr, 1, "SIMPLE");
    assert_eq!(c.lun, LUN1);
    assert_eq!(c.expected_len, 512);
    assert_eq!(&c.cdb[..10], &read(1, 512).cdb[..]);
    assert_eq!(t.s.tsih(), TSIH);
    assert_eq!((t.s.in_flight(), t.s.queued()), (1, 0));
}

#[test]
fn login_timeout_and_stray_pdus() {
    let mut t = Tgt::new(cfg());
    t.sent();
    assert_eq!(t.s.next_timeout(), Some(t.t0 + Duration::from_secs(15)));
    t.tick(14_999);
    assert!(t.events().is_empty());
    t.tick(15_000);
    assert_eq!(t.failure(), SessionError::LoginTimeout);
    assert_eq!(t.s.next_timeout(), None);

    // Anything but a Login Response during login.
    let mut t = Tgt::new(cfg());
    t.sent();
    let nop = t.nop_in(RESERVED_TAG, 5, 0, Vec::new());
    t.feed(nop);
    assert_eq!(t.failure(), SessionError::UnexpectedPdu("NOP-In"));

    // A login failure status reaches the engine as a login error.
    let mut t = Tgt::new(cfg());
    let r1 = match t.sent().as_slice() {
        [Pdu::LoginReq(r)] => r.clone(),
        other => panic!("{other:?}"),
    };
    let rsp = LoginRsp {
        status_class: 2,
        status_detail: 3,
        ..answer(&r1, 1, false, 0, Vec::new())
    };
    t.feed(Pdu::LoginRsp(rsp));
    assert_eq!(
        t.failure(),
        SessionError::Login(super::login::LoginError::NotFound)
    );
}

#[test]
fn redirect_during_login() {
    let mut t = Tgt::new(cfg());
    let r1 = match t.sent().as_slice() {
        [Pdu::LoginReq(r)] => r.clone(),
        other => panic!("{other:?}"),
    };
    let rsp = LoginRsp {
        status_class: 1,
        status_detail: 1,
        ..answer(
            &r1,
            1,
            false,
            0,
            kv(&[("TargetAddress", "127.0.0.2:3261,1")]),
        )
    };
    t.feed(Pdu::LoginRsp(rsp));
    match t.events().as_slice() {
        [Event::Redirect { addr, permanent }] => {
            assert_eq!(addr, "127.0.0.2:3261");
            assert!(!permanent);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(t.s.phase(), Phase::Closed);
}

#[test]
fn login_text_limit_before_negotiation() {
    // During login only 8192 bytes of data per PDU are allowed.
    let mut t = Tgt::new(cfg());
    let r1 = match t.sent().as_slice() {
        [Pdu::LoginReq(r)] => r.clone(),
        other => panic!("{other:?}"),
    };
    let rsp = answer(&r1, 1, false, 0, vec![b'a'; 8193]);
    t.feed(Pdu::LoginRsp(rsp));
    assert_eq!(
        t.failure(),
        SessionError::DataTooLong {
            len: 8193,
            max: 8192
        }
    );
}

#[test]
fn negotiated_params_and_digests() {
    let mut c = cfg();
    c.login.prefs.header_digest = DigestPref::Crc32c;
    c.login.prefs.data_digest = DigestPref::Any;
    c.login.prefs.max_recv_dsl = 16384;
    let mut t = Tgt::up(
        c,
        &[
            ("HeaderDigest", "CRC32C"),
            ("DataDigest", "CRC32C"),
            ("MaxRecvDataSegmentLength", "4096"),
            ("FirstBurstLength", "8192"),
        ],
    );
    let p = t.s.params().clone();
    assert!(p.header_digest && p.data_digest);
    assert_eq!(
        (p.max_recv_dsl, p.max_xmit_dsl, p.first_burst),
        (16384, 4096, 8192)
    );

    // A target ping with data, both digests on: the echo carries them too.
    let ping = t.nop_in(RESERVED_TAG, 0x4444, 0, b"hello".to_vec());
    t.feed(ping);
    assert!(t.events().is_empty());
    assert_eq!(t.s.tx_pending(), BHS_LEN + 4 + 8 + 4);
    match t.sent().as_slice() {
        [Pdu::NopOut(n)] => assert_eq!((n.ttt, n.data.as_slice()), (0x4444, &b"hello"[..])),
        other => panic!("{other:?}"),
    }

    // Our MaxRecvDataSegmentLength now guards the framer.
    let big = t.data_in(0x1234, 0, 0, vec![0; 16385], None);
    t.feed(big);
    assert_eq!(
        t.failure(),
        SessionError::DataTooLong {
            len: 16385,
            max: 16384
        }
    );
}

#[test]
fn pdu_without_digest_after_login_fails() {
    let mut c = cfg();
    c.login.prefs.header_digest = DigestPref::Any;
    let mut t = Tgt::up(c, &[("HeaderDigest", "CRC32C")]);
    // A target that forgot to turn its digests on: the 4 bytes after the
    // BHS are not its CRC.
    t.dig = Digests::default();
    let nop = t.nop_in(RESERVED_TAG, RESERVED_TAG, 0, Vec::new());
    let nop2 = t.nop_in(RESERVED_TAG, RESERVED_TAG, 0, Vec::new());
    t.feed_all(&[nop, nop2]);
    assert_eq!(t.failure(), SessionError::HeaderDigest);
}

// ---- reads ----

#[test]
fn read_with_data_in_and_phase_collapsed_status() {
    let mut t = Tgt::up(cfg(), &[]);
    let (c, _) = t.issue(read(7, 10_000));
    let data = pattern(10_000);
    let d0 = t.data_in(c.itt, 0, 0, data[..4096].to_vec(), None);
    let d1 = t.data_in(c.itt, 1, 4096, data[4096..8192].to_vec(), None);
    t.feed_all(&[d0, d1]);
    assert!(t.events().is_empty());
    let d2 = t.data_in(c.itt, 2, 8192, data[8192..].to_vec(), Some(0));
    t.feed(d2);
    let done = one_completion(t.events());
    assert_eq!(done.tag, 7);
    assert_eq!(done.dir, Direction::Read);
    assert_eq!(done.status, Outcome::Good);
    assert!(done.sense.is_empty());
    assert!(done.data == data, "read data differs");
    assert_eq!(t.s.in_flight(), 0);
}

/// The shell's buffers, as the engine's arena slots: what was placed where.
#[derive(Default)]
struct Buffers {
    /// Tag -> buffer; a tag without one is refused.
    bufs: std::collections::BTreeMap<u64, Vec<u8>>,
    calls: usize,
}

impl Placement for Buffers {
    fn place(&mut self, tag: u64, offset: usize, data: &[u8]) -> bool {
        self.calls += 1;
        match self.bufs.get_mut(&tag) {
            Some(b) if offset + data.len() <= b.len() => {
                b[offset..offset + data.len()].copy_from_slice(data);
                true
            }
            _ => false,
        }
    }
}

/// Read data goes to the shell's buffer PDU by PDU, straight from the
/// receive buffer; the completion carries none and says how much.
#[test]
fn read_data_is_placed_where_the_shell_has_a_buffer() {
    let mut t = Tgt::up(cfg(), &[]);
    let (c, _) = t.issue(read(7, 10_000));
    let (c2, _) = t.issue(read(8, 100));
    let data = pattern(10_000);
    let mut place = Buffers::default();
    place.bufs.insert(7, vec![0; 10_000]);
    let pdus = [
        t.data_in(c.itt, 0, 0, data[..4096].to_vec(), None),
        t.data_in(c.itt, 1, 4096, data[4096..].to_vec(), Some(0)),
        // No buffer for tag 8: the core gathers its data.
        t.data_in(c2.itt, 0, 0, data[..100].to_vec(), Some(0)),
    ];
    let b = t.wire(&pdus);
    // In odd-sized reads, so PDUs straddle them.
    for piece in b.chunks(1000) {
        t.feed_bytes_with(piece, &mut place);
    }
    let done = completions(t.events());
    let [a, b] = done.as_slice() else {
        panic!("{done:?}");
    };
    assert_eq!(
        (a.tag, a.status, a.placed, a.data.len()),
        (7, Outcome::Good, 10_000, 0)
    );
    assert!(place.bufs[&7] == data, "placed data differs");
    assert_eq!((b.tag, b.placed), (8, 0));
    assert_eq!(b.data, data[..100]);
    assert_eq!(place.calls, 3);
}

/// A shell that takes a command's first data and then has no room for the
/// rest breaks the read: the connection goes (and the command is retried).
#[test]
fn placement_refused_after_the_first_data_fails_the_connection() {
    let mut t = Tgt::up(cfg(), &[]);
    let (c, _) = t.issue(read(7, 8192));
    let data = pattern(8192);
    let mut place = Buffers::default();
    place.bufs.insert(7, vec![0; 4096]);
    let pdus = [
        t.data_in(c.itt, 0, 0, data[..4096].to_vec(), None),
        t.data_in(c.itt, 1, 4096, data[4096..].to_vec(), Some(0)),
    ];
    let b = t.wire(&pdus);
    t.feed_bytes_with(&b, &mut place);
    assert_eq!(
        t.failure(),
        SessionError::Task {
            itt: c.itt,
            error: TaskError::Placement { offset: 4096 }
        }
    );
}

#[test]
fn read_underflow_residual() {
    let mut t = Tgt::up(cfg(), &[]);
    let (c, _) = t.issue(read(1, 8192));
    let Pdu::DataIn(mut d) = t.data_in(c.itt, 0, 0, pattern(3072), Some(0)) else {
        unreachable!()
    };
    d.underflow = true;
    d.residual = 5120;
    t.feed(Pdu::DataIn(d));
    let done = one_completion(t.events());
    assert_eq!(done.status, Outcome::Good);
    assert_eq!(done.data, pattern(3072), "only what arrived goes back");

    // Residual in a separate SCSI Response after the data.
    let (c, _) = t.issue(read(2, 8192));
    let d = t.data_in(c.itt, 0, 0, pattern(512), None);
    let Pdu::ScsiResponse(mut r) = t.response(c.itt, 0, &[]) else {
        unreachable!()
    };
    r.underflow = true;
    r.residual = 8192 - 512;
    t.feed_all(&[d, Pdu::ScsiResponse(r)]);
    let done = one_completion(t.events());
    assert_eq!(
        (done.tag, done.status, done.data.len()),
        (2, Outcome::Good, 512)
    );
}

#[test]
fn status_and_sense() {
    let mut t = Tgt::up(cfg(), &[]);
    // Fixed sense after Data-In.
    let (c, _) = t.issue(read(1, 1024));
    let d = t.data_in(c.itt, 0, 0, pattern(1024), None);
    let medium = fixed(0x3, 0x11, 0x00);
    let r = t.response(c.itt, 0x02, &medium);
    t.feed_all(&[d, r]);
    let done = one_completion(t.events());
    assert_eq!(done.status, Outcome::Sense);
    assert_eq!(done.sense, medium);

    // Descriptor sense becomes fixed (vscsi carries only that).
    let (c, _) = t.issue(read(2, 512));
    let desc = [0x72, 0x05, 0x24, 0x00, 0, 0, 0, 0];
    let r = t.response(c.itt, 0x02, &desc);
    t.feed(r);
    let done = one_completion(t.events());
    assert_eq!(done.status, Outcome::Sense);
    assert_eq!(done.sense.len(), 18);
    assert_eq!(
        (done.sense[0], done.sense[2], done.sense[12], done.sense[13]),
        (0x70, 0x05, 0x24, 0x00)
    );

    // What the midlayer should retry, and what it should fail.
    for (status, response, want) in [
        (0x08, 0, Outcome::Retry),  // BUSY
        (0x28, 0, Outcome::Retry),  // TASK SET FULL
        (0x02, 0, Outcome::Failed), // CHECK CONDITION without sense
        (0x18, 0, Outcome::Failed), // RESERVATION CONFLICT
        (0x00, 1, Outcome::Retry),  // target failure
        (0x00, 0, Outcome::Good),
    ] {
        let (c, _) = t.issue(read(3, 512));
        let Pdu::ScsiResponse(mut r) = t.response(c.itt, status, &[]) else {
            unreachable!()
        };
        r.response = response;
        t.feed(Pdu::ScsiResponse(r));
        let done = one_completion(t.events());
        assert_eq!(done.status, want, "status {status:#x} response {response}");
    }
}

#[test]
fn reported_luns_changed_asks_for_rescan() {
    let mut t = Tgt::up(cfg(), &[]);
    let (c, _) = t.issue(read(9, 512));
    let ua = fixed(0x6, 0x3f, 0x0e);
    let r = t.response(c.itt, 0x02, &ua);
    t.feed(r);
    let ev = t.events();
    assert!(matches!(ev.first(), Some(Event::Rescan)), "{ev:?}");
    match ev.get(1) {
        Some(Event::Complete(c)) => {
            assert_eq!((c.tag, c.status), (9, Outcome::Sense));
            assert_eq!(c.sense, ua, "the UA still goes to the midlayer");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(ev.len(), 2);

    // Another unit attention is not a rescan.
    let (c, _) = t.issue(read(10, 512));
    let r = t.response(c.itt, 0x02, &fixed(0x6, 0x29, 0x00));
    t.feed(r);
    assert_eq!(one_completion(t.events()).status, Outcome::Sense);

    // The same news as an asynchronous SCSI event (SenseLength + sense).
    let mut data = vec![0, 18];
    data.extend_from_slice(&ua);
    let a = t.async_msg(0, 0, 0, data);
    t.feed(a);
    let ev = t.events();
    assert!(matches!(ev.as_slice(), [Event::Rescan]), "{ev:?}");
    let mut data = vec![0, 18];
    data.extend_from_slice(&fixed(0x6, 0x2a, 0x01));
    let a = t.async_msg(0, 0, 0, data);
    t.feed(a);
    assert!(t.events().is_empty());
    assert_eq!(t.s.phase(), Phase::FullFeature);
}

// ---- writes ----

#[test]
fn write_immediate_then_unsolicited_then_r2t() {
    let over = [
        ("InitialR2T", "No"),
        ("ImmediateData", "Yes"),
        ("FirstBurstLength", "16384"),
        ("MaxBurstLength", "65536"),
        ("MaxRecvDataSegmentLength", "4096"),
    ];
    let mut t = Tgt::up(cfg(), &over);
    let data = pattern(40_000);
    let (c, unsol) = t.issue(write(3, data.clone()));
    assert!(c.write && !c.read);
    assert!(!c.final_, "unsolicited Data-Out follows");
    assert_eq!(c.expected_len, 40_000);
    assert_eq!(c.data, data[..4096], "immediate data: the target's MRDSL");
    // FirstBurstLength 16384: 12288 more bytes in three Data-Out PDUs.
    assert_eq!(unsol.len(), 3, "{unsol:?}");
    for (i, d) in unsol.iter().enumerate() {
        let off = 4096 * (i + 1);
        assert_eq!(d.itt, c.itt);
        assert_eq!(d.ttt, RESERVED_TAG, "unsolicited");
        assert_eq!(d.lun, LUN1);
        assert_eq!(d.datasn, i as u32);
        assert_eq!(d.buffer_offset, off as u32);
        assert_eq!(d.data, data[off..off + 4096]);
        assert_eq!(d.final_, i == 2, "F only on the burst's last PDU");
        assert_eq!(d.expstatsn, t.statsn);
    }
    // The rest on request, split at the target's MRDSL.
    let r = t.r2t(c.itt, 0x55, 0, 16384, 40_000 - 16384);
    t.feed(r);
    let outs: Vec<DataOut> = t.sent().into_iter().map(data_out).collect();
    assert_eq!(outs.len(), 6);
    let mut off = 16384usize;
    for (i, d) in outs.iter().enumerate() {
        let len = (40_000 - off).min(4096);
        assert_eq!((d.ttt, d.datasn), (0x55, i as u32));
        assert_eq!(d.buffer_offset as usize, off);
        assert_eq!(d.data, data[off..off + len]);
        assert_eq!(d.final_, i == 5);
        off += len;
    }
    assert_eq!(off, 40_000);
    let r = t.response(c.itt, 0, &[]);
    t.feed(r);
    let done = one_completion(t.events());
    assert_eq!(
        (done.tag, done.dir, done.status),
        (3, Direction::Write, Outcome::Good)
    );
    assert!(done.data.is_empty());
}

#[test]
fn write_unsolicited_without_immediate_data() {
    let over = [
        ("ImmediateData", "No"),
        ("FirstBurstLength", "8192"),
        ("MaxRecvDataSegmentLength", "8192"),
    ];
    let mut t = Tgt::up(cfg(), &over);
    let data = pattern(20_000);
    let (c, unsol) = t.issue(write(1, data.clone()));
    assert!(c.data.is_empty() && !c.final_);
    assert_eq!(unsol.len(), 1);
    assert_eq!((unsol[0].buffer_offset, unsol[0].data.len()), (0, 8192));
    assert!(unsol[0].final_);

    // A small write fits in the command itself.
    let mut t = Tgt::up(cfg(), &[("InitialR2T", "No")]);
    let (c, unsol) = t.issue(write(2, pattern(3000)));
    assert!(c.final_ && unsol.is_empty());
    assert_eq!(c.data, pattern(3000));
}

#[test]
fn write_with_several_r2ts_outstanding() {
    let over = [
        ("InitialR2T", "Yes"),
        ("ImmediateData", "No"),
        ("MaxBurstLength", "16384"),
        ("MaxOutstandingR2T", "2"),
        ("MaxRecvDataSegmentLength", "8192"),
    ];
    let mut t = Tgt::up(cfg(), &over);
    let data = pattern(32_768);
    let (c, unsol) = t.issue(write(4, data.clone()));
    assert!(c.final_ && c.data.is_empty() && unsol.is_empty());
    // Both R2Ts in one read (R2TSN order is TCP order).
    let a = t.r2t(c.itt, 0x1, 0, 0, 16384);
    let b = t.r2t(c.itt, 0x2, 1, 16384, 16384);
    t.feed_all(&[a, b]);
    let outs: Vec<DataOut> = t.sent().into_iter().map(data_out).collect();
    let got: Vec<(u32, u32, u32, bool)> = outs
        .iter()
        .map(|d| (d.ttt, d.datasn, d.buffer_offset, d.final_))
        .collect();
    assert_eq!(
        got,
        [
            (1, 0, 0, false),
            (1, 1, 8192, true),
            (2, 0, 16384, false),
            (2, 1, 24576, true)
        ]
    );
    for d in &outs {
        let off = d.buffer_offset as usize;
        assert_eq!(d.data, data[off..off + 8192]);
    }
    let r = t.response(c.itt, 0, &[]);
    t.feed(r);
    assert_eq!(one_completion(t.events()).status, Outcome::Good);
}

// ---- sequence numbers and flow control ----

#[test]
fn cmdsn_window_holds_and_releases() {
    let mut t = Tgt::new(quiet(cfg()));
    t.window = 1;
    t.login(&[]);
    for tag in 0..3 {
        t.s.submit(read(tag, 512), t.now);
    }
    let sent = t.sent();
    let [Pdu::ScsiCommand(c0)] = sent.as_slice() else {
        panic!("{sent:?}")
    };
    assert_eq!(c0.cmdsn, CMDSN);
    assert_eq!((t.s.in_flight(), t.s.queued()), (1, 2));

    // The target closes the window (MaxCmdSN = ExpCmdSN - 1).
    t.window = 0;
    let nop = t.nop_in(RESERVED_TAG, RESERVED_TAG, 0, Vec::new());
    t.feed(nop);
    assert!(t.sent().is_empty());
    // A hostile MaxCmdSN far below ExpCmdSN is ignored, not obeyed.
    let (statsn, exp, _) = t.sns(false);
    t.feed(Pdu::NopIn(NopIn {
        itt: RESERVED_TAG,
        ttt: RESERVED_TAG,
        statsn,
        expcmdsn: exp,
        maxcmdsn: exp.wrapping_sub(100),
        ..Default::default()
    }));
    assert!(t.sent().is_empty() && t.events().is_empty());
    t.tick(100);
    assert!(t.sent().is_empty(), "timers do not open the window");

    // The answer to the first command opens it by two.
    t.window = 2;
    let r = t.response(c0.itt, 0, &[]);
    t.feed(r);
    assert_eq!(one_completion(t.events()).tag, 0);
    let cmdsns: Vec<u32> = t
        .sent()
        .iter()
        .map(|p| match p {
            Pdu::ScsiCommand(c) => c.cmdsn,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(cmdsns, [CMDSN + 1, CMDSN + 2]);
    assert_eq!(t.s.queued(), 0);
}

#[test]
fn queue_depth_limits_commands_in_flight() {
    let mut c = cfg();
    c.queue_depth = 2;
    let mut t = Tgt::up(c, &[]);
    for tag in 0..4 {
        t.s.submit(read(tag, 512), t.now);
    }
    let first: Vec<ScsiCommand> = t
        .sent()
        .into_iter()
        .map(|p| match p {
            Pdu::ScsiCommand(c) => c,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(first.len(), 2);
    assert_eq!((t.s.in_flight(), t.s.queued()), (2, 2));
    let r = t.response(first[1].itt, 0, &[]);
    t.feed(r);
    assert_eq!(one_completion(t.events()).tag, 1);
    let next = t.sent();
    let [Pdu::ScsiCommand(c2)] = next.as_slice() else {
        panic!("{next:?}")
    };
    assert_eq!(c2.cmdsn, first[1].cmdsn + 1);
    assert_ne!(c2.itt, first[0].itt, "ITTs in flight are never reused");
    assert_eq!((t.s.in_flight(), t.s.queued()), (2, 1));
}

#[test]
fn expstatsn_tracking() {
    let over = [("InitialR2T", "Yes"), ("ImmediateData", "No")];
    let mut t = Tgt::up(quiet(cfg()), &over);
    let base = t.statsn;
    let (c, _) = t.issue(write(1, pattern(1024)));
    assert_eq!(c.expstatsn, base);
    // An R2T repeats the next StatSN without using it.
    let r = t.r2t(c.itt, 9, 0, 0, 1024);
    t.feed(r);
    let outs: Vec<DataOut> = t.sent().into_iter().map(data_out).collect();
    assert_eq!(outs[0].expstatsn, base);
    // A target ping neither.
    let nop = t.nop_in(RESERVED_TAG, RESERVED_TAG, 0, Vec::new());
    t.feed(nop);
    // Data-In without status carries no StatSN, whatever the field says.
    let (c2, _) = t.issue(read(2, 1024));
    let Pdu::DataIn(mut d) = t.data_in(c2.itt, 0, 0, pattern(512), None) else {
        unreachable!()
    };
    d.statsn = base + 1000;
    t.feed(Pdu::DataIn(d));
    let r = t.response(c.itt, 0, &[]);
    t.feed(r);
    let (c3, _) = t.issue(read(3, 512));
    assert_eq!(c3.expstatsn, base + 1, "one status seen");
    // A stale StatSN does not move it back.
    let Pdu::ScsiResponse(mut old) = t.response(c2.itt, 0, &[]) else {
        unreachable!()
    };
    old.statsn = base - 5;
    t.feed(Pdu::ScsiResponse(old));
    t.s.submit(read(4, 512), t.now);
    let next = t.sent();
    let [Pdu::ScsiCommand(c4)] = next.as_slice() else {
        panic!("{next:?}")
    };
    assert_eq!(c4.expstatsn, base + 1);
}

#[test]
fn istgt_expcmdsn_past_our_cmdsn_is_followed() {
    // istgt counts the login into ExpCmdSN: its final Login Response says
    // CMDSN + 1 while our next command would carry CMDSN.
    let mut t = Tgt::new(cfg());
    t.expcmdsn = CMDSN + 1;
    t.login(&[]);
    let (c, _) = t.issue(read(1, 512));
    assert_eq!(c.cmdsn, CMDSN + 1);
    // Later it jumps again (an immediate command counted); we follow
    // instead of waiting for a window that will never open.
    t.expcmdsn = c.cmdsn + 2;
    t.window = 4;
    let r = t.response(c.itt, 0, &[]);
    t.feed(r);
    one_completion(t.events());
    let (c2, _) = t.issue(read(2, 512));
    assert_eq!(c2.cmdsn, c.cmdsn + 2);
    let (c3, _) = t.issue(read(3, 512));
    assert_eq!(c3.cmdsn, c.cmdsn + 3);
}

// ---- NOP ----

#[test]
fn target_ping_is_echoed() {
    let mut t = Tgt::up(cfg(), &[("MaxRecvDataSegmentLength", "512")]);
    let cmdsn_before = {
        let (c, _) = t.issue(read(1, 512));
        c.cmdsn + 1
    };
    let ping = t.nop_in(RESERVED_TAG, 0xabcd, LUN1, b"are you there".to_vec());
    t.feed(ping);
    match t.sent().as_slice() {
        [Pdu::NopOut(n)] => {
            assert!(n.immediate);
            assert_eq!(n.itt, RESERVED_TAG, "an answer, not a ping of ours");
            assert_eq!((n.ttt, n.lun), (0xabcd, LUN1));
            assert_eq!(n.data, b"are you there");
            assert_eq!(n.cmdsn, cmdsn_before, "immediate: CmdSN not used");
            assert_eq!(n.expstatsn, t.statsn);
        }
        other => panic!("{other:?}"),
    }
    // No answer wanted.
    let nop = t.nop_in(RESERVED_TAG, RESERVED_TAG, 0, b"x".to_vec());
    t.feed(nop);
    assert!(t.sent().is_empty() && t.events().is_empty());
    // An echo never exceeds what the target accepts.
    let ping = t.nop_in(RESERVED_TAG, 1, 0, vec![7; 1000]);
    t.feed(ping);
    match t.sent().as_slice() {
        [Pdu::NopOut(n)] => assert_eq!(n.data, vec![7; 512]),
        other => panic!("{other:?}"),
    }
    assert_eq!(t.s.phase(), Phase::FullFeature);
}

/// A burst grows the buffers; once the connection is idle (at the ping)
/// they go back, so an idle session holds next to no memory.
#[test]
fn idle_connection_gives_its_buffers_back() {
    let mut t = Tgt::up(cfg(), &[]);
    let (c, _) = t.issue(read(1, 256 << 10));
    let d = t.data_in(c.itt, 0, 0, pattern(256 << 10), Some(0));
    t.feed(d);
    assert_eq!(completions(t.events()).len(), 1);
    assert!(t.s.buffer_bytes() >= 256 << 10, "{}", t.s.buffer_bytes());
    t.tick(10_000);
    assert!(matches!(t.sent().as_slice(), [Pdu::NopOut(_)]));
    // What is left is the ping itself.
    assert!(t.s.buffer_bytes() <= BHS_LEN, "{}", t.s.buffer_bytes());
}

#[test]
fn our_ping_after_idle_and_its_timeout() {
    let mut t = Tgt::up(cfg(), &[]);
    assert_eq!(t.s.next_timeout(), Some(t.t0 + Duration::from_secs(10)));
    t.tick(9_999);
    assert!(t.sent().is_empty());
    t.tick(10_000);
    let ping = match t.sent().as_slice() {
        [Pdu::NopOut(n)] => n.clone(),
        other => panic!("{other:?}"),
    };
    assert!(ping.immediate && ping.itt != RESERVED_TAG && ping.ttt == RESERVED_TAG);
    // Answered at 11 s: quiet again until 21 s.
    t.at(11_000);
    let pong = t.nop_in(ping.itt, RESERVED_TAG, 0, Vec::new());
    t.feed(pong);
    assert!(t.events().is_empty());
    assert_eq!(t.s.next_timeout(), Some(t.t0 + Duration::from_secs(21)));
    t.tick(21_000);
    let ping2 = match t.sent().as_slice() {
        [Pdu::NopOut(n)] => n.clone(),
        other => panic!("{other:?}"),
    };
    assert_ne!(ping2.itt, ping.itt);
    // Traffic keeps a busy connection alive even while the ping waits.
    let (c, _) = t.issue(read(1, 1024));
    t.at(30_000);
    let d = t.data_in(c.itt, 0, 0, pattern(512), None);
    t.feed(d);
    t.tick(44_999);
    assert!(t.events().is_empty());
    assert_eq!(t.s.next_timeout(), Some(t.t0 + Duration::from_secs(45)));
    t.tick(45_000);
    assert_eq!(t.failure(), SessionError::PingTimeout);
    let back = t.s.take_tasks();
    assert_eq!(back.len(), 1, "the read goes back to the engine");
    assert_eq!(back[0].tag, 1);
}

// ---- task management ----

#[test]
fn command_timeout_aborts_then_completes_reset() {
    let mut t = Tgt::up(quiet(cfg()), &[]);
    t.at(1_000);
    let (c, _) = t.issue(read(5, 512));
    let (c2, _) = t.issue(read(6, 512));
    assert_eq!(t.s.next_timeout(), Some(t.t0 + Duration::from_secs(61)));
    t.tick(60_999);
    assert!(t.sent().is_empty());
    t.tick(61_000);
    let tmf = match t.sent().as_slice() {
        [Pdu::TaskMgmtReq(m)] => m.clone(),
        other => panic!("{other:?}"),
    };
    assert!(tmf.immediate);
    assert_eq!(tmf.function, 1, "ABORT TASK");
    assert_eq!((tmf.rtt, tmf.refcmdsn, tmf.lun), (c.itt, c.cmdsn, LUN1));
    assert_eq!(tmf.cmdsn, c2.cmdsn + 1, "immediate: the next CmdSN, unused");
    assert_ne!(tmf.itt, c.itt);
    let r = t.tmf_rsp(tmf.itt, 0);
    t.feed(r);
    let done = one_completion(t.events());
    assert_eq!((done.tag, done.status), (5, Outcome::Retry));
    // The other one timed out too: its abort follows at once, and the task
    // is already gone on the target.
    let tmf2 = match t.sent().as_slice() {
        [Pdu::TaskMgmtReq(m)] => m.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(tmf2.rtt, c2.itt);
    let r = t.tmf_rsp(tmf2.itt, 1);
    t.feed(r);
    assert_eq!(one_completion(t.events()).status, Outcome::Retry);
    assert_eq!(t.s.in_flight(), 0);
    assert_eq!(t.s.phase(), Phase::FullFeature);
}

#[test]
fn abort_racing_the_real_answer() {
    let mut t = Tgt::up(quiet(cfg()), &[]);
    let (c, _) = t.issue(read(5, 512));
    t.tick(60_000);
    let tmf = match t.sent().as_slice() {
        [Pdu::TaskMgmtReq(m)] => m.clone(),
        other => panic!("{other:?}"),
    };
    let d = t.data_in(c.itt, 0, 0, pattern(512), Some(0));
    let r = t.tmf_rsp(tmf.itt, 1);
    t.feed_all(&[d, r]);
    let done = one_completion(t.events());
    assert_eq!(done.status, Outcome::Good, "completed once, with its data");
    assert_eq!(done.data, pattern(512));
}

/// Tags of the completions, each of which must be a retry.
fn retried(ev: Vec<Event>) -> Vec<u64> {
    completions(ev)
        .into_iter()
        .map(|c| {
            assert_eq!(c.status, Outcome::Retry, "{c:?}");
            c.tag
        })
        .collect()
}

fn read_lun(tag: u64, lun: u64) -> ScsiTask {
    ScsiTask {
        lun,
        ..read(tag, 512)
    }
}

#[test]
fn escalation_each_step_failing_in_turn() {
    let mut t = Tgt::up(quiet(cfg()), &[]);
    let (c5, _) = t.issue(read(5, 512));
    t.issue(read(6, 512));
    t.at(30_000);
    t.issue(read_lun(7, 0));
    // ABORT TASK, refused: LOGICAL UNIT RESET of its LUN.
    t.tick(60_000);
    let abort = t.one_tmf();
    assert_eq!(abort.function, tmf::ABORT_TASK);
    assert_eq!(
        (abort.rtt, abort.refcmdsn, abort.lun),
        (c5.itt, c5.cmdsn, LUN1)
    );
    let r = t.tmf_rsp(abort.itt, tmf_rsp::REJECTED);
    t.feed(r);
    assert!(t.events().is_empty(), "nothing ends before the reset does");
    let lu = t.one_tmf();
    assert!(lu.immediate);
    assert_eq!(lu.function, tmf::LOGICAL_UNIT_RESET);
    assert_eq!((lu.lun, lu.rtt), (LUN1, RESERVED_TAG));
    assert_ne!(lu.itt, abort.itt);
    // Not answered: TARGET WARM RESET once its time is up, even though
    // c6 timed out too meanwhile (one TMF at a time).
    assert_eq!(t.s.next_timeout(), Some(t.t0 + Duration::from_secs(70)));
    t.tick(69_999);
    assert!(t.sent().is_empty());
    t.tick(70_000);
    let warm = t.one_tmf();
    assert_eq!(warm.function, tmf::TARGET_WARM_RESET);
    assert_eq!(warm.rtt, RESERVED_TAG);
    assert!(t.events().is_empty());
    // A late answer to the LU reset we gave up on is no stray.
    let r = t.tmf_rsp(lu.itt, tmf_rsp::COMPLETE);
    t.feed(r);
    assert!(t.events().is_empty());
    assert_eq!(t.s.phase(), Phase::FullFeature);
    // The warm reset fails as well: the connection goes.
    let r = t.tmf_rsp(warm.itt, tmf_rsp::NOT_SUPPORTED);
    t.feed(r);
    assert_eq!(
        t.failure(),
        SessionError::TargetReset(TmfFailure::Response(tmf_rsp::NOT_SUPPORTED))
    );
    let back: Vec<u64> = t.s.take_tasks().iter().map(|t| t.tag).collect();
    assert_eq!(back, [5, 6, 7], "every command goes to the next connection");
}

#[test]
fn abort_and_target_reset_timing_out() {
    let mut t = Tgt::up(quiet(cfg()), &[]);
    let (c, _) = t.issue(read(5, 512));
    t.tick(60_000);
    let abort = t.one_tmf();
    assert_eq!(abort.rtt, c.itt);
    t.tick(70_000);
    assert_eq!(t.one_tmf().function, tmf::LOGICAL_UNIT_RESET);
    // A late Reject of the abort we gave up on changes nothing.
    let r = t.reject(reject::IMMEDIATE_COMMAND_REJECT, &Pdu::TaskMgmtReq(abort));
    t.feed(r);
    assert!(t.events().is_empty());
    assert_eq!(t.s.phase(), Phase::FullFeature);
    t.tick(80_000);
    assert_eq!(t.one_tmf().function, tmf::TARGET_WARM_RESET);
    assert_eq!(t.s.next_timeout(), Some(t.t0 + Duration::from_secs(90)));
    t.tick(89_999);
    assert!(t.events().is_empty());
    t.tick(90_000);
    assert_eq!(t.failure(), SessionError::TargetReset(TmfFailure::Timeout));
    assert_eq!(
        SessionError::TargetReset(TmfFailure::Timeout).to_string(),
        "TARGET WARM RESET timed out"
    );
}

#[test]
fn lu_reset_retries_the_commands_of_its_lun_and_the_unit_attention_passes() {
    let mut t = Tgt::up(quiet(cfg()), &[]);
    t.issue(read(5, 512));
    t.issue(read(6, 512));
    t.issue(read_lun(7, 0));
    t.tick(60_000);
    let abort = t.one_tmf();
    assert_eq!(abort.function, tmf::ABORT_TASK);
    // The abort times out: LU reset, which works.
    t.tick(70_000);
    let lu = t.one_tmf();
    assert_eq!((lu.function, lu.lun), (tmf::LOGICAL_UNIT_RESET, LUN1));
    let r = t.tmf_rsp(lu.itt, tmf_rsp::COMPLETE);
    t.feed(r);
    let mut ev = t.events();
    // Every command on LUN 1 ended with the reset; the kernel retries.
    let first: Vec<Event> = ev.drain(..2).collect();
    assert_eq!(retried(first), [5, 6]);
    assert!(ev.is_empty(), "{ev:?}");
    // LUN 0's command timed out too, at the same time: its turn now.
    let abort7 = t.one_tmf();
    assert_eq!((abort7.function, abort7.lun), (tmf::ABORT_TASK, 0));
    let r = t.tmf_rsp(abort7.itt, tmf_rsp::NO_TASK);
    t.feed(r);
    assert_eq!(retried(t.events()), [7]);
    assert_eq!(t.s.in_flight(), 0);
    // The retried command meets the UNIT ATTENTION the reset left: it is
    // sense for the kernel (which retries), not a protocol error.
    let (c, _) = t.issue(read(5, 512));
    let ua = fixed(KEY_UNIT_ATTENTION, ASC_RESET_OCCURRED, 0x00);
    let r = t.response(c.itt, 0x02, &ua);
    t.feed(r);
    let done = one_completion(t.events());
    assert_eq!((done.tag, done.status), (5, Outcome::Sense));
    assert_eq!(done.sense, ua);
    assert_eq!(t.s.phase(), Phase::FullFeature);
    assert!(t.sent().is_empty(), "no TMF for it");
}

#[test]
fn rejected_abort_then_target_reset_retries_everything() {
    let mut t = Tgt::up(quiet(cfg()), &[]);
    t.issue(read(5, 512));
    t.issue(read_lun(6, 0));
    t.tick(60_000);
    let abort = t.one_tmf();
    // A Reject PDU for the ABORT TASK is a failure like any other.
    let r = t.reject(reject::IMMEDIATE_COMMAND_REJECT, &Pdu::TaskMgmtReq(abort));
    t.feed(r);
    let lu = t.one_tmf();
    assert_eq!(lu.function, tmf::LOGICAL_UNIT_RESET);
    let r = t.tmf_rsp(lu.itt, tmf_rsp::NO_LUN);
    t.feed(r);
    assert!(t.events().is_empty());
    let warm = t.one_tmf();
    assert_eq!(warm.function, tmf::TARGET_WARM_RESET);
    let r = t.tmf_rsp(warm.itt, tmf_rsp::COMPLETE);
    t.feed(r);
    assert_eq!(retried(t.events()), [5, 6]);
    assert_eq!(t.s.in_flight(), 0);
    assert_eq!(t.s.phase(), Phase::FullFeature);
    assert!(t.sent().is_empty());
}

// ---- command deadlines ----

#[test]
fn reissued_command_keeps_its_deadline() {
    let mut a = Tgt::up(quiet(cfg()), &[]);
    a.at(1_000);
    a.issue(read(5, 512));
    a.at(30_000);
    a.feed_bytes(&[0xff; 48]);
    a.failure();
    let back = a.s.take_tasks();
    assert_eq!(back.len(), 1);
    let deadline = a.t0 + Duration::from_secs(61);
    assert_eq!(back[0].deadline, Some(deadline));
    // The next connection: a fresh command first, then the reissue, whose
    // time runs out first though it is not the oldest on this connection.
    let mut b = Tgt::new_at(quiet(cfg()), a.t0, 40_000);
    b.login(&[]);
    b.issue(read(8, 512));
    let (again, _) = b.issue(back[0].clone());
    assert_eq!(b.s.next_timeout(), Some(deadline));
    b.tick(60_999);
    assert!(b.sent().is_empty());
    b.tick(61_000);
    let abort = b.one_tmf();
    assert_eq!(abort.rtt, again.itt, "not a fresh 60 s for the reissue");
    let r = b.tmf_rsp(abort.itt, tmf_rsp::COMPLETE);
    b.feed(r);
    assert_eq!(retried(b.events()), [5]);
    // The fresh command's own 60 s, from 40 s.
    assert_eq!(b.s.next_timeout(), Some(b.t0 + Duration::from_secs(100)));
    // And a connection that comes after the deadline escalates at once.
    let back = b.s.take_tasks();
    assert_eq!(back[0].deadline, Some(b.t0 + Duration::from_secs(100)));
    let mut c = Tgt::new_at(quiet(cfg()), a.t0, 150_000);
    c.login(&[]);
    c.s.submit(back[0].clone(), c.now);
    match c.sent().as_slice() {
        [Pdu::ScsiCommand(cmd), Pdu::TaskMgmtReq(m)] => {
            assert_eq!((m.function, m.rtt), (tmf::ABORT_TASK, cmd.itt));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn commands_timing_out_while_an_abort_is_pending_are_all_handled() {
    let mut t = Tgt::up(quiet(cfg()), &[]);
    let (c1, _) = t.issue(read(1, 512));
    t.at(5_000);
    let (c2, _) = t.issue(read(2, 512));
    t.at(8_000);
    let (c3, _) = t.issue(read(3, 512));
    t.tick(60_000);
    let a1 = t.one_tmf();
    assert_eq!(a1.rtt, c1.itt);
    // c2 and c3 time out while c1's abort waits: no time in the past, no
    // second TMF alongside the first.
    assert_eq!(t.s.next_timeout(), Some(t.t0 + Duration::from_secs(70)));
    t.tick(65_000);
    t.tick(68_000);
    assert!(t.sent().is_empty());
    // c1's abort completes at 69 s: c2's goes out at once, then c3's.
    t.at(69_000);
    let r = t.tmf_rsp(a1.itt, tmf_rsp::COMPLETE);
    t.feed(r);
    assert_eq!(retried(t.events()), [1]);
    let a2 = t.one_tmf();
    assert_eq!((a2.function, a2.rtt), (tmf::ABORT_TASK, c2.itt));
    let r = t.tmf_rsp(a2.itt, tmf_rsp::NO_TASK);
    t.feed(r);
    assert_eq!(retried(t.events()), [2]);
    let a3 = t.one_tmf();
    assert_eq!(a3.rtt, c3.itt);
    let r = t.tmf_rsp(a3.itt, tmf_rsp::COMPLETE);
    t.feed(r);
    assert_eq!(retried(t.events()), [3]);
    assert_eq!(t.s.in_flight(), 0);
    assert!(t.sent().is_empty());
}

// ---- asynchronous messages, rejects, text ----

#[test]
fn async_logout_request() {
    let mut t = Tgt::up(quiet(cfg()), &[("DefaultTime2Wait", "4")]);
    let (c, _) = t.issue(read(1, 512));
    let a = t.async_msg(1, 0, 10, Vec::new());
    t.feed(a);
    let lo = match t.sent().as_slice() {
        [Pdu::LogoutReq(l)] => l.clone(),
        other => panic!("{other:?}"),
    };
    assert!(lo.immediate);
    assert_eq!(lo.reason, 0, "close the session");
    assert_eq!(t.s.phase(), Phase::LoggingOut);
    let r = t.logout_rsp(lo.itt);
    t.feed(r);
    let ev = t.events();
    match ev.as_slice() {
        [Event::Complete(done), Event::TargetLogout { time2wait }] => {
            assert_eq!((done.tag, done.status), (1, Outcome::Retry));
            assert_eq!(*time2wait, 4);
        }
        other => panic!("{other:?}"),
    }
    let _ = c;
    assert_eq!(t.s.phase(), Phase::Closed);
}

#[test]
fn async_drops() {
    for event in [2u8, 3] {
        let mut t = Tgt::up(cfg(), &[]);
        let a = t.async_msg(event, 7, 20, Vec::new());
        t.feed(a);
        assert_eq!(t.failure(), SessionError::TargetDrop { time2wait: 7 });
    }
    // Vendor-specific and unknown events change nothing.
    let mut t = Tgt::up(cfg(), &[]);
    for event in [5u8, 200, 255] {
        let a = t.async_msg(event, 0, 0, vec![1, 2, 3]);
        t.feed(a);
    }
    // A SCSI event with a truncated sense.
    let a = t.async_msg(0, 0, 0, vec![0]);
    t.feed(a);
    assert!(t.events().is_empty());
    assert_eq!(t.s.phase(), Phase::FullFeature);
}

#[test]
fn async_renegotiation_request() {
    let mut t = Tgt::up(cfg(), &[("MaxRecvDataSegmentLength", "8192")]);
    let a = t.async_msg(4, 0, 30, Vec::new());
    t.feed(a);
    let req = match t.sent().as_slice() {
        [Pdu::TextReq(r)] => r.clone(),
        other => panic!("{other:?}"),
    };
    assert!(!req.immediate && req.final_ && !req.cont);
    assert_eq!(req.ttt, RESERVED_TAG);
    assert_eq!(
        val(&keys(&req.data), "MaxRecvDataSegmentLength"),
        Some("262144")
    );
    let r = t.text_rsp(
        req.itt,
        RESERVED_TAG,
        true,
        kv(&[("MaxRecvDataSegmentLength", "1024")]),
    );
    t.feed(r);
    assert!(t.events().is_empty());
    assert_eq!(t.s.params().max_xmit_dsl, 1024);
    // The text request used a CmdSN: the next command takes the one after.
    let (c, _) = t.issue(write(1, pattern(2048)));
    assert_eq!(c.cmdsn, req.cmdsn + 1);
    assert_eq!(c.data.len(), 1024, "the new limit applies");
}

#[test]
fn rejects() {
    let mut t = Tgt::up(cfg(), &[("InitialR2T", "Yes")]);
    // A rejected command never ran: retry (protocol error) or fail
    // (command not supported).
    for (reason, want) in [
        (0x04, Outcome::Retry),
        (0x05, Outcome::Failed),
        (0x09, Outcome::Failed),
    ] {
        let (c, _) = t.issue(read(1, 512));
        let rej = t.reject(reason, &Pdu::ScsiCommand(c));
        t.feed(rej);
        let done = one_completion(t.events());
        assert_eq!(done.status, want, "reason {reason:#x}");
        assert_eq!(t.s.in_flight(), 0);
    }
    // A rejected ping of ours is simply forgotten.
    t.tick(10_000);
    let ping = match t.sent().as_slice() {
        [Pdu::NopOut(n)] => n.clone(),
        other => panic!("{other:?}"),
    };
    let rej = t.reject(0x04, &Pdu::NopOut(ping));
    t.feed(rej);
    assert!(t.events().is_empty());
    t.tick(20_000);
    assert_eq!(t.sent().len(), 1, "a new ping, not a timeout");

    // A rejected Data-Out leaves the write unfinishable at ERL 0.
    let (c, _) = t.issue(write(2, pattern(1024)));
    let r = t.r2t(c.itt, 3, 0, 0, 1024);
    t.feed(r);
    let outs = t.sent();
    let rej = t.reject(0x02, &outs[0]);
    t.feed(rej);
    assert_eq!(
        t.failure(),
        SessionError::Rejected {
            reason: 0x02,
            opcode: 0x05
        }
    );
}

#[test]
fn logout_exchange() {
    let mut t = Tgt::new(quiet(cfg()));
    t.window = 1;
    t.login(&[]);
    let (c, _) = t.issue(read(1, 512));
    t.s.submit(read(2, 512), t.now);
    assert_eq!(t.s.queued(), 1, "window closed");
    t.at(500);
    t.s.logout(t.now);
    // Queued commands go straight back for a retry elsewhere.
    let done = one_completion(t.events());
    assert_eq!((done.tag, done.status), (2, Outcome::Retry));
    let lo = match t.sent().as_slice() {
        [Pdu::LogoutReq(l)] => l.clone(),
        other => panic!("{other:?}"),
    };
    assert!(lo.immediate && lo.reason == 0);
    assert_eq!(lo.cmdsn, c.cmdsn + 1);
    assert_eq!(t.s.phase(), Phase::LoggingOut);
    t.s.submit(read(3, 512), t.now);
    assert_eq!(one_completion(t.events()).status, Outcome::Retry);
    // The in-flight read still completes normally before the response.
    let d = t.data_in(c.itt, 0, 0, pattern(512), Some(0));
    t.feed(d);
    assert_eq!(one_completion(t.events()).status, Outcome::Good);
    let r = t.logout_rsp(lo.itt);
    t.feed(r);
    assert!(matches!(t.events().as_slice(), [Event::LoggedOut]));
    assert_eq!(t.s.phase(), Phase::Closed);

    // No answer: closed anyway once the logout timer runs out.
    let mut t = Tgt::up(quiet(cfg()), &[]);
    t.s.logout(t.now);
    t.sent();
    assert_eq!(t.s.next_timeout(), Some(t.t0 + Duration::from_secs(5)));
    t.tick(5_000);
    assert!(matches!(t.events().as_slice(), [Event::LoggedOut]));

    // A Logout Response for something else.
    let mut t = Tgt::up(quiet(cfg()), &[]);
    t.s.logout(t.now);
    let lo = match t.sent().as_slice() {
        [Pdu::LogoutReq(l)] => l.clone(),
        other => panic!("{other:?}"),
    };
    let r = t.logout_rsp(lo.itt ^ 0x100);
    t.feed(r);
    assert!(matches!(
        t.failure(),
        SessionError::UnknownItt {
            pdu: "Logout Response",
            ..
        }
    ));
}

fn discovery_cfg() -> SessionConfig {
    let mut c = cfg();
    c.login.kind = SessionKind::Discovery;
    c.login.targetname = None;
    c
}

#[test]
fn send_targets_in_several_pdus() {
    let mut t = Tgt::up(discovery_cfg(), &[]);
    let req = match t.sent().as_slice() {
        [Pdu::TextReq(r)] => r.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(keys(&req.data), vec![("SendTargets".into(), "All".into())]);
    assert!(req.final_ && !req.cont && !req.immediate);
    assert_eq!(req.ttt, RESERVED_TAG);
    assert_eq!(req.cmdsn, CMDSN);
    let all = kv(&[
        ("TargetName", "iqn.2026-11.org.example:one"),
        ("TargetAddress", "192.0.2.1:3260,1"),
        ("TargetAddress", "[2001:db8::1]:3260,1"),
        ("TargetName", "iqn.2026-11.org.example:two"),
        ("TargetAlias", "second"),
        ("TargetAddress", "192.0.2.2:3261,2"),
    ]);
    // Three pieces, each split inside a pair; the target hands out a TTT
    // to continue with.
    let cuts = [0, 30, 90, all.len()];
    let mut cmdsns = vec![req.cmdsn];
    for i in 0..3 {
        let last = i == 2;
        let ttt = if last { RESERVED_TAG } else { 0x900 + i as u32 };
        let r = t.text_rsp(req.itt, ttt, last, all[cuts[i]..cuts[i + 1]].to_vec());
        t.feed(r);
        if last {
            break;
        }
        assert!(t.events().is_empty());
        let more = match t.sent().as_slice() {
            [Pdu::TextReq(r)] => r.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!((more.itt, more.ttt), (req.itt, ttt));
        assert!(more.data.is_empty() && more.final_ && !more.cont);
        cmdsns.push(more.cmdsn);
    }
    // Every non-immediate Text Request takes its own CmdSN.
    assert_eq!(cmdsns, [CMDSN, CMDSN + 1, CMDSN + 2]);
    match t.events().as_slice() {
        [Event::Discovered(recs)] => {
            assert_eq!(recs.len(), 2);
            assert_eq!(recs[0].name, "iqn.2026-11.org.example:one");
            assert_eq!(
                recs[0].addresses,
                ["192.0.2.1:3260,1", "[2001:db8::1]:3260,1"]
            );
            assert_eq!(recs[1].addresses, ["192.0.2.2:3261,2"]);
        }
        other => panic!("{other:?}"),
    }
    // The logout after it carries the next CmdSN.
    t.s.logout(t.now);
    match t.sent().as_slice() {
        [Pdu::LogoutReq(l)] => assert_eq!(l.cmdsn, CMDSN + 3),
        other => panic!("{other:?}"),
    }
}

#[test]
fn send_targets_continuations_stay_inside_the_window() {
    // A window of one command from the login on.
    let mut t = Tgt::new(discovery_cfg());
    t.window = 1;
    t.login(&[]);
    let req = match t.sent().as_slice() {
        [Pdu::TextReq(r)] => r.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(req.cmdsn, CMDSN);
    let all = kv(&[
        ("TargetName", "iqn.2026-11.org.example:one"),
        ("TargetAddress", "192.0.2.1:3260,1"),
        ("TargetName", "iqn.2026-11.org.example:two"),
        ("TargetAddress", "192.0.2.2:3260,1"),
    ]);
    let cuts = [0, 20, 50, 80, all.len()];
    // The target's window ends at the request it is answering: its Text
    // Responses never move MaxCmdSN on.
    let mut max = CMDSN;
    for i in 0..4 {
        let last = i == 3;
        let ttt = if last { RESERVED_TAG } else { 0x900 + i as u32 };
        let Pdu::TextRsp(mut r) =
            t.text_rsp(req.itt, ttt, last, all[cuts[i]..cuts[i + 1]].to_vec())
        else {
            unreachable!()
        };
        r.maxcmdsn = max;
        t.feed(Pdu::TextRsp(r));
        if last {
            break;
        }
        // The continuation would take CmdSN max + 1: it waits.
        assert!(t.sent().is_empty(), "a Text Request past MaxCmdSN {max}");
        assert!(t.events().is_empty());
        // A NOP-In opens the window by one.
        max = max.wrapping_add(1);
        let (statsn, expcmdsn, _) = t.sns(false);
        t.feed(Pdu::NopIn(NopIn {
            lun: 0,
            itt: RESERVED_TAG,
            ttt: RESERVED_TAG,
            statsn,
            expcmdsn,
            maxcmdsn: max,
            data: Vec::new(),
        }));
        let more = match t.sent().as_slice() {
            [Pdu::TextReq(r)] => r.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!((more.itt, more.ttt), (req.itt, ttt));
        assert!(!more.immediate && more.final_ && more.data.is_empty());
        assert_eq!(more.cmdsn, max, "the CmdSN the window just made room for");
    }
    match t.events().as_slice() {
        [Event::Discovered(recs)] => assert_eq!(recs.len(), 2),
        other => panic!("{other:?}"),
    }
}

#[test]
fn text_timeout_and_strays() {
    let mut t = Tgt::up(discovery_cfg(), &[]);
    t.sent();
    t.tick(14_999);
    assert!(t.events().is_empty());
    t.tick(15_000);
    assert_eq!(t.failure(), SessionError::TextTimeout);

    let mut t = Tgt::up(discovery_cfg(), &[]);
    let req = match t.sent().as_slice() {
        [Pdu::TextReq(r)] => r.clone(),
        other => panic!("{other:?}"),
    };
    let r = t.text_rsp(req.itt + 1, RESERVED_TAG, true, Vec::new());
    t.feed(r);
    assert!(matches!(
        t.failure(),
        SessionError::UnknownItt {
            pdu: "Text Response",
            ..
        }
    ));

    let mut t = Tgt::up(discovery_cfg(), &[]);
    let req = match t.sent().as_slice() {
        [Pdu::TextReq(r)] => r.clone(),
        other => panic!("{other:?}"),
    };
    let r = t.text_rsp(
        req.itt,
        RESERVED_TAG,
        true,
        kv(&[("TargetAddress", "1.2.3.4")]),
    );
    t.feed(r);
    assert!(matches!(t.failure(), SessionError::Discovery(_)));
}

// ---- hostile targets ----

#[test]
fn pdus_for_tasks_we_never_issued() {
    let mut t = Tgt::up(cfg(), &[]);
    let d = t.data_in(0x4242, 0, 0, vec![1; 16], None);
    t.feed(d);
    assert_eq!(
        t.failure(),
        SessionError::UnknownItt {
            pdu: "Data-In",
            itt: 0x4242
        }
    );
    let mut t = Tgt::up(cfg(), &[]);
    let r = t.r2t(0x4242, 1, 0, 0, 512);
    t.feed(r);
    assert_eq!(
        t.failure(),
        SessionError::UnknownItt {
            pdu: "R2T",
            itt: 0x4242
        }
    );
    let mut t = Tgt::up(cfg(), &[]);
    let (c, _) = t.issue(read(1, 512));
    let r = t.response(c.itt ^ 0x8000_0000, 0, &[]);
    t.feed(r);
    assert_eq!(
        t.failure(),
        SessionError::UnknownItt {
            pdu: "SCSI Response",
            itt: c.itt ^ 0x8000_0000
        }
    );
    // The real command is handed back for reissue.
    assert_eq!(t.s.take_tasks().len(), 1);

    // A completed task's ITT is unknown from then on.
    let mut t = Tgt::up(cfg(), &[]);
    let (c, _) = t.issue(read(1, 512));
    let r = t.response(c.itt, 0, &[]);
    t.feed(r);
    one_completion(t.events());
    let d = t.data_in(c.itt, 0, 0, vec![1; 16], Some(0));
    t.feed(d);
    assert!(matches!(t.failure(), SessionError::UnknownItt { .. }));

    for (what, pdu) in [("NOP-In", 0u8), ("Task Management Response", 1)] {
        let mut t = Tgt::up(cfg(), &[]);
        let p = if pdu == 0 {
            t.nop_in(0x777, RESERVED_TAG, 0, Vec::new())
        } else {
            t.tmf_rsp(0x777, 0)
        };
        t.feed(p);
        assert_eq!(
            t.failure(),
            SessionError::UnknownItt {
                pdu: what,
                itt: 0x777
            }
        );
    }
}

#[test]
fn data_sn_gap() {
    let mut t = Tgt::up(cfg(), &[]);
    let (c, _) = t.issue(read(1, 4096));
    let d0 = t.data_in(c.itt, 0, 0, pattern(1024), None);
    let d2 = t.data_in(c.itt, 2, 1024, pattern(1024), None);
    t.feed_all(&[d0, d2]);
    assert_eq!(
        t.failure(),
        SessionError::Task {
            itt: c.itt,
            error: TaskError::DataSn {
                expected: 1,
                got: 2
            }
        }
    );
}

#[test]
fn data_in_out_of_place() {
    // Past the expected length.
    let mut t = Tgt::up(cfg(), &[]);
    let (c, _) = t.issue(read(1, 1024));
    let d0 = t.data_in(c.itt, 0, 0, pattern(1024), None);
    let d1 = t.data_in(c.itt, 1, 1024, pattern(4), Some(0));
    t.feed_all(&[d0, d1]);
    assert_eq!(
        t.failure(),
        SessionError::Task {
            itt: c.itt,
            error: TaskError::Overrun {
                offset: 1024,
                len: 4,
                expected: 1024
            }
        }
    );
    // An offset near 2^32 does not wrap.
    let mut t = Tgt::up(cfg(), &[]);
    let (c, _) = t.issue(read(1, 1024));
    let d = t.data_in(c.itt, 0, u32::MAX - 1, pattern(8), None);
    t.feed(d);
    assert!(matches!(t.failure(), SessionError::Task { .. }));
    // A hole: DataPDUInOrder=Yes means each PDU continues the last.
    let mut t = Tgt::up(cfg(), &[]);
    let (c, _) = t.issue(read(1, 4096));
    let d0 = t.data_in(c.itt, 0, 0, pattern(1024), None);
    let d1 = t.data_in(c.itt, 1, 2048, pattern(1024), Some(0));
    t.feed_all(&[d0, d1]);
    assert_eq!(
        t.failure(),
        SessionError::Task {
            itt: c.itt,
            error: TaskError::Offset {
                expected: 1024,
                got: 2048
            }
        }
    );
    // Read data for a write.
    let mut t = Tgt::up(cfg(), &[("InitialR2T", "Yes"), ("ImmediateData", "No")]);
    let (c, _) = t.issue(write(1, pattern(512)));
    let d = t.data_in(c.itt, 0, 0, pattern(512), None);
    t.feed(d);
    assert_eq!(
        t.failure(),
        SessionError::Task {
            itt: c.itt,
            error: TaskError::NotARead
        }
    );
}

#[test]
fn bad_r2ts() {
    let over = [
        ("InitialR2T", "Yes"),
        ("ImmediateData", "No"),
        ("MaxBurstLength", "8192"),
    ];
    let cases: [(u32, u32, TaskError); 4] = [
        (
            4096,
            8192,
            TaskError::BadR2t {
                offset: 4096,
                len: 8192,
                datalen: 10240,
            },
        ),
        (
            0,
            0,
            TaskError::BadR2t {
                offset: 0,
                len: 0,
                datalen: 10240,
            },
        ),
        (
            u32::MAX - 10,
            100,
            TaskError::BadR2t {
                offset: u32::MAX - 10,
                len: 100,
                datalen: 10240,
            },
        ),
        (
            0,
            10240,
            TaskError::BurstTooLong {
                len: 10240,
                max: 8192,
            },
        ),
    ];
    for (off, len, want) in cases {
        let mut t = Tgt::up(cfg(), &over);
        let (c, _) = t.issue(write(1, pattern(10240)));
        let r = t.r2t(c.itt, 5, 0, off, len);
        t.feed(r);
        assert!(t.sent().is_empty(), "no Data-Out for a bad R2T");
        assert_eq!(
            t.failure(),
            SessionError::Task {
                itt: c.itt,
                error: want
            }
        );
    }
    // An R2T for a read.
    let mut t = Tgt::up(cfg(), &over);
    let (c, _) = t.issue(read(1, 512));
    let r = t.r2t(c.itt, 5, 0, 0, 512);
    t.feed(r);
    assert_eq!(
        t.failure(),
        SessionError::Task {
            itt: c.itt,
            error: TaskError::NotAWrite
        }
    );
}

#[test]
fn malformed_sense() {
    let mut t = Tgt::up(cfg(), &[]);
    let (c, _) = t.issue(read(1, 512));
    let (statsn, expcmdsn, maxcmdsn) = t.sns(true);
    t.feed(Pdu::ScsiResponse(ScsiResponse {
        status: 0x02,
        itt: c.itt,
        statsn,
        expcmdsn,
        maxcmdsn,
        // SenseLength 200, 3 bytes present.
        data: vec![0, 200, 0x70, 0, 6],
        ..Default::default()
    }));
    assert_eq!(
        t.failure(),
        SessionError::Task {
            itt: c.itt,
            error: TaskError::Sense
        }
    );
}

#[test]
fn data_segment_past_our_limit() {
    let mut t = Tgt::up(cfg(), &[]);
    let (c, _) = t.issue(read(1, 1 << 20));
    let d = t.data_in(c.itt, 0, 0, vec![0; 262_145], None);
    // The header alone is enough to refuse it.
    let bytes = t.wire(&[d]);
    t.feed_bytes(&bytes[..BHS_LEN]);
    assert_eq!(
        t.failure(),
        SessionError::DataTooLong {
            len: 262_145,
            max: 262_144
        }
    );
}

#[test]
fn unknown_and_misdirected_opcodes() {
    let mut t = Tgt::up(cfg(), &[]);
    let mut bhs = [0u8; BHS_LEN];
    bhs[0] = 0x1c;
    t.feed_bytes(&bhs);
    match t.failure() {
        SessionError::BadPdu(m) => assert!(m.contains("0x1c"), "{m}"),
        other => panic!("{other:?}"),
    }
    // An initiator PDU coming from the target.
    let mut t = Tgt::up(cfg(), &[]);
    t.feed(Pdu::ScsiCommand(ScsiCommand {
        itt: 1,
        cdb: vec![0; 6],
        ..Default::default()
    }));
    assert_eq!(t.failure(), SessionError::UnexpectedPdu("SCSI Command"));
    // A Login Response after login.
    let mut t = Tgt::up(cfg(), &[]);
    t.feed(Pdu::LoginRsp(LoginRsp::default()));
    assert_eq!(t.failure(), SessionError::UnexpectedPdu("Login Response"));
}

#[test]
fn digest_errors() {
    let both = [("HeaderDigest", "CRC32C"), ("DataDigest", "CRC32C")];
    let mut c = cfg();
    c.login.prefs.header_digest = DigestPref::Any;
    c.login.prefs.data_digest = DigestPref::Any;

    let mut t = Tgt::up(c.clone(), &both);
    let (cmd, _) = t.issue(read(1, 512));
    let d = t.data_in(cmd.itt, 0, 0, pattern(512), Some(0));
    let mut bytes = t.wire(&[d]);
    bytes[20] ^= 0x01; // inside the BHS
    t.feed_bytes(&bytes);
    assert_eq!(t.failure(), SessionError::HeaderDigest);
    assert!(
        t.s.take_tasks().len() == 1,
        "the read is reissued elsewhere"
    );

    let mut t = Tgt::up(c, &both);
    let (cmd, _) = t.issue(read(1, 512));
    let d = t.data_in(cmd.itt, 0, 0, pattern(512), Some(0));
    let mut bytes = t.wire(&[d]);
    bytes[BHS_LEN + 4 + 100] ^= 0x80; // inside the data
    t.feed_bytes(&bytes);
    assert_eq!(t.failure(), SessionError::DataDigest { itt: cmd.itt });
    assert!(t.events().is_empty(), "no completion with corrupt data");
}

#[test]
fn garbage_bytes() {
    // All ones: a 16 MiB data segment.
    let mut t = Tgt::up(cfg(), &[]);
    t.feed_bytes(&[0xff; 64]);
    assert_eq!(
        t.failure(),
        SessionError::DataTooLong {
            len: 0x00ff_ffff,
            max: 262_144
        }
    );
    // Text where a PDU belongs.
    let mut t = Tgt::up(cfg(), &[]);
    t.feed_bytes(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n....");
    assert!(matches!(
        t.failure(),
        SessionError::BadPdu(_) | SessionError::DataTooLong { .. }
    ));
    // Random bytes, many seeds, in odd-sized reads: never a panic, and the
    // connection is condemned.
    for seed in 1..200u64 {
        let mut c = cfg();
        if seed % 2 == 0 {
            c.login.prefs.header_digest = DigestPref::Any;
        }
        let over: &[(&str, &str)] = if seed % 2 == 0 {
            &[("HeaderDigest", "CRC32C")]
        } else {
            &[]
        };
        let mut t = Tgt::up(c, over);
        t.issue(read(1, 4096));
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut junk = Vec::new();
        while junk.len() < 4096 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            junk.extend_from_slice(&x.to_le_bytes());
        }
        for chunk in junk.chunks(1 + (seed as usize % 97)) {
            t.feed_bytes(chunk);
            t.tick(seed * 1000);
        }
        let ev = t.events();
        assert!(
            matches!(ev.last(), Some(Event::Failed(_))),
            "seed {seed}: {ev:?}"
        );
        assert_eq!(t.s.phase(), Phase::Closed);
        assert!(t.s.next_timeout().is_none());
    }
}

#[test]
fn closed_session_ignores_input_and_returns_commands() {
    let mut t = Tgt::up(cfg(), &[]);
    let (c, _) = t.issue(read(1, 512));
    t.s.submit(read(2, 512), t.now);
    t.feed_bytes(&[0xff; 48]);
    assert!(matches!(t.failure(), SessionError::DataTooLong { .. }));
    // More input after the failure is ignored.
    let r = t.response(c.itt, 0, &[]);
    t.feed(r);
    assert!(t.events().is_empty());
    // A command arriving now is turned away, not lost.
    t.s.submit(read(3, 512), t.now);
    assert_eq!(one_completion(t.events()).status, Outcome::Retry);
    let back: Vec<u64> = t.s.take_tasks().iter().map(|t| t.tag).collect();
    assert_eq!(back, [1, 2], "in CmdSN order");
    t.s.tick(t.now + Duration::from_secs(1000));
    assert!(t.events().is_empty());
}

#[test]
fn reissue_order_is_oldest_first() {
    let mut t = Tgt::up(cfg(), &[]);
    let mut cmds = Vec::new();
    for tag in 0..4 {
        cmds.push(t.issue(read(tag, 512)).0);
    }
    // The target has received the first three (ExpCmdSN past them).
    t.expcmdsn = cmds[2].cmdsn + 1;
    let nop = t.nop_in(RESERVED_TAG, RESERVED_TAG, 0, Vec::new());
    t.feed(nop);
    t.s.submit(read(4, 512), t.now);
    t.feed_bytes(&[0xff; 48]);
    assert!(matches!(t.failure(), SessionError::DataTooLong { .. }));
    let back: Vec<u64> = t.s.take_tasks().iter().map(|t| t.tag).collect();
    assert_eq!(back, [0, 1, 2, 3, 4]);
}

#[test]
fn logout_during_login_returns_queued_commands() {
    let mut t = Tgt::new(cfg());
    t.sent();
    t.s.submit(read(1, 512), t.now);
    t.s.logout(t.now);
    let ev = t.events();
    match ev.as_slice() {
        [Event::Complete(c), Event::LoggedOut] => {
            assert_eq!((c.tag, c.status), (1, Outcome::Retry))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(t.s.queued(), 0);
    assert_eq!(t.s.phase(), Phase::Closed);
}

#[test]
fn digests_start_mid_read() {
    // The final Login Response and the first digested PDUs arrive in one
    // read: the framer must switch between them.
    let mut c = cfg();
    c.login.prefs.header_digest = DigestPref::Any;
    c.login.prefs.data_digest = DigestPref::Any;
    let mut t = Tgt::new(c);
    let r1 = match t.sent().as_slice() {
        [Pdu::LoginReq(r)] => r.clone(),
        other => panic!("{other:?}"),
    };
    let (st, exp, max) = t.sns(true);
    let mut rsp = answer(&r1, st, true, OPERATIONAL, kv(&[("AuthMethod", "None")]));
    (rsp.expcmdsn, rsp.maxcmdsn) = (exp, max);
    t.feed(Pdu::LoginRsp(rsp));
    let r2 = match t.sent().as_slice() {
        [Pdu::LoginReq(r)] => r.clone(),
        other => panic!("{other:?}"),
    };
    let over = [("HeaderDigest", "CRC32C"), ("DataDigest", "CRC32C")];
    let data = text::encode(
        op_answer(&keys(&r2.data), &over)
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    let (st, exp, max) = t.sns(true);
    let mut rsp = answer(&r2, st, true, FULL_FEATURE, data);
    (rsp.expcmdsn, rsp.maxcmdsn) = (exp, max);
    let mut bytes = t.wire(&[Pdu::LoginRsp(rsp)]);
    t.dig = Digests {
        header: true,
        data: true,
    };
    let ping = t.nop_in(RESERVED_TAG, 0x31, 0, b"digested".to_vec());
    bytes.extend(t.wire(&[ping]));
    t.feed_bytes(&bytes);
    assert!(matches!(t.events().as_slice(), [Event::LoggedIn]));
    t.rx.set_digests(t.dig);
    match t.sent().as_slice() {
        [Pdu::NopOut(n)] => assert_eq!((n.ttt, n.data.as_slice()), (0x31, &b"digested"[..])),
        other => panic!("{other:?}"),
    }
}

/// Well-formed target PDUs with random fields, mostly plausible and
/// naming real tasks: whatever they say, the session never panics, never
/// completes a task twice or loses one, and reports at most one failure.
#[test]
fn random_well_formed_pdus() {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rnd = move |n: u32| -> u32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % u64::from(n.max(1))) as u32
    };
    let mut steps = 0;
    for round in 0..400 {
        let over: &[(&str, &str)] = &[("InitialR2T", "Yes"), ("MaxBurstLength", "8192")];
        let mut t = Tgt::up(cfg(), over);
        let mut itts = Vec::new();
        let mut tags = std::collections::HashSet::new();
        for tag in 0..4 {
            let task = if tag % 2 == 0 {
                read(tag, 4096)
            } else {
                write(tag, pattern(4096))
            };
            itts.push(t.issue(task).0.itt);
        }
        // Per task: the next DataSN and offset a correct target would use.
        let mut next = [(0u32, 0u32); 4];
        let mut clock = 0u64;
        for step in 0..60 {
            let kind = rnd(20);
            // Reads are tasks 0 and 2, writes 1 and 3; mostly the right kind.
            let pick = 2 * rnd(2) as usize;
            let k = match kind {
                0..=6 if rnd(10) != 0 => pick,
                10..=13 if rnd(10) != 0 => pick + 1,
                _ => rnd(4) as usize,
            };
            let itt = match rnd(20) {
                0 => rnd(u32::MAX),
                _ => itts[k],
            };
            let (mut statsn, mut expcmdsn, mut maxcmdsn) = t.sns(false);
            if rnd(10) == 0 {
                (statsn, expcmdsn, maxcmdsn) = (rnd(u32::MAX), rnd(u32::MAX), rnd(u32::MAX));
            }
            let len = [0, 1, 512, 1024, 4096, 5000][rnd(6) as usize] as usize;
            let data: Vec<u8> = (0..len).map(|_| rnd(256) as u8).collect();
            let pdu = match kind {
                0..=6 => {
                    let (sn, off) = next[k];
                    let plausible = rnd(8) != 0;
                    let len = if plausible { 1024 } else { len };
                    let status = rnd(3) == 0;
                    next[k] = (sn + 1, off + len as u32);
                    Pdu::DataIn(DataIn {
                        final_: status || rnd(2) == 0,
                        status_present: status,
                        status: [0, 2, 8][rnd(3) as usize] as u8,
                        itt,
                        datasn: if plausible { sn } else { rnd(3) },
                        buffer_offset: if plausible { off } else { rnd(5000) },
                        statsn,
                        expcmdsn,
                        maxcmdsn,
                        data: data.get(..len).map_or_else(|| vec![0; len], <[u8]>::to_vec),
                        ..Default::default()
                    })
                }
                7..=9 => Pdu::ScsiResponse(ScsiResponse {
                    response: u8::from(rnd(8) == 0),
                    status: [0, 0, 2, 0x18, 0x28][rnd(5) as usize] as u8,
                    itt,
                    statsn,
                    expcmdsn,
                    maxcmdsn,
                    data: if rnd(2) == 0 { Vec::new() } else { data },
                    ..Default::default()
                }),
                10..=13 => Pdu::R2t(R2t {
                    itt,
                    ttt: rnd(1000),
                    buffer_offset: [0, 512, 1024, 3072, u32::MAX - 3][rnd(5) as usize],
                    desired_len: [512, 1024, 2048, 0, 8193][rnd(5) as usize],
                    statsn,
                    expcmdsn,
                    maxcmdsn,
                    ..Default::default()
                }),
                14..=16 => Pdu::NopIn(NopIn {
                    itt: RESERVED_TAG,
                    ttt: if rnd(2) == 0 { RESERVED_TAG } else { rnd(99) },
                    statsn,
                    expcmdsn,
                    maxcmdsn,
                    data,
                    ..Default::default()
                }),
                17 => Pdu::AsyncMsg(AsyncMsg {
                    event: [0, 0, 0, 4, 5, 1, 2][rnd(7) as usize],
                    param2: rnd(100) as u16,
                    statsn,
                    expcmdsn,
                    maxcmdsn,
                    data,
                    ..Default::default()
                }),
                18 => {
                    let mut hdr = vec![0u8; BHS_LEN];
                    hdr[0] = [0x01, 0x00, 0x05][rnd(3) as usize];
                    hdr[16..20].copy_from_slice(&itt.to_be_bytes());
                    Pdu::Reject(Reject {
                        reason: rnd(12) as u8,
                        statsn,
                        expcmdsn,
                        maxcmdsn,
                        data: hdr,
                        ..Default::default()
                    })
                }
                _ => Pdu::TaskMgmtRsp(TaskMgmtRsp {
                    response: rnd(3) as u8,
                    itt,
                    statsn,
                    expcmdsn,
                    maxcmdsn,
                }),
            };
            steps += 1;
            t.feed(pdu);
            clock += u64::from(rnd(3000));
            if rnd(30) == 0 {
                clock += 70_000;
            }
            t.tick(clock);
            t.sent();
            for ev in t.events() {
                match ev {
                    Event::Complete(c) => {
                        assert!(
                            tags.insert(c.tag),
                            "round {round} step {step}: tag {} twice",
                            c.tag
                        )
                    }
                    Event::Failed(_) | Event::LoggedOut | Event::TargetLogout { .. } => {
                        assert_eq!(t.s.phase(), Phase::Closed)
                    }
                    _ => {}
                }
            }
            if t.s.phase() == Phase::Closed {
                break;
            }
        }
        // Whatever happened, every task was completed or is handed back.
        for k in t.s.take_tasks() {
            assert!(
                tags.insert(k.tag),
                "round {round}: tag {} completed and handed back",
                k.tag
            );
        }
        assert_eq!(tags.len(), 4, "round {round}: a task vanished");
    }
    // Most hostile PDUs end the connection at once; still, many rounds
    // get several plausible PDUs in before that.
    assert!(steps > 400 * 2, "too shallow: {steps} PDUs in 400 rounds");
}

#[test]
fn r2t_out_of_sequence_or_beyond_the_data_fails() {
    let over = [("InitialR2T", "Yes"), ("ImmediateData", "No")];
    let mut t = Tgt::up(cfg(), &over);
    let (c, _) = t.issue(write(4, pattern(8192)));
    let skip = t.r2t(c.itt, 0x1, 1, 0, 4096);
    t.feed_all(&[skip]);
    let ev = t.failure();
    assert!(
        matches!(
            ev,
            SessionError::Task {
                error: TaskError::R2tSn {
                    expected: 0,
                    got: 1
                },
                ..
            }
        ),
        "{ev:?}"
    );

    // The same range asked for again and again: stopped at the data length.
    let mut t = Tgt::up(cfg(), &over);
    let (c, _) = t.issue(write(4, pattern(8192)));
    let rs: Vec<Pdu> = (0..3).map(|n| t.r2t(c.itt, 0x1, n, 0, 4096)).collect();
    t.feed_all(&rs);
    let ev = t.failure();
    assert!(
        matches!(
            ev,
            SessionError::Task {
                error: TaskError::R2tOverrun { .. },
                ..
            }
        ),
        "{ev:?}"
    );
}

#[test]
fn a_window_kept_shut_fails_the_connection() {
    let mut t = Tgt::new(quiet(cfg()));
    t.window = 0;
    t.login(&[]);
    t.s.submit(read(0, 512), t.now);
    assert!(t.sent().is_empty());
    assert_eq!(t.s.queued(), 1);
    // The target stays alive (NOP-In) but never opens the window.
    let nop = t.nop_in(RESERVED_TAG, RESERVED_TAG, 0, Vec::new());
    t.feed(nop);
    t.tick(59_000);
    assert!(t.events().is_empty());
    t.tick(60_001);
    assert_eq!(t.failure(), SessionError::WindowClosed);
    // The command comes back for the next connection.
    let back = t.s.take_tasks();
    assert_eq!(back.len(), 1);
}
