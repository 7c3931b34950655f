//! One connection of the bad target: login, then the full feature phase,
//! with the armed faults applied where they belong.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use iscsid::proto::framing::Framer;
use iscsid::proto::lun;
use iscsid::proto::pdu::tmf_rsp;
use iscsid::proto::pdu::{
    AsyncMsg, DataIn, DataOut, Digests, LoginReq, LoginRsp, LogoutRsp, NopIn, NopOut, Pdu, R2t,
    ScsiCommand, ScsiResponse, TaskMgmtRsp, TextReq, TextRsp, BHS_LEN, RESERVED_TAG,
};
use iscsid::proto::text;

use super::scsi::Reply;
use super::{Fault, LoginRecord, Shared, IQN_BAD};

const READ_10: u8 = 0x28;
const READ_16: u8 = 0x88;
const WRITE_10: u8 = 0x2a;
const WRITE_16: u8 = 0x8a;
/// Before the operational stage settles it (RFC 7143 section 12.12).
const LOGIN_DSL: u32 = 8192;

fn closing(why: &str) -> io::Error {
    io::Error::other(why.to_owned())
}

/// A write gathering its data: immediate, unsolicited, then R2T bursts.
struct PendingWrite {
    cmd: ScsiCommand,
    buf: Vec<u8>,
    have: u32,
    /// Unsolicited Data-Out may still come.
    unsolicited: bool,
    /// The R2T in progress: (TTT, end offset).
    r2t: Option<(u32, u32)>,
    r2tsn: u32,
}

pub(super) struct Conn {
    sh: Arc<Shared>,
    stream: TcpStream,
    portal: usize,
    rx: Framer,
    dig: Digests,
    ffp: bool,
    login_text: Vec<u8>,
    statsn: u32,
    expcmdsn: u32,
    started: bool,
    /// Digests the initiator and we agreed on, in force after login.
    want: Digests,
    /// The initiator's MaxRecvDataSegmentLength: the most we send per PDU.
    xmit: u32,
    max_burst: u32,
    writes: HashMap<u32, PendingWrite>,
    next_ttt: u32,
}

impl Conn {
    pub(super) fn new(sh: Arc<Shared>, stream: TcpStream, portal: usize) -> Conn {
        let max_burst = sh.cfg.max_burst;
        Conn {
            sh,
            stream,
            portal,
            rx: Framer::new(LOGIN_DSL),
            dig: Digests::default(),
            ffp: false,
            login_text: Vec::new(),
            statsn: 0x4000,
            expcmdsn: 0,
            started: false,
            want: Digests::default(),
            xmit: LOGIN_DSL,
            max_burst,
            writes: HashMap::new(),
            next_ttt: 0x100,
        }
    }

