//! The vscsi emulator against the relay's `EmuDev`, in-process and without
//! iSCSI: a small RAM-backed SCSI target (a test double for iscsid) answers
//! through `i2t`/`data_write`/`data_read`/`t2i`, or the test drives the
//! relay side by hand.

use std::collections::{HashMap, HashSet};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use iscsid::vscsi::emu::{self, EmuDev, OpenError};
use iscsid::vscsi::{DevError, Device, Dir, I2t, Status};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use regress::emulator::scsi::{self, fixed_sense};
use regress::emulator::{DiskInfo, EmuConfig, EmuError, Emulator, VSCSI_OPENINGS};
use regress::harness::{bin, Daemon, Scratch};

const T: Duration = Duration::from_secs(10);

fn sock_path(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("vemu-{}-{name}-{n}.sock", std::process::id()))
}

fn connect(emu: &Emulator) -> EmuDev {
    let dev = EmuDev::new(emu::open(emu.path()).unwrap()).unwrap();
    emu.wait_connected(T).unwrap();
    dev
}

fn wait_readable(dev: &EmuDev, ms: u16) {
    let mut fds = [PollFd::new(dev.fd(), PollFlags::POLLIN)];
    let _ = poll(&mut fds, PollTimeout::from(ms));
}

/// The next command on a hand-driven relay.
fn next_i2t(dev: &mut EmuDev) -> I2t {
    let deadline = Instant::now() + T;
    loop {
        if let Some(c) = dev.i2t().unwrap() {
            return c;
        }
        assert!(Instant::now() < deadline, "no command arrived");
        wait_readable(dev, 20);
    }
}

