//! A scripted target around `iscsid::proto::session::Session`, for the
//! session fuzz targets.
//!
//! The rig decodes everything the session sends (the initiator's own PDUs
//! must always frame and decode), remembers the tags it used, completes a
//! login when asked, and then plays a fuzz-driven script of records: raw
//! bytes, PDUs whose lengths and digests the rig fixes up, clock steps,
//! new commands and logouts. Throughout it checks that no command is lost
//! or completed twice, that read completions never carry more data than
//! asked for, and that nothing sent exceeds the target's declared
//! MaxRecvDataSegmentLength.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use iscsid::proto::chap::{ChapAlg, ChapConfig};
use iscsid::proto::digest;
use iscsid::proto::framing::Framer;
use iscsid::proto::login::{LoginConfig, FULL_FEATURE, OPERATIONAL};
use iscsid::proto::negotiate::{DigestPref, Prefs, SessionKind};
use iscsid::proto::pdu::{Digests, LoginRsp, Pdu, BHS_LEN, MAX_DATA_SEGMENT_LEN, RESERVED_TAG};
use iscsid::proto::scsi::Direction;
use iscsid::proto::session::{Event, Phase, Session, SessionConfig, Timeouts};
use iscsid::proto::task::ScsiTask;
use iscsid::proto::text;

use crate::Cursor;

pub const ISID: [u8; 6] = [0x80, 0x12, 0x34, 0x56, 0x78, 0x9a];
pub const ITT: u32 = 0x0000_0a00;
pub const CMDSN: u32 = 0x0000_1000;
pub const TSIH: u16 = 0x0123;
pub const LUN1: u64 = 0x0001_0000_0000_0000;
const TARGET: &str = "iqn.2026-11.org.example:disk";
const INITIATOR: &str = "iqn.1995-11.org.openbsd.iscsid:fuzz";

/// Session set-up chosen by the first input byte(s).
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub discovery: bool,
    /// 0 none, 1 one-way CHAP, 2 mutual CHAP.
    pub chap: u8,
    pub header_digest: bool,
    pub data_digest: bool,
    pub initial_r2t: bool,
    pub immediate_data: bool,
    /// What the target declares as its MaxRecvDataSegmentLength.
    pub target_mrdsl: u32,
    /// Our MaxRecvDataSegmentLength.
    pub our_mrdsl: u32,
    pub first_burst: u32,
    pub max_burst: u32,
    pub queue_depth: u32,
}

impl Options {
    pub fn from_bytes(a: u8, b: u8) -> Options {
        const SIZES: [u32; 4] = [512, 1024, 8192, 262_144];
        Options {
            discovery: a & 0x01 != 0,
            chap: (a >> 1) % 3,
            header_digest: a & 0x08 != 0,
            data_digest: a & 0x10 != 0,
            initial_r2t: a & 0x20 != 0,
            immediate_data: a & 0x40 != 0,
            target_mrdsl: SIZES[usize::from(b & 3)],
            our_mrdsl: SIZES[usize::from((b >> 2) & 3)],
            first_burst: SIZES[usize::from((b >> 4) & 3)],
            max_burst: if a & 0x80 != 0 { 4096 } else { 1 << 20 },
            queue_depth: u32::from((b >> 6) & 3) * 2 + 1,
        }
    }

    pub fn session_config(&self) -> SessionConfig {
        let pref = |on| {
            if on {
                DigestPref::Any
            } else {
                DigestPref::None
            }
        };
        let chap = (self.chap > 0).then(|| ChapConfig {
            name: "alice".into(),
            secret: b"secretsecret12".to_vec(),
            mutual: (self.chap == 2).then(|| ("tgt".to_string(), b"tgtsecret1234".to_vec())),
            algs: vec![ChapAlg::Sha256, ChapAlg::Md5],
        });
        SessionConfig {
            login: LoginConfig {
                isid: ISID,
                tsih: 0,
                cid: 7,
                itt: ITT,
                cmdsn: CMDSN,
                initiatorname: INITIATOR.into(),
                targetname: (!self.discovery).then(|| TARGET.into()),
                kind: if self.discovery {
                    SessionKind::Discovery
                } else {
                    SessionKind::Normal
                },
                prefs: Prefs {
                    header_digest: pref(self.header_digest),
                    data_digest: pref(self.data_digest),
                    max_recv_dsl: self.our_mrdsl,
                    first_burst: self.first_burst,
                    max_burst: self.max_burst,
                    initial_r2t: self.initial_r2t,
                    immediate_data: self.immediate_data,
                    ..Prefs::default()
                },
                chap,
            },
            queue_depth: self.queue_depth,
            timeouts: Timeouts::default(),
        }
    }
}