    pub(super) fn run(mut self) {
        let _ = self
            .stream
            .set_read_timeout(Some(Duration::from_millis(20)));
        let _ = self.stream.set_write_timeout(Some(Duration::from_secs(5)));
        let _ = self.stream.set_nodelay(true);
        let mut buf = vec![0u8; 256 * 1024];
        let why = loop {
            if self.sh.stopped() {
                break "target stopped".to_owned();
            }
            if self.ffp {
                if let Err(e) = self.unprompted() {
                    break e.to_string();
                }
            }
            match self.stream.read(&mut buf) {
                Ok(0) => break "initiator closed the connection".to_owned(),
                Ok(n) => self.rx.push(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(e) => break e.to_string(),
            }
            if let Err(e) = self.drain() {
                break e.to_string();
            }
        };
        let _ = self.stream.shutdown(Shutdown::Both);
        self.sh
            .note(format!("portal {} connection closed: {why}", self.portal));
    }

    fn drain(&mut self) -> io::Result<()> {
        loop {
            match self.rx.next() {
                Ok(Some(p)) => self.pdu(p)?,
                Ok(None) => return Ok(()),
                Err(e) => return Err(closing(&format!("bad PDU from the initiator: {e}"))),
            }
        }
    }

    fn send(&mut self, p: &Pdu) -> io::Result<()> {
        let mut b = Vec::new();
        p.encode(self.dig, &mut b);
        self.stream.write_all(&b)
    }

    /// StatSN (advanced if the PDU carries status), ExpCmdSN, MaxCmdSN.
    fn sns(&mut self, advance: bool) -> (u32, u32, u32) {
        let s = self.statsn;
        if advance {
            self.statsn = self.statsn.wrapping_add(1);
        }
        (s, self.expcmdsn, self.expcmdsn.wrapping_add(63))
    }

    fn drop_now(&mut self, why: &str) -> io::Result<()> {
        let _ = self.stream.shutdown(Shutdown::Both);
        Err(closing(why))
    }

    fn pdu(&mut self, p: Pdu) -> io::Result<()> {
        if !self.ffp {
            return match p {
                Pdu::LoginReq(r) => self.login(r),
                other => Err(closing(&format!("{} during login", other.name()))),
            };
        }
        match p {
            Pdu::ScsiCommand(c) => self.command(c),
            Pdu::DataOut(d) => self.data_out(d),
            Pdu::NopOut(n) => self.nop_out(n),
            Pdu::TaskMgmtReq(m) => {
                if !m.immediate {
                    self.expcmdsn = m.cmdsn.wrapping_add(1);
                }
                self.sh
                    .note(format!("TMF function {} for itt {:#x}", m.function, m.rtt));
                let f = m.function;
                if self
                    .sh
                    .take(|x| *x == Fault::IgnoreTmf { function: f })
                    .is_some()
                {
                    return Ok(());
                }
                let answer = self
                    .sh
                    .take(|x| matches!(x, Fault::AnswerTmf { function, .. } if *function == f));
                let response = match answer {
                    Some(Fault::AnswerTmf { response, .. }) => response,
                    _ => tmf_rsp::COMPLETE,
                };
                if response == tmf_rsp::COMPLETE {
                    self.writes.remove(&m.rtt);
                }
                let (statsn, expcmdsn, maxcmdsn) = self.sns(true);
                self.send(&Pdu::TaskMgmtRsp(TaskMgmtRsp {
                    response,
                    itt: m.itt,
                    statsn,
                    expcmdsn,
                    maxcmdsn,
                }))
            }
            Pdu::LogoutReq(l) => {
                let (statsn, expcmdsn, maxcmdsn) = self.sns(true);
                self.send(&Pdu::LogoutRsp(LogoutRsp {
                    response: 0,
                    itt: l.itt,
                    statsn,
                    expcmdsn,
                    maxcmdsn,
                    time2wait: 0,
                    time2retain: 0,
                }))?;
                Err(closing("logged out"))
            }
            Pdu::TextReq(t) => self.text(t),
            other => Err(closing(&format!("unexpected {}", other.name()))),
        }
    }

    // ---- login ----

    fn login(&mut self, r: LoginReq) -> io::Result<()> {
        if !self.started {
            self.started = true;
            self.expcmdsn = r.cmdsn;
        }
        self.login_text.extend_from_slice(&r.data);
        if r.cont {
            return self.login_rsp(&r, None, (0, 0), Vec::new());
        }
        let data = std::mem::take(&mut self.login_text);
        let Ok(keys) = text::decode(&data) else {
            self.login_rsp(&r, None, (2, 0), Vec::new())?;
            return Err(closing("malformed login text"));
        };
        let get = |k: &str| keys.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        match r.csg {
            0 => {
                let redirect = self.sh.state().redirect;
                if let (0, Some(permanent)) = (self.portal, redirect) {
                    let addr = format!("127.0.0.1:{},1", self.sh.ports[1]);
                    self.sh.note(format!("login redirected to {addr}"));
                    let detail = if permanent { 2 } else { 1 };
                    let data = text::encode([("TargetAddress", addr.as_str())]);
                    self.login_rsp(&r, None, (1, detail), data)?;
                    return Err(closing("redirected"));
                }
                let discovery = get("SessionType") == Some("Discovery");
                if !discovery && get("TargetName").is_some_and(|t| t != IQN_BAD) {
                    self.login_rsp(&r, None, (2, 3), Vec::new())?;
                    return Err(closing("unknown target"));
                }
                let mut out = vec![("TargetPortalGroupTag".to_owned(), "1".to_owned())];
                if let Some(m) = get("AuthMethod") {
                    if !m.split(',').any(|x| x == "None") {
                        self.login_rsp(&r, None, (2, 1), Vec::new())?;
                        return Err(closing("initiator wants authentication"));
                    }
                    out.push(("AuthMethod".into(), "None".into()));
                }
                self.login_step(&r, out)
            }
            1 => {
                let out = self.operational(&keys);
                self.login_step(&r, out)
            }
            _ => {
                self.login_rsp(&r, None, (2, 0x0b), Vec::new())?;
                Err(closing("bad login stage"))
            }
        }
    }

    /// Answers the initiator's operational offer the way a lenient target
    /// does: agree where the result function allows, within our limits.
    fn operational(&mut self, keys: &[(String, String)]) -> Vec<(String, String)> {
        let cfg = &self.sh.cfg;
        let mut out = Vec::new();
        for (k, v) in keys {
            let num = v.parse::<u32>().unwrap_or(0);
            let a = match k.as_str() {
                "HeaderDigest" | "DataDigest" => {
                    let crc = cfg.digests && v.split(',').any(|x| x == "CRC32C");
                    let none = v.split(',').any(|x| x == "None");
                    let pick = if crc {
                        "CRC32C"
                    } else if none {
                        "None"
                    } else {
                        "Reject"
                    };
                    if k == "HeaderDigest" {
                        self.want.header = pick == "CRC32C";
                    } else {
                        self.want.data = pick == "CRC32C";
                    }
                    pick.to_owned()
                }
                "MaxRecvDataSegmentLength" => {
                    self.xmit = num.clamp(512, 16_777_215);
                    continue;
                }
                "MaxBurstLength" => {
                    self.max_burst = num.clamp(512, cfg.max_burst);
                    self.max_burst.to_string()
                }
                "FirstBurstLength" => num.clamp(512, 65536).to_string(),
                "InitialR2T" | "ImmediateData" | "DataPDUInOrder" | "DataSequenceInOrder" => {
                    v.clone()
                }
                "MaxConnections" => "1".to_owned(),
                "ErrorRecoveryLevel" => "0".to_owned(),
                "MaxOutstandingR2T" => "1".to_owned(),
                "DefaultTime2Wait" | "DefaultTime2Retain" => v.clone(),
                _ => "NotUnderstood".to_owned(),
            };
            out.push((k.clone(), a));
        }
        out.push((
            "MaxRecvDataSegmentLength".to_owned(),
            cfg.max_recv_dsl.to_string(),
        ));
        out
    }

    fn login_step(&mut self, r: &LoginReq, keys: Vec<(String, String)>) -> io::Result<()> {
        let data = text::encode(keys.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let transit = r.transit.then_some(r.nsg);
        let tsih = if transit == Some(3) {
            let mut st = self.sh.state();
            let t = st.next_tsih;
            st.next_tsih = st.next_tsih.wrapping_add(1).max(1);
            t
        } else {
            0
        };
        self.login_rsp_tsih(r, transit, (0, 0), data, tsih)?;
        if transit == Some(3) {
            // Digests and our limit apply from the next PDU on.
            self.ffp = true;
            self.dig = self.want;
            self.rx.set_digests(self.want);
            self.rx.set_max_data(self.sh.cfg.max_recv_dsl);
            self.sh.state().logins.push(LoginRecord {
                portal: self.portal,
                isid: r.isid,
                tsih,
                header_digest: self.want.header,
                data_digest: self.want.data,
            });
        }
        Ok(())
    }

    fn login_rsp(
        &mut self,
        r: &LoginReq,
        transit: Option<u8>,
        status: (u8, u8),
        data: Vec<u8>,
    ) -> io::Result<()> {
        self.login_rsp_tsih(r, transit, status, data, 0)
    }

    fn login_rsp_tsih(
        &mut self,
        r: &LoginReq,
        transit: Option<u8>,
        status: (u8, u8),
        data: Vec<u8>,
        tsih: u16,
    ) -> io::Result<()> {
        let (statsn, expcmdsn, maxcmdsn) = self.sns(true);
        self.send(&Pdu::LoginRsp(LoginRsp {
            transit: transit.is_some(),
            cont: false,
            csg: r.csg,
            nsg: transit.unwrap_or(0),
            version_max: 0,
            version_active: 0,
            isid: r.isid,
            tsih,
            itt: r.itt,
            statsn,
            expcmdsn,
            maxcmdsn,
            status_class: status.0,
            status_detail: status.1,
            data,
        }))
    }

    // ---- full feature phase ----

    /// Faults that need no command to ride on.
    fn unprompted(&mut self) -> io::Result<()> {
        let Some(f) = self.sh.take(Fault::unprompted) else {
            return Ok(());
        };
        let (statsn, expcmdsn, maxcmdsn) = self.sns(true);
        let mut a = AsyncMsg {
            statsn,
            expcmdsn,
            maxcmdsn,
            ..AsyncMsg::default()
        };
        match f {
            Fault::AsyncLogout => {
                a.event = 1;
                a.param3 = 10;
                self.send(&Pdu::AsyncMsg(a))
            }
            _ => {
                a.event = 2;
                a.param2 = 1;
                a.param3 = 0;
                self.send(&Pdu::AsyncMsg(a))?;
                self.drop_now("async connection drop sent")
            }
        }
    }

    fn nop_out(&mut self, n: NopOut) -> io::Result<()> {
        if !n.immediate {
            self.expcmdsn = n.cmdsn.wrapping_add(1);
        }
        if n.itt == RESERVED_TAG {
            return Ok(());
        }
        let (statsn, expcmdsn, maxcmdsn) = self.sns(true);
        self.send(&Pdu::NopIn(NopIn {
            lun: n.lun,
            itt: n.itt,
            ttt: RESERVED_TAG,
            statsn,
            expcmdsn,
            maxcmdsn,
            data: n.data,
        }))
    }

    fn text(&mut self, t: TextReq) -> io::Result<()> {
        if !t.immediate {
            self.expcmdsn = t.cmdsn.wrapping_add(1);
        }
        let keys = text::decode(&t.data).unwrap_or_default();
        let mut out = Vec::new();
        if keys.iter().any(|(k, _)| k == "SendTargets") {
            out.push(("TargetName".to_owned(), IQN_BAD.to_owned()));
            out.push((
                "TargetAddress".to_owned(),
                format!("127.0.0.1:{},1", self.sh.ports[0]),
            ));
        }
        let data = text::encode(out.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let (statsn, expcmdsn, maxcmdsn) = self.sns(true);
        self.send(&Pdu::TextRsp(TextRsp {
            final_: true,
            cont: false,
            lun: 0,
            itt: t.itt,
            ttt: RESERVED_TAG,
            statsn,
            expcmdsn,
            maxcmdsn,
            data,
        }))
    }

    fn command(&mut self, c: ScsiCommand) -> io::Result<()> {
        if !c.immediate {
            self.expcmdsn = c.cmdsn.wrapping_add(1);
        }
        let op = c.cdb.first().copied().unwrap_or(0xff);
        let is_read = matches!(op, READ_10 | READ_16);
        let is_write = matches!(op, WRITE_10 | WRITE_16);
        if is_read || is_write {
            if let Some(Fault::Stall(d)) = self.sh.take(|f| matches!(f, Fault::Stall(_))) {
                self.stall(d);
            }
        }
        if is_read && self.sh.take(|f| *f == Fault::SwallowRead).is_some() {
            self.sh.note(format!("swallowed READ itt {:#x}", c.itt));
            return Ok(());
        }
        if is_read && self.sh.take(|f| *f == Fault::DropOnRead).is_some() {
            return self.drop_now("dropped on READ");
        }
        if is_write
            && self
                .sh
                .take(|f| *f == Fault::DropMidWrite { persist: false })
                .is_some()
        {
            return self.drop_now("dropped on WRITE before its data");
        }
        let lun = lun::decode(c.lun);
        if c.write {
            let early = self.sh.state().luns.precheck(lun, &c.cdb);
            if let Some(reply) = early {
                return self.respond(&c, reply);
            }
            let len = c.expected_len.min(64 << 20);
            let mut buf = vec![0u8; len as usize];
            let n = c.data.len().min(buf.len());
            buf[..n].copy_from_slice(&c.data[..n]);
            let w = PendingWrite {
                unsolicited: !c.final_,
                have: n as u32,
                buf,
                r2t: None,
                r2tsn: 0,
                cmd: c,
            };
            let itt = w.cmd.itt;
            self.writes.insert(itt, w);
            return self.advance_write(itt);
        }
        let reply = self.sh.state().luns.execute(lun, &c.cdb, &[]);
        self.respond(&c, reply)
    }

    /// Neither reads nor answers for `d` (stopping early if the target
    /// stops).
    fn stall(&self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end && !self.sh.stopped() {
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn data_out(&mut self, d: DataOut) -> io::Result<()> {
        let Some(w) = self.writes.get_mut(&d.itt) else {
            // The command was refused or aborted; its data is moot.
            return Ok(());
        };
        let start = d.buffer_offset as usize;
        let Some(area) = start
            .checked_add(d.data.len())
            .and_then(|end| w.buf.get_mut(start..end))
        else {
            return Err(closing("Data-Out past the expected length"));
        };
        area.copy_from_slice(&d.data);
        w.have = w.have.saturating_add(d.data.len() as u32);
        if d.final_ {
            if d.ttt == RESERVED_TAG {
                w.unsolicited = false;
            } else if w.r2t.is_some_and(|(ttt, _)| ttt == d.ttt) {
                w.r2t = None;
            }
        }
        self.advance_write(d.itt)
    }

    /// Asks for the next burst, or runs the write once all data is in.
    fn advance_write(&mut self, itt: u32) -> io::Result<()> {
        let Some(w) = self.writes.get_mut(&itt) else {
            return Ok(());
        };
        let total = w.buf.len() as u32;
        if w.have >= total {
            let Some(w) = self.writes.remove(&itt) else {
                return Ok(());
            };
            let lun = lun::decode(w.cmd.lun);
            let reply = self.sh.state().luns.execute(lun, &w.cmd.cdb, &w.buf);
            if self
                .sh
                .take(|f| *f == Fault::DropMidWrite { persist: true })
                .is_some()
            {
                return self.drop_now("dropped after the write, before its status");
            }
            return self.respond(&w.cmd, reply);
        }
        if w.unsolicited || w.r2t.is_some() {
            return Ok(());
        }
        let offset = w.have;
        let len = (total - offset).min(self.max_burst);
        let ttt = self.next_ttt;
        self.next_ttt = self.next_ttt.wrapping_add(1) & 0x7fff_ffff;
        w.r2t = Some((ttt, offset + len));
        let r2tsn = w.r2tsn;
        w.r2tsn += 1;
        let lun_field = w.cmd.lun;
        let (statsn, expcmdsn, maxcmdsn) = self.sns(false);
        self.send(&Pdu::R2t(R2t {
            lun: lun_field,
            itt,
            ttt,
            statsn,
            expcmdsn,
            maxcmdsn,
            r2tsn,
            buffer_offset: offset,
            desired_len: len,
        }))
    }

    /// The status (and read data) of `c`.
    fn respond(&mut self, c: &ScsiCommand, reply: Reply) -> io::Result<()> {
        let op = c.cdb.first().copied().unwrap_or(0xff);
        let is_read = matches!(op, READ_10 | READ_16);
        if is_read {
            if self.sh.take(|f| *f == Fault::StrayDataIn).is_some() {
                let (statsn, expcmdsn, maxcmdsn) = self.sns(false);
                self.send(&Pdu::DataIn(DataIn {
                    itt: c.itt ^ 0x5a5a_0000,
                    ttt: RESERVED_TAG,
                    statsn,
                    expcmdsn,
                    maxcmdsn,
                    data: vec![0xee; 512],
                    ..DataIn::default()
                }))?;
            }
            if self.sh.take(|f| *f == Fault::StrayResponse).is_some() {
                let (statsn, expcmdsn, maxcmdsn) = self.sns(true);
                self.send(&Pdu::ScsiResponse(ScsiResponse {
                    itt: c.itt ^ 0x5a5a_0000,
                    statsn,
                    expcmdsn,
                    maxcmdsn,
                    ..ScsiResponse::default()
                }))?;
            }
        }
        if reply.status != 0 || reply.data.is_empty() || !c.read {
            return self.status(c, &reply, reply.data.len());
        }
        let want = c.expected_len as usize;
        let mut data = reply.data;
        let produced = data.len();
        data.truncate(want);
        let chunk = self.sh.cfg.data_in_chunk.min(self.xmit).max(512) as usize;
        let skip = is_read && self.sh.take(|f| *f == Fault::SkipDataSn).is_some();
        let n = data.len().div_ceil(chunk);
        for (i, piece) in data.chunks(chunk).enumerate() {
            let last = i + 1 == n;
            // Skipping DataSN 1: the second PDU (or a lone one) is numbered
            // one too high.
            let datasn = if skip && (i >= 1 || n == 1) { i + 1 } else { i } as u32;
            let (statsn, expcmdsn, maxcmdsn) = self.sns(last);
            let pdu = Pdu::DataIn(DataIn {
                final_: last,
                status_present: last,
                status: 0,
                underflow: last && produced < want,
                overflow: last && produced > want,
                residual: if last {
                    produced.abs_diff(want) as u32
                } else {
                    0
                },
                lun: c.lun,
                itt: c.itt,
                ttt: RESERVED_TAG,
                statsn,
                expcmdsn,
                maxcmdsn,
                datasn,
                buffer_offset: (i * chunk) as u32,
                data: piece.to_vec(),
                ..DataIn::default()
            });
            let mut b = Vec::new();
            pdu.encode(self.dig, &mut b);
            if self.dig.data && self.sh.take(|f| *f == Fault::CorruptDataDigest).is_some() {
                // One bit of the data segment, after the digest was computed.
                let at = BHS_LEN + if self.dig.header { 4 } else { 0 };
                if let Some(byte) = b.get_mut(at) {
                    *byte ^= 0x01;
                }
            }
            self.stream.write_all(&b)?;
        }
        Ok(())
    }

    /// A SCSI Response with `reply`'s status and sense.
    fn status(&mut self, c: &ScsiCommand, reply: &Reply, moved: usize) -> io::Result<()> {
        let want = c.expected_len as usize;
        let moved = if reply.status == 0 { moved } else { 0 };
        let mut data = Vec::new();
        if !reply.sense.is_empty() {
            data.extend_from_slice(&(reply.sense.len() as u16).to_be_bytes());
            data.extend_from_slice(&reply.sense);
        }
        let (statsn, expcmdsn, maxcmdsn) = self.sns(true);
        self.send(&Pdu::ScsiResponse(ScsiResponse {
            underflow: moved < want && !c.write,
            residual: if c.write {
                0
            } else {
                (want - moved.min(want)) as u32
            },
            status: reply.status,
            itt: c.itt,
            statsn,
            expcmdsn,
            maxcmdsn,
            data,
            ..ScsiResponse::default()
        }))
    }
}