/// Commands that arrive within `ms`.
fn drain_for(dev: &mut EmuDev, ms: u64) -> Vec<I2t> {
    let deadline = Instant::now() + Duration::from_millis(ms);
    let mut v = Vec::new();
    while Instant::now() < deadline {
        while let Some(c) = dev.i2t().unwrap() {
            v.push(c);
        }
        wait_readable(dev, 10);
    }
    v
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + T;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

// ---- the test target -------------------------------------------------

#[derive(Clone, Debug)]
enum Kind {
    Disk {
        bs: u32,
        blocks: u64,
        bad_lba: Option<u64>,
    },
    Controller,
}

fn disk(bs: u32, blocks: u64) -> Kind {
    Kind::Disk {
        bs,
        blocks,
        bad_lba: None,
    }
}

#[derive(Clone, Debug)]
struct TargetSpec {
    /// INQUIRY version: 2 is pre-SPC (dumb scan), 5 is SPC-3.
    version: u8,
    report_luns: bool,
    /// Answers every LUN as LUN 0, like devices that ignore the LUN.
    alias: bool,
    ua_at_start: bool,
    /// INQUIRY's CmdQue bit: without it the kernel gives the LUN one opening.
    cmdque: bool,
    /// REPORT LUNS entries as sent, when not the plain list of `luns`.
    raw_report: Option<Vec<[u8; 8]>>,
    luns: Vec<(u32, Kind)>,
}

fn spc3(luns: Vec<(u32, Kind)>) -> TargetSpec {
    TargetSpec {
        version: 5,
        report_luns: true,
        alias: false,
        ua_at_start: false,
        cmdque: true,
        raw_report: None,
        luns,
    }
}

enum Ctl {
    Probe(i32, i32),
    Detach(i32, i32),
    Ua(u32, u32),
    Hold(bool),
    /// Answered once every earlier control message has been applied.
    Sync(Sender<()>),
    Close,
}

#[derive(Default)]
struct Seen {
    /// (target, lun, opcode) of every command, in arrival order.
    cmds: Vec<(u32, u32, u8)>,
    max_batch: usize,
    flushes: u64,
    errors: Vec<String>,
}

impl Seen {
    fn count(&self, target: u32, lun: u32, op: u8) -> usize {
        self.cmds
            .iter()
            .filter(|&&c| c == (target, lun, op))
            .count()
    }
    fn any_op(&self, op: u8) -> bool {
        self.cmds.iter().any(|c| c.2 == op)
    }
}

struct Resp {
    status: Status,
    sense: [u8; 18],
    data: Vec<u8>,
}

fn good(data: Vec<u8>) -> Resp {
    Resp {
        status: Status::Done,
        sense: [0; 18],
        data,
    }
}

fn check(key: u8, asc: u8, ascq: u8) -> Resp {
    Resp {
        status: Status::Sense,
        sense: fixed_sense(key, asc, ascq),
        data: Vec::new(),
    }
}

struct Target {
    spec: TargetSpec,
    blocks: HashMap<(u32, u64), Vec<u8>>,
    ua: HashSet<u32>,
}

struct Sim {
    targets: HashMap<u32, Target>,
    seen: Arc<Mutex<Seen>>,
}

fn inquiry_data(kind: Option<&Kind>, version: u8, cmdque: bool, lun: u32) -> Vec<u8> {
    let dev = match kind {
        Some(Kind::Disk { .. }) => scsi::T_DIRECT,
        Some(Kind::Controller) => scsi::T_STORARRAY,
        None => 0x7f,
    };
    let flags = if cmdque { scsi::SID_CMDQUE } else { 0 };
    let mut d = vec![dev, 0, version, 2, 31, 0, 0, flags];
    d.extend_from_slice(b"EMUTEST ");
    d.extend_from_slice(format!("{:<16}", format!("LUN{lun}")).as_bytes());
    d.extend_from_slice(b"0001");
    d
}

impl Sim {
    fn exec(&mut self, c: &I2t, wdata: &[u8]) -> Resp {
        let cdb = c.cdb();
        let op = cdb.first().copied().unwrap_or(0xff);
        self.seen.lock().unwrap().cmds.push((c.target, c.lun, op));
        let Some(t) = self.targets.get_mut(&c.target) else {
            return Resp {
                status: Status::Err,
                sense: [0; 18],
                data: Vec::new(),
            };
        };
        let lun = if t.spec.alias { 0 } else { c.lun };
        let kind = t
            .spec
            .luns
            .iter()
            .find(|(l, _)| *l == lun)
            .map(|(_, k)| k.clone());
        let mut r = match op {
            scsi::INQUIRY => good(inquiry_data(
                kind.as_ref(),
                t.spec.version,
                t.spec.cmdque,
                lun,
            )),
            scsi::REPORT_LUNS if t.spec.report_luns => match &t.spec.raw_report {
                Some(entries) => {
                    let mut d = ((entries.len() * 8) as u32).to_be_bytes().to_vec();
                    d.extend_from_slice(&[0; 4]);
                    d.extend(entries.iter().flatten());
                    good(d)
                }
                None => {
                    let luns: Vec<u8> = t.spec.luns.iter().map(|(l, _)| *l as u8).collect();
                    good(scsi::report_luns_data(&luns))
                }
            },
            _ if t.ua.remove(&lun) && kind.is_some() => check(scsi::SKEY_UNIT_ATTENTION, 0x29, 0),
            _ => Self::exec_lun(t, lun, kind, cdb, wdata, &self.seen),
        };
        r.data.truncate(c.datalen as usize);
        r
    }

    fn exec_lun(
        t: &mut Target,
        lun: u32,
        kind: Option<Kind>,
        cdb: &[u8],
        wdata: &[u8],
        seen: &Mutex<Seen>,
    ) -> Resp {
        let Some(kind) = kind else {
            return check(scsi::SKEY_ILLEGAL_REQUEST, 0x25, 0);
        };
        let (bs, blocks, bad) = match kind {
            Kind::Disk {
                bs,
                blocks,
                bad_lba,
            } => (bs, blocks, bad_lba),
            Kind::Controller => (0, 0, None),
        };
        let is_disk = bs != 0;
        match cdb[0] {
            scsi::TEST_UNIT_READY => good(vec![]),
            scsi::READ_CAPACITY_10 if is_disk => {
                let last = u32::try_from(blocks - 1).unwrap_or(u32::MAX);
                let mut d = last.to_be_bytes().to_vec();
                d.extend_from_slice(&bs.to_be_bytes());
                good(d)
            }
            scsi::SERVICE_ACTION_IN_16 if is_disk && cdb[1] & 0x1f == 0x10 => {
                let mut d = (blocks - 1).to_be_bytes().to_vec();
                d.extend_from_slice(&bs.to_be_bytes());
                d.resize(32, 0);
                good(d)
            }
            scsi::SYNCHRONIZE_CACHE_10 if is_disk => {
                seen.lock().unwrap().flushes += 1;
                good(vec![])
            }
            scsi::READ_10 | scsi::READ_16 | scsi::WRITE_10 | scsi::WRITE_16 if is_disk => {
                let Some(rw) = scsi::parse_rw(cdb) else {
                    return check(scsi::SKEY_ILLEGAL_REQUEST, 0x24, 0);
                };
                let end = rw.lba + u64::from(rw.blocks);
                if end > blocks {
                    return check(scsi::SKEY_ILLEGAL_REQUEST, 0x21, 0);
                }
                if bad.is_some_and(|b| (rw.lba..end).contains(&b)) {
                    return check(scsi::SKEY_MEDIUM_ERROR, 0x11, 0);
                }
                let bsz = bs as usize;
                if rw.write {
                    for (i, b) in wdata.chunks(bsz).enumerate() {
                        t.blocks.insert((lun, rw.lba + i as u64), b.to_vec());
                    }
                    good(vec![])
                } else {
                    let mut d = Vec::with_capacity(rw.blocks as usize * bsz);
                    for i in 0..u64::from(rw.blocks) {
                        match t.blocks.get(&(lun, rw.lba + i)) {
                            Some(b) => d.extend_from_slice(b),
                            None => d.resize(d.len() + bsz, 0),
                        }
                    }
                    good(d)
                }
            }
            _ => check(scsi::SKEY_ILLEGAL_REQUEST, 0x20, 0),
        }
    }
}

/// Answers a batch of commands with their data phases interleaved: every
/// write's first third, then (last command first) the rest of each write in
/// two pieces and the first half of each read, then the second halves and
/// the completions. Each command's pieces stay in order, as vscsi demands.
fn process(dev: &mut EmuDev, sim: &mut Sim, batch: Vec<I2t>) -> Result<(), DevError> {
    {
        let mut s = sim.seen.lock().unwrap();
        s.max_batch = s.max_batch.max(batch.len());
    }
    let mut wbuf: Vec<Vec<u8>> = batch
        .iter()
        .map(|c| match c.dir {
            Dir::Write => vec![0; c.datalen as usize],
            _ => Vec::new(),
        })
        .collect();
    for (c, b) in batch.iter().zip(wbuf.iter_mut()) {
        if c.dir == Dir::Write {
            let k = b.len() / 3;
            dev.data_write(c.tag, &mut b[..k])?;
        }
    }
    let mut resps: Vec<Option<Resp>> = batch.iter().map(|_| None).collect();
    for i in (0..batch.len()).rev() {
        let c = &batch[i];
        if c.dir == Dir::Write {
            let b = &mut wbuf[i];
            let k = b.len() / 3;
            let rest = &mut b[k..];
            let h = rest.len() / 2;
            let (x, y) = rest.split_at_mut(h);
            dev.data_write(c.tag, x)?;
            dev.data_write(c.tag, y)?;
        }
        let r = sim.exec(c, &wbuf[i]);
        if c.dir == Dir::Read {
            dev.data_read(c.tag, &r.data[..r.data.len() / 2])?;
        }
        resps[i] = Some(r);
    }
    for (c, r) in batch.iter().zip(resps) {
        let Some(r) = r else { continue };
        if c.dir == Dir::Read {
            dev.data_read(c.tag, &r.data[r.data.len() / 2..])?;
        }
        dev.t2i(c.tag, r.status, &r.sense)?;
    }
    Ok(())
}

fn responder_loop(mut dev: EmuDev, mut sim: Sim, ctl: Receiver<Ctl>) -> Result<(), DevError> {
    let mut hold = false;
    let mut held = Vec::new();
    loop {
        loop {
            match ctl.try_recv() {
                Ok(Ctl::Probe(t, l)) => dev.probe(t, l)?,
                Ok(Ctl::Detach(t, l)) => dev.detach(t, l)?,
                Ok(Ctl::Ua(t, l)) => {
                    if let Some(t) = sim.targets.get_mut(&t) {
                        t.ua.insert(l);
                    }
                }
                Ok(Ctl::Hold(h)) => hold = h,
                Ok(Ctl::Sync(ack)) => {
                    let _ = ack.send(());
                }
                Ok(Ctl::Close) | Err(TryRecvError::Disconnected) => return Ok(()),
                Err(TryRecvError::Empty) => break,
            }
        }
        if !dev.pending() {
            wait_readable(&dev, 10);
        }
        let mut batch = Vec::new();
        while let Some(c) = dev.i2t()? {
            batch.push(c);
        }
        if hold {
            held.extend(batch);
            continue;
        }
        held.extend(batch);
        if !held.is_empty() {
            process(&mut dev, &mut sim, std::mem::take(&mut held))?;
        }
    }
}

struct Responder {
    ctl: Sender<Ctl>,
    /// The emulator's task count when this relay connected, and the probe
    /// and detach requests sent since.
    base: u64,
    sent: AtomicU64,
    seen: Arc<Mutex<Seen>>,
    thread: Option<JoinHandle<()>>,
}

impl Responder {
    fn start(emu: &Emulator, targets: Vec<(u32, TargetSpec)>) -> Responder {
        let dev = connect(emu);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let sim = Sim {
            targets: targets
                .into_iter()
                .map(|(id, spec)| {
                    let ua = if spec.ua_at_start {
                        spec.luns.iter().map(|l| l.0).collect()
                    } else {
                        HashSet::new()
                    };
                    let t = Target {
                        spec,
                        blocks: HashMap::new(),
                        ua,
                    };
                    (id, t)
                })
                .collect(),
            seen: Arc::clone(&seen),
        };
        let (tx, rx) = mpsc::channel();
        let seen2 = Arc::clone(&seen);
        let thread = thread::spawn(move || {
            if let Err(e) = responder_loop(dev, sim, rx) {
                if !matches!(e, DevError::Closed) {
                    seen2.lock().unwrap().errors.push(e.to_string());
                }
            }
        });
        Responder {
            ctl: tx,
            base: emu.stats().tasks,
            sent: AtomicU64::new(0),
            seen,
            thread: Some(thread),
        }
    }

    fn send(&self, c: Ctl) {
        if matches!(c, Ctl::Probe(..) | Ctl::Detach(..)) {
            self.sent.fetch_add(1, Ordering::Relaxed);
        }
        self.ctl.send(c).unwrap();
    }

    /// Waits until the emulator has run every task this relay asked for.
    fn wait_tasks(&self, emu: &Emulator) {
        emu.wait_tasks(self.base + self.sent.load(Ordering::Relaxed), T)
            .unwrap();
    }

    /// Sends `c` and waits until the responder has applied it.
    fn apply(&self, c: Ctl) {
        self.send(c);
        let (tx, rx) = mpsc::channel();
        self.send(Ctl::Sync(tx));
        rx.recv_timeout(T).unwrap();
    }

    fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap()
    }

    /// Closes the relay side, as iscsid exiting would.
    fn close(mut self) -> Arc<Mutex<Seen>> {
        let _ = self.ctl.send(Ctl::Close);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        Arc::clone(&self.seen)
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        let _ = self.ctl.send(Ctl::Close);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn probe_and_wait(emu: &Emulator, r: &Responder, target: i32, ndisks: usize) -> Vec<DiskInfo> {
    r.send(Ctl::Probe(target, -1));
    r.wait_tasks(emu);
    let d = emu.disks();
    assert_eq!(d.len(), ndisks, "{d:?}");
    d
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

// ---- tests -------------------------------------------------------------

#[test]
fn probe_attaches_disks_and_records_the_controller() {
    let emu = Emulator::listen(&sock_path("probe")).unwrap();
    let mut spec = spc3(vec![
        (0, Kind::Controller),
        (1, disk(512, 2048)),
        (2, disk(4096, 1000)),
    ]);
    spec.ua_at_start = true;
    let r = Responder::start(&emu, vec![(0, spec)]);
    let disks = probe_and_wait(&emu, &r, 0, 2);
    assert_eq!(
        disks[0],
        DiskInfo {
            name: "sd0".into(),
            target: 0,
            lun: 1,
            vendor: "EMUTEST".into(),
            product: "LUN1".into(),
            revision: "0001".into(),
            block_size: 512,
            blocks: 2048,
            openings: 16,
        }
    );
    assert_eq!(
        (
            disks[1].name.as_str(),
            disks[1].lun,
            disks[1].block_size,
            disks[1].blocks
        ),
        ("sd1", 2, 4096, 1000)
    );
    let devs = emu.devices();
    assert_eq!(devs.len(), 1);
    assert_eq!(
        (devs[0].target, devs[0].lun, devs[0].device_type),
        (0, 0, 0x0c)
    );
    assert_eq!(devs[0].product, "LUN0");
    let s = r.seen();
    // SPC-3: REPORT LUNS on LUN 0, so LUNs 3..7 are never asked about.
    assert_eq!(s.count(0, 0, scsi::REPORT_LUNS), 1);
    assert_eq!(s.count(0, 3, scsi::INQUIRY), 0);
    // The UNIT ATTENTION each LUN had was retried through.
    assert!(s.count(0, 0, scsi::TEST_UNIT_READY) >= 2);
    assert!(s.count(0, 1, scsi::TEST_UNIT_READY) >= 2);
    assert_eq!(s.count(0, 1, scsi::READ_CAPACITY_10), 1);
    assert!(!s.any_op(scsi::SERVICE_ACTION_IN_16));
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    drop(s);
    // A second probe finds everything attached and adds nothing.
    probe_and_wait(&emu, &r, 0, 2);
    assert_eq!(r.seen().count(0, 1, scsi::READ_CAPACITY_10), 1);
    assert_eq!(emu.protocol_errors(), 0, "{:?}", emu.protocol_log());
}

#[test]
fn pre_spc_targets_get_a_dumb_scan() {
    let emu = Emulator::listen(&sock_path("dumb")).unwrap();
    let mut old = spc3(vec![(0, disk(512, 64)), (3, disk(512, 32))]);
    old.version = 2;
    let mut alias = spc3(vec![(0, disk(512, 16))]);
    alias.version = 2;
    alias.alias = true;
    let r = Responder::start(&emu, vec![(0, old), (1, alias)]);
    let d = probe_and_wait(&emu, &r, 0, 2);
    assert_eq!((d[0].lun, d[1].lun), (0, 3));
    {
        let s = r.seen();
        assert!(!s.any_op(scsi::REPORT_LUNS));
        for l in 1..8 {
            assert_eq!(s.count(0, l, scsi::INQUIRY), 1, "lun {l}");
        }
        assert_eq!(s.count(0, 8, scsi::INQUIRY), 0);
    }
    // A target that ignores the LUN: LUN 1 answers as LUN 0, the scan stops.
    let d = probe_and_wait(&emu, &r, 1, 3);
    assert_eq!(d.iter().filter(|d| d.target == 1).count(), 1);
    let s = r.seen();
    assert_eq!(s.count(1, 1, scsi::INQUIRY), 1);
    assert_eq!(s.count(1, 2, scsi::INQUIRY), 0);
}

#[test]
fn huge_disks_use_read_capacity_16_and_16_byte_cdbs() {
    let emu = Emulator::listen(&sock_path("huge")).unwrap();
    let blocks = (1u64 << 32) + 10;
    let r = Responder::start(&emu, vec![(2, spc3(vec![(0, disk(512, blocks))]))]);
    let d = probe_and_wait(&emu, &r, 2, 1).remove(0);
    assert_eq!((d.target, d.blocks, d.block_size), (2, blocks, 512));
    assert_eq!(r.seen().count(2, 0, scsi::SERVICE_ACTION_IN_16), 1);
    let hi = (1u64 << 32) + 2;
    let data = pattern(7, 4 * 512);
    emu.write(&d, hi, &data).unwrap();
    assert_eq!(emu.read(&d, hi, 4).unwrap(), data);
    emu.write(&d, 5, &data[..512]).unwrap();
    assert_eq!(emu.read(&d, 5, 1).unwrap(), &data[..512]);
    // Straddling 2^32 needs the 16-byte form too.
    let back = emu.read(&d, (1 << 32) - 2, 8).unwrap();
    assert_eq!(
        (&back[..2048], &back[2048..]),
        (&[0u8; 2048][..], &data[..])
    );
    let s = r.seen();
    assert_eq!(s.count(2, 0, scsi::WRITE_16), 1);
    assert_eq!(s.count(2, 0, scsi::READ_16), 2);
    assert_eq!(s.count(2, 0, scsi::WRITE_10), 1);
    assert_eq!(s.count(2, 0, scsi::READ_10), 1);
    drop(s);
    assert!(matches!(emu.read(&d, blocks, 1), Err(EmuError::OutOfRange)));
    assert!(matches!(
        emu.write(&d, 0, &[0; 100]),
        Err(EmuError::Invalid(_))
    ));
}

#[test]
fn concurrent_round_trips_at_many_offsets() {
    let emu = Emulator::listen(&sock_path("rw")).unwrap();
    let r = Responder::start(&emu, vec![(0, spc3(vec![(0, disk(512, 1 << 16))]))]);
    let d = probe_and_wait(&emu, &r, 0, 1).remove(0);
    let threads = 8u64;
    let region = (1u64 << 16) / threads;
    let written = AtomicU64::new(0);
    thread::scope(|s| {
        for t in 0..threads {
            let (emu, d, written) = (&emu, &d, &written);
            s.spawn(move || {
                let mut x = t + 1;
                for i in 0..40u64 {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let blocks = if i % 10 == 9 {
                        2048
                    } else {
                        1 + (x >> 33) % 64
                    };
                    let lba = t * region + (x >> 20) % (region - blocks);
                    let data = pattern(t * 1000 + i, (blocks * 512) as usize);
                    emu.write(d, lba, &data).unwrap();
                    written.fetch_add(data.len() as u64, Ordering::Relaxed);
                    let back = emu.read(d, lba, blocks as u32).unwrap();
                    assert!(back == data, "thread {t} op {i} lba {lba} blocks {blocks}");
                }
                emu.flush(d).unwrap();
            });
        }
    });
    let s = r.seen();
    assert!(s.max_batch > 1, "queue depth never exceeded 1");
    assert_eq!(s.flushes, threads);
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    drop(s);
    let st = emu.stats();
    assert_eq!(st.in_flight, 0);
    assert_eq!(st.commands, st.completed);
    assert_eq!(st.bytes_written, written.load(Ordering::Relaxed));
    assert!(st.bytes_read > st.bytes_written);
    assert_eq!(emu.protocol_errors(), 0, "{:?}", emu.protocol_log());
}

#[test]
fn large_transfers_cross_socket_buffers() {
    let emu = Emulator::listen(&sock_path("large")).unwrap();
    let r = Responder::start(&emu, vec![(0, spc3(vec![(0, disk(4096, 1 << 14))]))]);
    let d = probe_and_wait(&emu, &r, 0, 1).remove(0);
    let data = pattern(99, 16 << 20);
    emu.write(&d, 100, &data).unwrap();
    assert!(emu.read(&d, 100, 4096).unwrap() == data);
    assert_eq!(emu.stats().bytes_written, 16 << 20);
}

#[test]
fn data_phases_at_the_running_offset_and_errno_paths() {
    let emu = Emulator::listen(&sock_path("errno")).unwrap();
    let mut dev = connect(&emu);
    let payload = pattern(1, 1000);
    let cdb = scsi::write_10(8, 2);
    let c = thread::scope(|s| {
        let h = s.spawn(|| emu.command(0, 4, &cdb, Dir::Write, 1000, &payload, T));
        let c = next_i2t(&mut dev);
        assert_eq!(
            (c.target, c.lun, c.dir, c.datalen),
            (0, 4, Dir::Write, 1000)
        );
        assert_eq!(c.cdb(), cdb);
        // Three pieces, each at the running offset.
        let mut got = vec![0u8; 1000];
        let (a, rest) = got.split_at_mut(10);
        let (b, z) = rest.split_at_mut(300);
        dev.data_write(c.tag, a).unwrap();
        dev.data_write(c.tag, b).unwrap();
        dev.data_write(c.tag, z).unwrap();
        assert!(got == payload);
        // One byte more than is left: ENOMEM.
        assert!(matches!(
            dev.data_write(c.tag, &mut [0]),
            Err(DevError::TooMuchData(t)) if t == c.tag
        ));
        // A zero-length fetch is still allowed (it fits).
        dev.data_write(c.tag, &mut []).unwrap();
        // Unknown tag: EFAULT, known at the relay's end (the kernel looks
        // only at the commands userland took), so the emulator never sees it.
        assert!(matches!(
            dev.data_write(c.tag ^ 0x8000, &mut [0; 4]),
            Err(DevError::UnknownTag(_))
        ));
        dev.t2i(c.tag, Status::Done, &[]).unwrap();
        let r = h.join().unwrap().unwrap();
        assert_eq!((r.status, r.resid, r.data.len()), (Status::Done, 0, 0));
        c
    });
    assert_eq!(emu.protocol_errors(), 1);

    // A read: DATA_WRITE is EINVAL, DATA_READ appends, resid counts the rest.
    let cdb = scsi::read_10(0, 1);
    thread::scope(|s| {
        let h = s.spawn(|| emu.command(0, 4, &cdb, Dir::Read, 100, &[], T));
        let r = next_i2t(&mut dev);
        assert_ne!(r.tag, c.tag);
        assert_eq!((r.dir, r.datalen), (Dir::Read, 100));
        assert!(matches!(
            dev.data_write(r.tag, &mut [0; 10]),
            Err(DevError::WrongDirection(_))
        ));
        dev.data_read(r.tag, &[1; 40]).unwrap();
        dev.data_read(r.tag, &[2; 20]).unwrap();
        // Past the end: ENOMEM, as VSCSI_DATA_READ answers; recorded by
        // the emulator, and not appended.
        assert!(matches!(
            dev.data_read(r.tag, &[3; 41]),
            Err(DevError::TooMuchData(t)) if t == r.tag
        ));
        let sense = fixed_sense(scsi::SKEY_MEDIUM_ERROR, 0x11, 0);
        dev.t2i(r.tag, Status::Sense, &sense).unwrap();
        let res = h.join().unwrap().unwrap();
        assert_eq!(res.status, Status::Sense);
        assert_eq!(res.sense, sense);
        assert_eq!(res.resid, 40);
        let mut want = vec![1; 40];
        want.extend([2; 20]);
        assert_eq!(res.data, want);
    });
    assert_eq!(emu.protocol_errors(), 3);

    // No data phase: both directions are EINVAL; ERR is passed up.
    let tur = scsi::test_unit_ready();
    thread::scope(|s| {
        let h = s.spawn(|| emu.command(0, 0, &tur, Dir::None, 0, &[], T));
        let n = next_i2t(&mut dev);
        assert!(matches!(
            dev.data_write(n.tag, &mut []),
            Err(DevError::WrongDirection(_))
        ));
        assert!(matches!(
            dev.data_read(n.tag, &[]),
            Err(DevError::WrongDirection(_))
        ));
        assert!(matches!(
            dev.data_read(n.tag + 1000, &[1]),
            Err(DevError::UnknownTag(_))
        ));
        assert!(matches!(
            dev.t2i(n.tag + 1000, Status::Done, &[]),
            Err(DevError::UnknownTag(_))
        ));
        dev.t2i(n.tag, Status::Err, &[0x70, 0, 6]).unwrap();
        let res = h.join().unwrap().unwrap();
        // Sense is only carried with Status::Sense.
        assert_eq!(
            (res.status, res.sense, res.resid),
            (Status::Err, [0; 18], 0)
        );
    });
    wait_until("protocol errors", || emu.protocol_errors() == 7);
    let log = emu.protocol_log();
    assert!(log.iter().any(|l| l.contains("EFAULT")), "{log:?}");
    assert!(log.iter().any(|l| l.contains("ENOMEM")), "{log:?}");
    assert!(log.iter().any(|l| l.contains("EINVAL")), "{log:?}");
    assert!(emu.connected());
}

#[test]
fn bad_requests_and_timeouts() {
    let emu = Emulator::listen(&sock_path("bad")).unwrap();
    assert!(matches!(
        emu.command(0, 0, &[0], Dir::None, 0, &[], T),
        Err(EmuError::NotConnected)
    ));
    let mut dev = connect(&emu);
    assert!(matches!(
        emu.command(0, 0, &[], Dir::None, 0, &[], T),
        Err(EmuError::Invalid(_))
    ));
    assert!(matches!(
        emu.command(0, 0, &[0; 17], Dir::None, 0, &[], T),
        Err(EmuError::Invalid(_))
    ));
    assert!(matches!(
        emu.command(0, 0, &[0x2a], Dir::Write, 10, &[0; 9], T),
        Err(EmuError::Invalid(_))
    ));
    // Never completed: the caller gets Timeout instead of hanging.
    let t0 = Instant::now();
    let r = emu.command(0, 0, &[0], Dir::None, 0, &[], Duration::from_millis(100));
    assert!(matches!(r, Err(EmuError::Timeout)));
    assert!(t0.elapsed() < Duration::from_secs(5));
    // It stays in flight; a late completion is not an error.
    let c = next_i2t(&mut dev);
    assert_eq!(emu.stats().in_flight, 1);
    dev.t2i(c.tag, Status::Done, &[]).unwrap();
    wait_until("late completion", || emu.stats().in_flight == 0);
    assert_eq!(emu.protocol_errors(), 0);
}

#[test]
fn openings_bound_the_queue_depth_per_link() {
    let cfg = EmuConfig {
        openings: 2,
        ..EmuConfig::default()
    };
    let emu = Emulator::listen_with(&sock_path("openings"), cfg).unwrap();
    let mut dev = connect(&emu);
    let tur = scsi::test_unit_ready();
    thread::scope(|s| {
        let hs: Vec<_> = (0..5)
            .map(|_| s.spawn(|| emu.command(0, 0, &tur, Dir::None, 0, &[], T)))
            .collect();
        let first = drain_for(&mut dev, 300);
        assert_eq!(first.len(), 2);
        // Another link has its own openings.
        let other = s.spawn(|| emu.command(0, 1, &tur, Dir::None, 0, &[], T));
        let o = next_i2t(&mut dev);
        assert_eq!(o.lun, 1);
        dev.t2i(o.tag, Status::Done, &[]).unwrap();
        other.join().unwrap().unwrap();
        // Each completion lets exactly one more through.
        let mut pending = first;
        let mut arrived = 2;
        let mut done = 0;
        while done < 5 {
            let c = pending.remove(0);
            dev.t2i(c.tag, Status::Done, &[]).unwrap();
            done += 1;
            if arrived < 5 {
                pending.push(next_i2t(&mut dev));
                arrived += 1;
            }
            assert!(drain_for(&mut dev, 30).is_empty(), "over the openings");
        }
        for h in hs {
            assert_eq!(h.join().unwrap().unwrap().status, Status::Done);
        }
    });
}

#[test]
fn detach_removes_links_and_probe_brings_them_back() {
    let emu = Emulator::listen(&sock_path("detach")).unwrap();
    let spec = spc3(vec![
        (0, Kind::Controller),
        (1, disk(512, 100)),
        (2, disk(512, 200)),
    ]);
    let r = Responder::start(&emu, vec![(0, spec)]);
    let d = probe_and_wait(&emu, &r, 0, 2);
    r.send(Ctl::Detach(0, 1));
    let left = emu.wait_disks(|d| d.len() == 1, T).unwrap();
    assert_eq!((left[0].name.as_str(), left[0].lun), ("sd1", 2));
    assert!(matches!(emu.read(&d[0], 0, 1), Err(EmuError::NoSuchDisk)));
    assert_eq!(emu.read(&d[1], 0, 1).unwrap(), vec![0; 512]);
    assert_eq!(emu.devices().len(), 1);
    // A wildcard target with a fixed LUN names nothing.
    r.send(Ctl::Detach(-1, 2));
    r.send(Ctl::Detach(-1, -1));
    emu.wait_disks(|d| d.is_empty(), T).unwrap();
    assert!(emu.devices().is_empty());
    let d = probe_and_wait(&emu, &r, 0, 2);
    assert_eq!((d[0].name.as_str(), d[1].name.as_str()), ("sd0", "sd1"));
    // Probing one LUN only.
    r.send(Ctl::Detach(0, 2));
    emu.wait_disks(|d| d.len() == 1, T).unwrap();
    r.send(Ctl::Probe(0, 2));
    r.wait_tasks(&emu);
    assert_eq!(emu.disks().len(), 2);
    assert_eq!(emu.protocol_errors(), 0);
}

#[test]
fn unit_attention_is_retried_and_check_conditions_surface() {
    let emu = Emulator::listen(&sock_path("ua")).unwrap();
    let spec = spc3(vec![(
        0,
        Kind::Disk {
            bs: 512,
            blocks: 100,
            bad_lba: Some(50),
        },
    )]);
    let r = Responder::start(&emu, vec![(0, spec)]);
    let d = probe_and_wait(&emu, &r, 0, 1).remove(0);
    r.apply(Ctl::Ua(0, 0));
    let before = r.seen().count(0, 0, scsi::READ_10);
    assert_eq!(emu.read(&d, 1, 1).unwrap(), vec![0; 512]);
    assert_eq!(r.seen().count(0, 0, scsi::READ_10), before + 2);
    match emu.read(&d, 48, 4) {
        Err(EmuError::Check { sense }) => {
            assert_eq!(scsi::sense_key(&sense), Some(scsi::SKEY_MEDIUM_ERROR));
            assert_eq!(scsi::asc_ascq(&sense), Some((0x11, 0)));
        }
        other => panic!("{other:?}"),
    }
    // Raw commands are not retried and show the sense as is.
    let res = emu
        .command(0, 0, &scsi::read_10(99, 2), Dir::Read, 1024, &[], T)
        .unwrap();
    assert_eq!(res.status, Status::Sense);
    assert_eq!(scsi::asc_ascq(&res.sense), Some((0x21, 0)));
    assert_eq!(res.resid, 1024);
}

#[test]
fn closing_the_relay_resets_commands_and_detaches() {
    let emu = Emulator::listen(&sock_path("close")).unwrap();
    let r = Responder::start(&emu, vec![(0, spc3(vec![(0, disk(512, 100))]))]);
    let d = probe_and_wait(&emu, &r, 0, 1).remove(0);
    r.apply(Ctl::Hold(true));
    let cdb = scsi::read_10(0, 1);
    thread::scope(|s| {
        let raw: Vec<_> = (0..3)
            .map(|_| s.spawn(|| emu.command(0, 0, &cdb, Dir::Read, 512, &[], T)))
            .collect();
        let sd = s.spawn(|| emu.read(&d, 0, 1));
        wait_until("commands in flight", || emu.stats().in_flight == 4);
        let seen = r.close();
        assert!(seen.lock().unwrap().errors.is_empty());
        for h in raw {
            let res = h.join().unwrap().unwrap();
            assert_eq!((res.status, res.resid), (Status::Reset, 512));
        }
        // sd retries a reset, and then the device is gone.
        assert!(matches!(sd.join().unwrap(), Err(EmuError::NotConnected)));
    });
    assert!(!emu.connected());
    // Completions first, then the forced detach, as in vscsiclose.
    emu.wait_disks(|d| d.is_empty(), T).unwrap();
    assert!(matches!(emu.read(&d, 0, 1), Err(EmuError::NotConnected)));
    assert!(emu.stats().resets >= 4);
    // iscsid restarts: a new open, a new probe, the same names.
    let r = Responder::start(&emu, vec![(0, spc3(vec![(0, disk(512, 100))]))]);
    let d2 = probe_and_wait(&emu, &r, 0, 1).remove(0);
    assert_eq!(d2, d);
    assert_eq!(emu.read(&d2, 0, 1).unwrap(), vec![0; 512]);
    assert_eq!(emu.stats().connections, 2);
}

#[test]
fn the_device_is_opened_exclusively() {
    let emu = Emulator::listen(&sock_path("excl")).unwrap();
    let mut dev = connect(&emu);
    // Refused at once, as vscsiopen's EBUSY: well within the open's limit.
    let t0 = Instant::now();
    let second = emu::open(emu.path());
    assert!(matches!(second, Err(OpenError::Busy)), "{second:?}");
    assert!(t0.elapsed() < emu::OPEN_TIMEOUT / 2);
    assert_eq!(emu.stats().refused, 1);
    assert!(emu.connected());
    thread::scope(|s| {
        let h = s.spawn(|| emu.command(0, 0, &[0], Dir::None, 0, &[], T));
        let c = next_i2t(&mut dev);
        dev.t2i(c.tag, Status::Done, &[]).unwrap();
        assert_eq!(h.join().unwrap().unwrap().status, Status::Done);
    });
}

#[test]
fn malformed_frames_are_counted_and_oversized_ones_close() {
    use std::io::Write;
    let emu = Emulator::listen(&sock_path("garbage")).unwrap();
    let mut s = UnixStream::connect(emu.path()).unwrap();
    emu.wait_connected(T).unwrap();
    // Unknown type, then an I2T (kernel-to-user only) from the relay.
    s.write_all(&[1, 0, 0, 0, 99]).unwrap();
    let mut i2t = vec![35, 0, 0, 0, 1];
    i2t.resize(39, 0);
    s.write_all(&i2t).unwrap();
    wait_until("two errors", || emu.protocol_errors() == 2);
    assert!(emu.connected());
    s.write_all(&[0xff, 0xff, 0xff, 0xff]).unwrap();
    wait_until("close", || !emu.connected());
    assert_eq!(emu.protocol_errors(), 3);
}

#[test]
fn listen_replaces_a_stale_socket_only() {
    let p = sock_path("stale");
    drop(UnixListener::bind(&p).unwrap());
    assert!(p.exists());
    let emu = Emulator::listen(&p).unwrap();
    let _dev = connect(&emu);
    drop(emu);
    assert!(!p.exists(), "socket left behind");
    let f = sock_path("file");
    std::fs::write(&f, b"keep").unwrap();
    assert!(Emulator::listen(&f).is_err());
    assert_eq!(std::fs::read(&f).unwrap(), b"keep");
    std::fs::remove_file(&f).unwrap();
}

#[test]
fn wait_disks_times_out() {
    let emu = Emulator::listen(&sock_path("wait")).unwrap();
    let t0 = Instant::now();
    let r = emu.wait_disks(|d| !d.is_empty(), Duration::from_millis(50));
    assert!(matches!(r, Err(EmuError::Timeout)));
    assert!(t0.elapsed() >= Duration::from_millis(45));
    assert!(Path::new(emu.path()).exists());
}

/// vscsiopen refuses a second open with EBUSY, so a second iscsid fails
/// before it daemonizes, saying why, and the first keeps the device.
#[test]
fn a_second_iscsid_fails_before_daemonizing() {
    let dir = Scratch::new("busy");
    let dev = dir.join("vscsi0.sock");
    let emu = Emulator::listen(&dev).unwrap();
    let mut first = Daemon::start(&dev);
    emu.wait_connected(T).unwrap();
    // Not -d: past the device it would daemonize and exit 0.
    let out = std::process::Command::new(bin("iscsid"))
        .arg("-n")
        .arg(&dev)
        .arg("-s")
        .arg(dir.join("second.sock"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run a second iscsid");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("{}: device busy", dev.display())),
        "{err}"
    );
    assert!(!dir.join("second.sock").exists(), "control socket made");
    assert_eq!(emu.stats().refused, 1);
    assert!(first.running() && emu.connected());
}

/// vscsi gives each link 16 openings (saa_openings), and scsi_probe_link
/// cuts a LUN without CmdQue to 1: commands beyond wait for an opening,
/// and never more are outstanding to the relay.
#[test]
fn openings_are_the_kernels_and_one_without_cmdque() {
    let emu = Emulator::listen(&sock_path("cmdque")).unwrap();
    let untagged = TargetSpec {
        cmdque: false,
        ..spc3(vec![(0, disk(512, 64))])
    };
    let r = Responder::start(
        &emu,
        vec![(0, spc3(vec![(0, disk(512, 64))])), (1, untagged)],
    );
    r.send(Ctl::Probe(0, -1));
    r.send(Ctl::Probe(1, -1));
    r.wait_tasks(&emu);
    let disks = emu.disks();
    let (tagged, one) = (&disks[0], &disks[1]);
    assert_eq!((tagged.target, tagged.openings), (0, VSCSI_OPENINGS));
    assert_eq!((one.target, one.openings), (1, 1));
    r.apply(Ctl::Hold(true));
    let emu = &emu;
    thread::scope(|s| {
        let hs: Vec<_> = (0..VSCSI_OPENINGS as u64 + 4)
            .map(|i| (tagged, i))
            .chain((0..3).map(|i| (one, i)))
            .map(|(d, i)| s.spawn(move || emu.read(d, i, 1)))
            .collect();
        // Every opening taken; the rest wait in the emulator.
        wait_until("openings full", || {
            emu.stats().in_flight == VSCSI_OPENINGS as u64 + 1
        });
        r.apply(Ctl::Hold(false));
        for h in hs {
            assert_eq!(h.join().unwrap().unwrap(), vec![0; 512]);
        }
    });
    assert_eq!(emu.peak_outstanding(0, 0), VSCSI_OPENINGS);
    assert_eq!(emu.peak_outstanding(1, 0), 1);
}

/// scsi_get_target_luns (scsiconf.c 1.255) takes only entries whose first
/// byte is 0 (peripheral addressing, bus 0) and their second byte as the
/// LUN: flat space and LUNs past 255 are never probed, the levels past the
/// first are ignored, and LUN 0 is there whether reported or not.
#[test]
fn report_luns_entries_the_kernel_probes() {
    let emu = Emulator::listen(&sock_path("rluns")).unwrap();
    let luns = vec![
        (0, disk(512, 8)),
        (3, disk(512, 8)),
        (5, disk(512, 8)),
        (6, disk(512, 8)),
    ];
    let spec = TargetSpec {
        raw_report: Some(vec![
            // Flat space LUN 3 and LUN 300: skipped.
            [0x40, 3, 0, 0, 0, 0, 0, 0],
            [0x41, 0x2c, 0, 0, 0, 0, 0, 0],
            // Peripheral, bus 1: skipped.
            [0x01, 5, 0, 0, 0, 0, 0, 0],
            // Peripheral LUN 5; and LUN 6 with a second level, taken as 6.
            [0, 5, 0, 0, 0, 0, 0, 0],
            [0, 6, 0x40, 1, 0, 0, 0, 0],
        ]),
        ..spc3(luns)
    };
    let r = Responder::start(&emu, vec![(0, spec)]);
    let got: Vec<u32> = probe_and_wait(&emu, &r, 0, 3)
        .iter()
        .map(|d| d.lun)
        .collect();
    assert_eq!(got, [0, 5, 6]);
    // INQUIRY went to LUN 0 and the two reported LUNs only.
    let seen = r.seen();
    let asked: HashSet<u32> = seen
        .cmds
        .iter()
        .filter(|c| c.2 == scsi::INQUIRY)
        .map(|c| c.1)
        .collect();
    assert_eq!(asked, HashSet::from([0, 5, 6]));
}

/// scsi_detach_link first waits, in scsi_link_shutdown, for every command
/// of the link, on the one systq thread: a REQDETACH while the relay has
/// a command of the link is recorded, and it and the tasks queued behind
/// it finish only once the command completes.
#[test]
fn detach_waits_for_the_links_commands_and_is_recorded() {
    let emu = Emulator::listen(&sock_path("busydetach")).unwrap();
    let spec = spc3(vec![(0, disk(512, 8)), (1, disk(512, 8))]);
    let r = Responder::start(&emu, vec![(0, spec)]);
    let d = probe_and_wait(&emu, &r, 0, 2);
    assert!(emu.detach_violations().is_empty());
    r.apply(Ctl::Hold(true));
    thread::scope(|s| {
        let h = s.spawn(|| emu.read(&d[1], 3, 1));
        wait_until("read taken", || emu.stats().in_flight == 1);
        // Taken by the relay: the responder lists it in the DETACH.
        r.apply(Ctl::Detach(0, 1));
        r.send(Ctl::Detach(0, 0));
        wait_until("violation", || !emu.detach_violations().is_empty());
        let v = emu.detach_violations();
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!((v[0].target, v[0].lun, v[0].link), (0, 1, (0, 1)));
        assert_eq!(v[0].outstanding.len(), 1);
        // The detach sleeps on the command, and LUN 0's waits behind it.
        assert_eq!(emu.disks().len(), 2);
        r.apply(Ctl::Hold(false));
        assert_eq!(h.join().unwrap().unwrap(), vec![0; 512]);
    });
    emu.wait_disks(|d| d.is_empty(), T).unwrap();
    r.wait_tasks(&emu);
    // LUN 0's detach named no busy link.
    assert_eq!(emu.detach_violations().len(), 1);
}

/// The relay between the emulator and a hand-played engine: read data the
/// kernel refuses fails that command with ERR (XS_DRIVER_STUFFUP), as on
/// OpenBSD where VSCSI_DATA_READ returns the errno and the relay completes
/// the command with VSCSI_STAT_ERR; a completion for a tag the kernel does
/// not know (EFAULT) is logged and dropped; read data that is not where
/// the relay put the command's (inline for a command with an arena slot)
/// fails the command without reaching the kernel. The relay lives on.
#[test]
fn the_relay_fails_commands_whose_data_the_kernel_refuses() {
    use common::imsg::ImsgBuf;
    use iscsid::arena::{self, Arena, Slot};
    use iscsid::procmsg::{self, Cmd, Done};
    let emu = Emulator::listen(&sock_path("relayerr")).unwrap();
    let fd = emu::open(emu.path()).unwrap();
    let (engine, theirs) = UnixStream::pair().unwrap();
    let (_parent, parents) = UnixStream::pair().unwrap();
    let region = arena::create().unwrap();
    let relay_arena = Arena::map(&region).unwrap();
    let mut mine = Arena::map(&region).unwrap();
    let relay = thread::spawn(move || {
        // As the relay process picks its device.
        let dev = iscsid::vscsi::from_fd(fd).unwrap();
        iscsid::relay::Relay::new(
            dev,
            theirs.into(),
            ImsgBuf::new(parents.into()),
            relay_arena,
        )
        .and_then(|mut r| r.run())
    });
    let mut eng = ImsgBuf::new(engine.into());
    let eng = &mut eng;
    let emu = &emu;
    // Completes a command with `data`: in its slot, as the engine does,
    // or inline.
    let mut done =
        |eng: &mut ImsgBuf, (tag, slot): (u32, Option<Slot>), data: &[u8], inline: bool| {
            let (inline, n) = match slot {
                Some(s) if !inline => {
                    mine.get_mut(s, data.len()).unwrap().copy_from_slice(data);
                    (&[][..], data.len() as u32)
                }
                _ => (data, 0),
            };
            let t = Done::trailer(tag, Status::Done, &[], n);
            eng.compose_parts(procmsg::DONE, 0, 0, &[inline, &t], None)
                .unwrap();
            eng.write_all().unwrap();
        };
    // The next command's tag and slot.
    let next = |eng: &mut ImsgBuf| {
        let m = eng.recv_blocking().unwrap().expect("a command");
        assert_eq!(m.kind, procmsg::CMD);
        let c = Cmd::decode(m.data).unwrap();
        assert!(c.slot.is_some(), "an 8-byte command has a slot");
        (c.i2t.tag, c.slot)
    };
    let read10 = scsi::read_10(0, 1);
    let write10 = scsi::write_10(0, 1);
    let cases: [(&[u8], Dir, &[u8], bool); 4] = [
        // ENOMEM: 9 bytes for an 8-byte read.
        (&read10, Dir::Read, &[1; 9], false),
        // Read data for a write: the relay fetched all its write data, so
        // vscsi_data's ENOMEM check (before the direction's) refuses it.
        (&write10, Dir::Write, &[2; 4], false),
        // Inline data for a command with a slot: the relay refuses it.
        (&read10, Dir::Read, &[6; 8], true),
        // Fine: the relay is still there.
        (&read10, Dir::Read, &[3; 8], false),
    ];
    let stray = thread::scope(|s| {
        let mut stray = 0;
        for (i, (cdb, dir, data, inline)) in cases.into_iter().enumerate() {
            let out = vec![7u8; 8];
            let h = s.spawn(move || emu.command(0, 0, cdb, dir, 8, &out, T));
            let cmd = next(eng);
            done(eng, cmd, data, inline);
            let r = h.join().unwrap().unwrap();
            if i < 3 {
                assert_eq!((r.status, r.data.len()), (Status::Err, 0), "case {i}");
            } else {
                assert_eq!((r.status, r.data), (Status::Done, vec![3; 8]));
                stray = cmd.0 + 1000;
            }
        }
        stray
    });
    // EFAULT: a completion (with data) for a tag never handed out. The
    // next command still goes through.
    thread::scope(|s| {
        let h = s.spawn(|| emu.command(0, 0, &read10, Dir::Read, 8, &[], T));
        let real = next(eng);
        done(eng, (stray, None), &[4; 8], true);
        done(eng, real, &[5; 8], false);
        let r = h.join().unwrap().unwrap();
        assert_eq!((r.status, r.data), (Status::Done, vec![5; 8]));
    });
    assert!(!relay.is_finished());
    // Every refusal reached the emulator as what the kernel would refuse;
    // the inline data for a slotted command never did.
    let log = emu.protocol_log();
    let want = [
        "DATA_READ tag 1 len 9: ENOMEM",
        "DATA_READ tag 2 len 4: ENOMEM",
        "EFAULT",
        "T2I for unknown tag",
    ];
    for e in want {
        assert!(log.iter().any(|l| l.contains(e)), "{e}: {log:?}");
    }
    assert!(
        !log.iter().any(|l| l.contains("DATA_READ tag 3")),
        "{log:?}"
    );
    // The engine goes: the relay ends cleanly.
    *eng = ImsgBuf::new(UnixStream::pair().unwrap().0.into());
    relay.join().unwrap().unwrap();
}

/// An SPC target that answers REPORT LUNS with ILLEGAL REQUEST: the
/// midlayer ignores that sense (SCSI_IGNORE_ILLEGAL_REQUEST), reads the
/// zeroed reply as no LUNs, and does not fall back to a dumb scan.
#[test]
fn report_luns_refused_by_an_spc_target_probes_lun_0_only() {
    let emu = Emulator::listen(&sock_path("norluns")).unwrap();
    let spec = TargetSpec {
        report_luns: false,
        ..spc3(vec![(0, disk(512, 8)), (1, disk(512, 8))])
    };
    let r = Responder::start(&emu, vec![(0, spec)]);
    let d = probe_and_wait(&emu, &r, 0, 1);
    assert_eq!(d[0].lun, 0);
    assert_eq!(r.seen().count(0, 1, scsi::INQUIRY), 0);
}