/// ISCSID_FUZZ_TRACE=1 prints the script as it plays, for reading a
/// reproducer.
fn trace() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("ISCSID_FUZZ_TRACE").is_some())
}

pub struct Rig {
    pub s: Session,
    t0: Instant,
    pub now: Instant,
    /// Decodes what the session sends.
    rx: Framer,
    /// Digests on both directions once logged in.
    pub dig: Digests,
    pub statsn: u32,
    pub expcmdsn: u32,
    /// Tags the session used (commands, pings, text, logout, TMF), newest last.
    pub itts: Vec<u32>,
    /// PDUs the session sent so far.
    pub sent_pdus: usize,
    queue_depth: u32,
    /// Submitted tag -> expected transfer length, while not completed.
    outstanding: HashMap<u64, u32>,
    next_tag: u64,
    /// Whether the rig can decode the session's output strictly: not while
    /// a fuzzed login may have switched digests on mid-buffer.
    strict: bool,
}

impl Rig {
    pub fn new(cfg: SessionConfig, strict: bool) -> Rig {
        let t0 = Instant::now();
        let mut random = [0u8; 33];
        random[0] = 0x42;
        for (i, b) in random.iter_mut().enumerate().skip(1) {
            *b = 0x7f_u8.wrapping_add(i as u8);
        }
        Rig {
            queue_depth: cfg.queue_depth,
            s: Session::new(cfg, t0, random),
            t0,
            now: t0,
            rx: Framer::new(MAX_DATA_SEGMENT_LEN),
            dig: Digests::default(),
            statsn: 0x7000,
            expcmdsn: CMDSN,
            itts: Vec::new(),
            sent_pdus: 0,
            outstanding: HashMap::new(),
            next_tag: 1,
            strict,
        }
    }

    /// Everything the session queued for the wire, decoded (strict mode) or
    /// just consumed.
    pub fn sent(&mut self) -> Vec<Pdu> {
        let mut bytes = Vec::new();
        let mut iov = [std::io::IoSlice::new(&[]); 8];
        let n = self.s.tx_slices(&mut iov);
        for s in &iov[..n] {
            bytes.extend_from_slice(s);
        }
        // Consume in two steps to exercise partial writes; what did not
        // fit the slices comes after.
        let half = bytes.len() / 2;
        self.s.tx_advance(half);
        self.s.tx_advance(bytes.len() - half);
        bytes.extend_from_slice(&self.s.tx_drain());
        assert_eq!(self.s.tx_pending(), 0, "tx_advance left bytes behind");
        if !self.strict {
            return Vec::new();
        }
        self.rx.push(&bytes);
        let mut out = Vec::new();
        loop {
            match self.rx.next() {
                Ok(Some(p)) => {
                    self.note_sent(&p);
                    out.push(p);
                }
                Ok(None) => break,
                Err(e) => panic!("the initiator sent a PDU that does not decode: {e}"),
            }
        }
        assert_eq!(self.rx.buffered(), 0, "the initiator sent half a PDU");
        out
    }

    fn note_sent(&mut self, p: &Pdu) {
        self.sent_pdus += 1;
        let itt = p.itt();
        if itt != RESERVED_TAG && !self.itts.contains(&itt) {
            self.itts.push(itt);
            if self.itts.len() > 64 {
                self.itts.remove(0);
            }
        }
        match p {
            Pdu::ScsiCommand(c) if !c.immediate => self.expcmdsn = c.cmdsn.wrapping_add(1),
            Pdu::TextReq(c) if !c.immediate => self.expcmdsn = c.cmdsn.wrapping_add(1),
            _ => {}
        }
        if self.s.phase() != Phase::Login {
            let max = self.s.params().max_xmit_dsl as usize;
            assert!(
                p.data().len() <= max,
                "{} with {} data bytes, target declared MaxRecvDataSegmentLength {max}",
                p.name(),
                p.data().len()
            );
        }
    }

    /// Feeds bytes through rx_space/rx_filled in pieces of at most `step`.
    pub fn feed_bytes(&mut self, b: &[u8], step: usize) {
        let mut off = 0;
        while off < b.len() {
            let want = (b.len() - off).min(step.max(1));
            let room = self.s.rx_space(want);
            assert!(room.len() >= want, "rx_space gave less than asked");
            let n = room.len().min(want);
            room[..n].copy_from_slice(&b[off..off + n]);
            self.s.rx_filled(n, self.now);
            off += n;
        }
    }

    pub fn feed(&mut self, p: &Pdu) {
        let mut b = Vec::new();
        p.encode(self.dig, &mut b);
        self.feed_bytes(&b, b.len());
    }

    /// Drains the events, checking the command accounting.
    pub fn events(&mut self) -> Vec<Event> {
        let ev: Vec<Event> = std::iter::from_fn(|| self.s.poll_event()).collect();
        for e in &ev {
            if trace() {
                match e {
                    Event::Complete(c) => eprintln!(
                        "event: Complete tag {} {:?} {:?} sense {:02x?} {} data bytes",
                        c.tag,
                        c.dir,
                        c.status,
                        c.sense,
                        c.data.len()
                    ),
                    e => eprintln!("event: {e:?}"),
                }
            }
            if let Event::Complete(c) = e {
                let Some(len) = self.outstanding.remove(&c.tag) else {
                    panic!("completion for tag {} not outstanding: {c:?}", c.tag);
                };
                assert!(
                    c.data.len() <= len as usize,
                    "read completion with {} bytes for a {len}-byte command",
                    c.data.len()
                );
            }
        }
        ev
    }

    /// Every submitted command is completed, in flight, queued, or (once
    /// the session is closed) handed back by take_tasks: never two of these.
    pub fn check_accounting(&mut self) {
        self.events();
        assert!(
            self.s.in_flight() <= self.queue_depth as usize,
            "{} commands in flight, queue depth {}",
            self.s.in_flight(),
            self.queue_depth
        );
        if self.s.phase() == Phase::Closed {
            let back = self.s.take_tasks();
            let mut seen = HashMap::new();
            for t in &back {
                assert!(
                    seen.insert(t.tag, ()).is_none(),
                    "take_tasks returned tag {} twice",
                    t.tag
                );
                assert!(
                    self.outstanding.remove(&t.tag).is_some(),
                    "take_tasks returned tag {} that is not outstanding",
                    t.tag
                );
            }
            assert!(
                self.outstanding.is_empty(),
                "commands lost: {:?}",
                self.outstanding.keys().collect::<Vec<_>>()
            );
        } else {
            assert_eq!(
                self.s.in_flight() + self.s.queued(),
                self.outstanding.len(),
                "in flight + queued != outstanding"
            );
        }
    }

    pub fn advance(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
        self.s.tick(self.now);
    }

    /// Submits a command picked by `sel`; returns its tag.
    pub fn submit(&mut self, sel: u8) -> u64 {
        let tag = self.next_tag;
        self.next_tag = self.next_tag.wrapping_add(1);
        let len = [512u32, 4096, 1000, 65536][usize::from(sel >> 2 & 3)];
        let blocks = len.div_ceil(512) as u16;
        let t = match sel & 3 {
            0 | 3 => {
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
            1 => {
                let mut cdb = vec![0x2a, 0, 0, 0, 0, 0x20, 0, 0, 0, 0];
                cdb[7..9].copy_from_slice(&blocks.to_be_bytes());
                ScsiTask {
                    tag,
                    lun: LUN1,
                    cdb,
                    dir: Direction::Write,
                    datalen: len,
                    data: std::sync::Arc::new((0..len).map(|i| (i % 251) as u8).collect()),
                    deadline: None,
                }
            }
            _ => ScsiTask {
                tag,
                lun: LUN1,
                cdb: vec![0; 6],
                dir: Direction::None,
                datalen: 0,
                data: Default::default(),
                deadline: None,
            },
        };
        let len = if t.dir == Direction::Read {
            t.datalen
        } else {
            0
        };
        self.outstanding.insert(tag, len);
        self.s.submit(t, self.now);
        tag
    }

    /// StatSN, ExpCmdSN and MaxCmdSN for the next target PDU.
    fn sns(&mut self) -> (u32, u32, u32) {
        let st = self.statsn;
        self.statsn = self.statsn.wrapping_add(1);
        (st, self.expcmdsn, self.expcmdsn.wrapping_add(31))
    }

    fn login_rsp(&mut self, csg: u8, nsg: u8, itt: u32, data: Vec<u8>) -> LoginRsp {
        let (statsn, expcmdsn, maxcmdsn) = self.sns();
        LoginRsp {
            transit: true,
            cont: false,
            csg,
            nsg,
            version_max: 0,
            version_active: 0,
            isid: ISID,
            tsih: if nsg == FULL_FEATURE { TSIH } else { 0 },
            itt,
            statsn,
            expcmdsn,
            maxcmdsn,
            status_class: 0,
            status_detail: 0,
            data,
        }
    }

    /// Logs in without CHAP: AuthMethod=None, then the operational stage
    /// answered with our own values except for digests and the target's
    /// MaxRecvDataSegmentLength. Returns false if the session did not get
    /// to the full feature phase (never expected).
    pub fn login(&mut self, o: &Options) -> bool {
        let Some(Pdu::LoginReq(r1)) = self.sent().into_iter().next() else {
            return false;
        };
        let rsp = self.login_rsp(
            r1.csg,
            OPERATIONAL,
            r1.itt,
            text::encode([("AuthMethod", "None")]),
        );
        self.feed(&Pdu::LoginRsp(rsp));
        let Some(Pdu::LoginReq(r2)) = self.sent().into_iter().next() else {
            return false;
        };
        let Ok(offer) = text::decode(&r2.data) else {
            return false;
        };
        let mrdsl = o.target_mrdsl.to_string();
        let mut answer: Vec<(String, String)> = Vec::new();
        for (k, v) in offer {
            let a = match k.as_str() {
                "MaxRecvDataSegmentLength" => continue,
                "HeaderDigest" if o.header_digest => "CRC32C".to_owned(),
                "DataDigest" if o.data_digest => "CRC32C".to_owned(),
                k if k.ends_with("Digest") => "None".to_owned(),
                _ => v,
            };
            answer.push((k, a));
        }
        answer.push(("MaxRecvDataSegmentLength".into(), mrdsl));
        let data = text::encode(answer.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let rsp = self.login_rsp(r2.csg, FULL_FEATURE, r2.itt, data);
        self.feed(&Pdu::LoginRsp(rsp));
        let logged_in = self.events().iter().any(|e| matches!(e, Event::LoggedIn));
        if !logged_in || self.s.phase() != Phase::FullFeature {
            return false;
        }
        let p = self.s.params();
        self.dig = Digests {
            header: p.header_digest,
            data: p.data_digest,
        };
        self.rx.set_digests(self.dig);
        self.sent();
        true
    }

    /// Plays the fuzz script. Records:
    /// - op 0x00 raw: `(ctl & 0x3f) * 4 + 1` stream bytes, fed in reads of
    ///   at most the next byte + 1;
    /// - op 0x40 framed PDU: BHS (48), a u16 length and that much data; the
    ///   rig zeroes TotalAHSLength, sets DataSegmentLength and adds the
    ///   digests in force; flag bits pick fix-ups of the ITT and the
    ///   sequence numbers so responses can match real commands;
    /// - op 0x80 clock: advance by a u16 of milliseconds and tick;
    /// - op 0xc0 control: submit a command, log out, or take the tasks.
    pub fn play(&mut self, c: &mut Cursor<'_>) {
        let mut steps = 0;
        while !c.is_empty() && steps < 256 {
            steps += 1;
            let ctl = c.u8();
            match ctl & 0xc0 {
                0x00 => {
                    let n = usize::from(ctl & 0x3f) * 4 + 1;
                    let step = usize::from(c.u8()) + 1;
                    let b = c.take(n);
                    self.feed_bytes(b, step);
                }
                0x40 => {
                    let mut bhs: [u8; BHS_LEN] = c.array();
                    let len = usize::from(c.u16());
                    let data = c.take(len);
                    self.fix_up(ctl, &mut bhs);
                    let wire = self.frame(&bhs, data);
                    let step = if ctl & 0x20 != 0 { 7 } else { wire.len() };
                    self.feed_bytes(&wire, step);
                }
                0x80 => {
                    let ms = u64::from(c.u16()) * u64::from(ctl & 0x3f).max(1);
                    self.advance(ms);
                }
                _ => match ctl & 0x30 {
                    0x00 | 0x10 => {
                        self.submit(c.u8());
                    }
                    0x20 => {
                        let now = self.now;
                        self.s.logout(now);
                    }
                    _ => {
                        let now = self.now;
                        self.s.tick(now);
                    }
                },
            }
            let pdus = self.sent();
            if trace() {
                eprintln!("record 0x{ctl:02x}, phase {:?}", self.s.phase());
                for p in &pdus {
                    eprintln!("sent: {} itt 0x{:08x}", p.name(), p.itt());
                }
            }
            self.events();
            if self.s.phase() != Phase::Closed {
                self.check_accounting();
            }
        }
        self.sent();
        self.check_accounting();
    }

    /// Flag bits of a framed record: 0x01 ITT from the tags we saw, 0x02
    /// sequence numbers in the window, 0x04 TTT/ITT reserved, 0x08 LUN 1.
    fn fix_up(&mut self, ctl: u8, bhs: &mut [u8; BHS_LEN]) {
        if ctl & 0x01 != 0 {
            let itt = match self.itts.len() {
                0 => ITT,
                n => self.itts[usize::from(bhs[19]) % n],
            };
            bhs[16..20].copy_from_slice(&itt.to_be_bytes());
        }
        if ctl & 0x02 != 0 {
            let (st, exp, max) = self.sns();
            bhs[24..28].copy_from_slice(&st.to_be_bytes());
            bhs[28..32].copy_from_slice(&exp.to_be_bytes());
            bhs[32..36].copy_from_slice(&max.to_be_bytes());
        }
        if ctl & 0x04 != 0 {
            bhs[20..24].copy_from_slice(&RESERVED_TAG.to_be_bytes());
        }
        if ctl & 0x08 != 0 {
            bhs[8..16].copy_from_slice(&LUN1.to_be_bytes());
        }
        if ctl & 0x10 != 0 && self.s.phase() == Phase::Login {
            bhs[8..14].copy_from_slice(&ISID);
        }
    }

    /// Wire form of `bhs` + `data` with consistent lengths and digests.
    fn frame(&self, bhs: &[u8; BHS_LEN], data: &[u8]) -> Vec<u8> {
        let mut b = bhs.to_vec();
        b[4] = 0;
        let len = (data.len() as u32).to_be_bytes();
        b[5..8].copy_from_slice(&len[1..]);
        if self.dig.header {
            let crc = digest::crc32c(&b);
            digest::put_digest(&mut b, crc);
        }
        if !data.is_empty() {
            let start = b.len();
            b.extend_from_slice(data);
            b.resize(b.len() + (data.len().wrapping_neg() & 3), 0);
            if self.dig.data {
                let crc = digest::crc32c(&b[start..]);
                digest::put_digest(&mut b, crc);
            }
        }
        b
    }

    pub fn elapsed(&self) -> Duration {
        self.now.duration_since(self.t0)
    }
}
