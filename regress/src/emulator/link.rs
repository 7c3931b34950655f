//! One open of the emulated `/dev/vscsi0`: the command table (the kernel's
//! `t2i` list), the reader that applies the relay's messages to it, and
//! what `vscsiclose` does when the relay goes away.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use iscsid::vscsi::emuproto::{
    self, data_header, Decoder, Msg, MsgType, OpenResult, ProtoError, WriteErrno, MAX_DATA,
};
use iscsid::vscsi::{Dir, I2t, Status, CDB_MAX, SENSE_LEN};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::probe::{self, Task};
use super::sem::{lock, NoOpening, Permit, Sem};
use super::writer::Writer;
use super::{CmdResult, DetachViolation, EmuError, Shared};

/// How long a write to the relay may stall before the connection is cut.
const WRITE_STALL: Duration = Duration::from_secs(30);

/// A command as the caller hands it to the emulated midlayer.
#[derive(Clone)]
pub(crate) struct Req<'a> {
    pub(crate) target: u32,
    pub(crate) lun: u32,
    pub(crate) cdb: &'a [u8],
    pub(crate) dir: Dir,
    pub(crate) datalen: u32,
    /// Write data: exactly `datalen` bytes for `Dir::Write`.
    pub(crate) out: Arc<[u8]>,
}

/// Runs when a command submitted without waiting completes, on the
/// connection's reader thread: it must not block.
pub(crate) type Callback = Box<dyn FnOnce(CmdResult) + Send>;

/// Who learns of a command's completion.
pub(crate) enum Waiter {
    /// A thread blocked in `exec`.
    Chan(SyncSender<CmdResult>),
    Call(Callback),
}

/// A link: (target, lun).
pub(crate) type LinkId = (u32, u32);

/// An in-flight command (a ccb on the kernel's `t2i` list).
struct Cmd {
    link: LinkId,
    dir: Dir,
    datalen: u32,
    out: Arc<[u8]>,
    /// Bytes moved so far: the kernel's `ccb_datalen`, the running offset.
    moved: u32,
    data: Vec<u8>,
    done: Waiter,
    permit: Permit,
}

impl Cmd {
    /// Completes the command, handing its opening back first so the
    /// waiter's next command need not wait for it.
    fn complete(self, status: Status, sense: [u8; SENSE_LEN]) {
        let Cmd {
            datalen,
            moved,
            data,
            done,
            permit,
            ..
        } = self;
        drop(permit);
        let res = CmdResult {
            status,
            // Only XS_SENSE copies the sense into the xfer.
            sense: if status == Status::Sense {
                sense
            } else {
                [0; SENSE_LEN]
            },
            data,
            resid: datalen - moved,
        };
        match done {
            // The waiter may have timed out and gone; nothing to do then.
            Waiter::Chan(tx) => {
                let _ = tx.try_send(res);
            }
            Waiter::Call(f) => f(res),
        }
    }
}

/// Commands of one link that hold an opening (the midlayer's
/// `link->pending`), and the most there ever were at once.
#[derive(Default, Clone, Copy)]
struct Load {
    now: usize,
    peak: usize,
}

#[derive(Default)]
struct Cmds {
    closed: bool,
    map: HashMap<u32, Cmd>,
    loads: HashMap<LinkId, Load>,
}

impl Cmds {
    /// Takes `tag` off the table, and its link's count down.
    fn remove(&mut self, tag: u32) -> Option<Cmd> {
        let c = self.map.remove(&tag)?;
        if let Some(l) = self.loads.get_mut(&c.link) {
            l.now = l.now.saturating_sub(1);
        }
        Some(c)
    }
}

pub(crate) struct Conn {
    sock: UnixStream,
    writer: Writer,
    alive: AtomicBool,
    cmds: Mutex<Cmds>,
    sems: Mutex<HashMap<LinkId, Arc<Sem>>>,
    /// Signalled whenever a command leaves `cmds`.
    idle: Condvar,
    tasks: Mutex<Option<mpsc::Sender<Task>>>,
}

/// `vscsi_data`'s checks, in its order: EFAULT, ENOMEM, EINVAL.
fn check(c: Option<&mut Cmd>, len: u32, dir: Dir) -> Result<&mut Cmd, WriteErrno> {
    let c = c.ok_or(WriteErrno::Fault)?;
    if len > c.datalen - c.moved {
        return Err(WriteErrno::NoMem);
    }
    if c.dir != dir {
        return Err(WriteErrno::Inval);
    }
    Ok(c)
}

fn errno_name(e: WriteErrno) -> &'static str {
    match e {
        WriteErrno::Fault => "EFAULT",
        WriteErrno::NoMem => "ENOMEM",
        WriteErrno::Inval => "EINVAL",
    }
}

impl Conn {
    pub(crate) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Cuts the socket; the reader then sees EOF and closes the device.
    pub(crate) fn shutdown(&self) {
        let _ = self.sock.shutdown(Shutdown::Both);
    }

    pub(crate) fn in_flight(&self) -> usize {
        lock(&self.cmds).map.len()
    }

    /// The most commands `link` had outstanding at once on this open.
    pub(crate) fn peak(&self, link: LinkId) -> usize {
        lock(&self.cmds).loads.get(&link).map_or(0, |l| l.peak)
    }

    /// Step 1 of scsi_detach_link, `scsi_link_shutdown`: whoever waits for
    /// an opening of `link` fails, then the caller sleeps until every
    /// command of the link has completed (`link->pending` is 0) or the
    /// device closes. On OpenBSD only a dying link (a closing device) is
    /// woken from that sleep (`scsi_link_close` wakes it if SDEV_S_DYING),
    /// so a REQDETACH of a busy link sleeps on until the close: waking at
    /// the last completion, the emulator is kinder there, and records the
    /// request instead (`detach_requested`).
    pub(crate) fn shut_link(&self, link: LinkId) {
        if let Some(sem) = lock(&self.sems).remove(&link) {
            sem.shut();
        }
        let mut cmds = lock(&self.cmds);
        while !cmds.closed && cmds.loads.get(&link).is_some_and(|l| l.now > 0) {
            cmds = self.idle.wait(cmds).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Records a violation when a REQDETACH names attached links of which
    /// the relay took commands it has not completed (`busy`, the tags its
    /// end lists): the kernel's detach task would sleep on them.
    fn detach_requested(&self, sh: &Shared, target: i32, lun: i32, busy: &[u8]) {
        let links = sh.topo().links_matching(target, lun);
        let mut found: HashMap<LinkId, Vec<u32>> = HashMap::new();
        {
            let cmds = lock(&self.cmds);
            for tag in emuproto::tags_of(busy) {
                if let Some(c) = cmds.map.get(&tag) {
                    if links.contains(&c.link) {
                        found.entry(c.link).or_default().push(tag);
                    }
                }
            }
        }
        for ((t, l), mut tags) in found {
            tags.sort_unstable();
            sh.detach_violation(DetachViolation {
                target,
                lun,
                link: (t, l),
                outstanding: tags,
            });
        }
    }

    /// A new link at (target, lun) with `openings`: what a probe decided.
    /// Commands still holding openings of an earlier link hand them back to
    /// that link's semaphore, which then goes.
    pub(crate) fn set_openings(&self, target: u32, lun: u32, openings: usize) {
        lock(&self.sems).insert((target, lun), Sem::new(openings.max(1)));
    }

    /// The openings of (target, lun); before a probe decides, the bus's
    /// (`scsi_probe_link` makes the link with `sb_openings`).
    fn sem(&self, target: u32, lun: u32, openings: usize) -> Arc<Sem> {
        Arc::clone(
            lock(&self.sems)
                .entry((target, lun))
                .or_insert_with(|| Sem::new(openings.max(1))),
        )
    }

    /// Queues a command (`vscsi_cmd`) and waits for its completion.
    pub(crate) fn exec(
        &self,
        sh: &Shared,
        req: Req<'_>,
        timeout: Duration,
    ) -> Result<CmdResult, EmuError> {
        let deadline = Instant::now() + timeout;
        let (tx, rx) = mpsc::sync_channel(1);
        self.start(sh, req, deadline, Waiter::Chan(tx))?;
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(r) => Ok(r),
            // The command stays in flight, holding its opening, as in the
            // kernel: only a completion or a close ends it.
            Err(RecvTimeoutError::Timeout) => Err(EmuError::Timeout),
            Err(RecvTimeoutError::Disconnected) => Err(EmuError::NotConnected),
        }
    }

    /// Queues a command, waiting for an opening until `deadline`; `done`
    /// hears of its completion.
    pub(crate) fn start(
        &self,
        sh: &Shared,
        req: Req<'_>,
        deadline: Instant,
        done: Waiter,
    ) -> Result<(), EmuError> {
        if req.cdb.is_empty() || req.cdb.len() > CDB_MAX {
            return Err(EmuError::Invalid("CDB length"));
        }
        let want_out = if req.dir == Dir::Write {
            req.datalen as usize
        } else {
            0
        };
        if req.out.len() != want_out {
            return Err(EmuError::Invalid("write data length differs from datalen"));
        }
        if !self.is_alive() {
            return Err(EmuError::NotConnected);
        }
        let permit = self
            .sem(req.target, req.lun, sh.cfg.openings)
            .acquire(deadline)
            .map_err(|e| match e {
                NoOpening::Timeout => EmuError::Timeout,
                NoOpening::Shut => EmuError::NoSuchDisk,
            })?;
        let mut cdb = [0u8; CDB_MAX];
        cdb[..req.cdb.len()].copy_from_slice(req.cdb);
        let tag = {
            let mut cmds = lock(&self.cmds);
            if cmds.closed {
                return Err(EmuError::NotConnected);
            }
            let tag = loop {
                let t = sh.next_tag();
                if !cmds.map.contains_key(&t) {
                    break t;
                }
            };
            let load = cmds.loads.entry((req.target, req.lun)).or_default();
            load.now += 1;
            load.peak = load.peak.max(load.now);
            cmds.map.insert(
                tag,
                Cmd {
                    link: (req.target, req.lun),
                    dir: req.dir,
                    datalen: req.datalen,
                    out: req.out,
                    moved: 0,
                    data: Vec::new(),
                    done,
                    permit,
                },
            );
            tag
        };
        sh.ctr.commands.fetch_add(1, Ordering::Relaxed);
        let msg: Msg = Msg::I2t(I2t {
            tag,
            target: req.target,
            lun: req.lun,
            cdb,
            cdblen: req.cdb.len() as u8,
            datalen: req.datalen,
            dir: req.dir,
        });
        let mut frame = Vec::with_capacity(48);
        if emuproto::encode(&msg, &mut frame).is_err() || self.writer.send_small(&frame).is_err() {
            // The reader will see the cut and complete this with Reset.
            self.shutdown();
        }
        Ok(())
    }

    fn send_write_err(&self, tag: u32, err: WriteErrno) -> io::Result<()> {
        let mut f = Vec::with_capacity(10);
        let m: Msg = Msg::WriteErr { tag, err };
        emuproto::encode(&m, &mut f).map_err(io::Error::other)?;
        self.writer.send_small(&f)
    }

    fn on_data_write(&self, sh: &Shared, tag: u32, len: u32) -> io::Result<()> {
        if len as usize > MAX_DATA {
            sh.protocol_error(format!("DATA_WRITE tag {tag}: {len} bytes is over a frame"));
            return self.send_write_err(tag, WriteErrno::NoMem);
        }
        let r = {
            let mut cmds = lock(&self.cmds);
            check(cmds.map.get_mut(&tag), len, Dir::Write).map(|c| {
                let off = c.moved as usize;
                c.moved += len;
                (Arc::clone(&c.out), off)
            })
        };
        match r {
            Ok((out, off)) => {
                let piece = out.get(off..off + len as usize).unwrap_or(&[]);
                sh.ctr
                    .bytes_written
                    .fetch_add(u64::from(len), Ordering::Relaxed);
                let h =
                    data_header(MsgType::WriteData, tag, piece.len()).map_err(io::Error::other)?;
                // Only the reader gets here, and it holds the writer.
                self.writer.send_data_held(&h, piece)
            }
            Err(e) => {
                sh.protocol_error(format!("DATA_WRITE tag {tag} len {len}: {}", errno_name(e)));
                self.send_write_err(tag, e)
            }
        }
    }

    fn on_data_read(&self, sh: &Shared, tag: u32, data: &[u8]) {
        // Frames carry at most MAX_DATA bytes, so this always fits.
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        // Take the buffer out so the copy runs without the table lock that
        // submitters need; only this thread changes a command's data.
        let taken = {
            let mut cmds = lock(&self.cmds);
            check(cmds.map.get_mut(&tag), len, Dir::Read).map(|c| {
                if c.data.capacity() == 0 {
                    c.data.reserve_exact(c.datalen as usize);
                }
                std::mem::take(&mut c.data)
            })
        };
        match taken {
            Ok(mut buf) => {
                buf.extend_from_slice(data);
                if let Some(c) = lock(&self.cmds).map.get_mut(&tag) {
                    c.data = buf;
                    c.moved += len;
                }
                sh.ctr
                    .bytes_read
                    .fetch_add(u64::from(len), Ordering::Relaxed);
            }
            Err(e) => {
                sh.protocol_error(format!("DATA_READ tag {tag} len {len}: {}", errno_name(e)))
            }
        }
    }

    fn on_t2i(&self, sh: &Shared, tag: u32, status: Status, sense: [u8; SENSE_LEN]) {
        let c = lock(&self.cmds).remove(tag);
        if c.is_some() {
            self.idle.notify_all();
        }
        match c {
            Some(c) => {
                sh.ctr.completed.fetch_add(1, Ordering::Relaxed);
                if status == Status::Reset {
                    sh.ctr.resets.fetch_add(1, Ordering::Relaxed);
                }
                c.complete(status, sense);
            }
            None => sh.protocol_error(format!("T2I for unknown tag {tag} (EFAULT)")),
        }
    }

    fn queue_task(&self, t: Task) {
        if let Some(tx) = lock(&self.tasks).as_ref() {
            let _ = tx.send(t);
        }
    }

    /// Applies one message from the relay, holding the writer (see
    /// `reader`). An error means the socket is unusable.
    fn handle(&self, sh: &Shared, m: Msg<&[u8]>) -> io::Result<()> {
        match m {
            Msg::DataWrite { tag, len } => return self.on_data_write(sh, tag, len),
            Msg::DataRead { tag, data } => self.on_data_read(sh, tag, data),
            Msg::T2i { tag, status, sense } => self.on_t2i(sh, tag, status, sense),
            Msg::Probe { target, lun } => self.queue_task(Task::Probe { target, lun }),
            Msg::Detach { target, lun, busy } => {
                self.detach_requested(sh, target, lun, busy);
                self.queue_task(Task::Detach { target, lun });
            }
            Msg::I2t(_) | Msg::WriteData { .. } | Msg::WriteErr { .. } => {
                sh.protocol_error("kernel-side message from the relay".to_string())
            }
        }
        Ok(())
    }

    /// `vscsiclose`: refuse new commands, complete every outstanding one
    /// with XS_RESET, then force-detach everything on the bus.
    fn close(&self, sh: &Shared) {
        self.alive.store(false, Ordering::Release);
        sh.forget_conn(self);
        *lock(&self.tasks) = None;
        let drained: Vec<Cmd> = {
            let mut cmds = lock(&self.cmds);
            cmds.closed = true;
            for l in cmds.loads.values_mut() {
                l.now = 0;
            }
            cmds.map.drain().map(|(_, c)| c).collect()
        };
        self.idle.notify_all();
        for c in drained {
            sh.ctr.resets.fetch_add(1, Ordering::Relaxed);
            c.complete(Status::Reset, [0; SENSE_LEN]);
        }
        self.writer.set_broken();
        self.shutdown();
        sh.detach_all();
    }
}

fn reader(sh: Arc<Shared>, conn: Arc<Conn>, mut rd: UnixStream) {
    let mut dec = Decoder::new();
    'conn: loop {
        match dec.read_from(&mut rd) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
        // Commands that completions start (callbacks, woken waiters) leave
        // in one write after the batch instead of one write each.
        conn.writer.hold();
        let mut ok = true;
        loop {
            match dec.next_msg() {
                Ok(None) => break,
                Ok(Some(m)) => {
                    if conn.handle(&sh, m).is_err() {
                        ok = false;
                        break;
                    }
                }
                Err(e) => {
                    sh.protocol_error(format!("malformed frame from the relay: {e}"));
                    if matches!(e, ProtoError::FrameTooLarge(_)) {
                        ok = false;
                        break;
                    }
                }
            }
        }
        if conn.writer.release().is_err() || !ok {
            break 'conn;
        }
    }
    conn.close(&sh);
}

/// Takes a new connection unless the device is already open: vscsiopen
/// fails with EBUSY unless the device is CLOSED, and the opener hears so
/// at once (the first byte, before any frame).
fn open(sh: &Arc<Shared>, mut s: UnixStream) -> io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_write_timeout(Some(WRITE_STALL))?;
    if sh.current().is_some() {
        sh.ctr.refused.fetch_add(1, Ordering::Relaxed);
        // Dropping the stream closes it after the answer.
        return s.write_all(&[OpenResult::Busy as u8]);
    }
    s.write_all(&[OpenResult::Opened as u8])?;
    let rd = s.try_clone()?;
    let wr = s.try_clone()?;
    let (tx, rx) = mpsc::channel();
    let conn = Arc::new(Conn {
        sock: s,
        writer: Writer::new(wr),
        alive: AtomicBool::new(true),
        cmds: Default::default(),
        sems: Default::default(),
        idle: Condvar::new(),
        tasks: Mutex::new(Some(tx)),
    });
    sh.set_conn(Arc::clone(&conn));
    let (sh1, c1) = (Arc::clone(sh), Arc::clone(&conn));
    let r = thread::Builder::new()
        .name("vscsi-emu-reader".into())
        .spawn(move || reader(sh1, c1, rd));
    let (sh2, c2) = (Arc::clone(sh), Arc::clone(&conn));
    let p = thread::Builder::new()
        .name("vscsi-emu-systq".into())
        .spawn(move || probe::run(sh2, c2, rx));
    match (r, p) {
        (Ok(r), Ok(p)) => {
            sh.keep_threads([r, p]);
            Ok(())
        }
        (r, p) => {
            conn.shutdown();
            let hs: Vec<_> = [r.ok(), p.ok()].into_iter().flatten().collect();
            sh.keep_threads(hs);
            Err(io::Error::other("cannot start emulator threads"))
        }
    }
}

/// Accepts device opens until `stop` is set.
pub(crate) fn accept_loop(sh: Arc<Shared>, l: UnixListener, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Acquire) {
        let mut fds = [PollFd::new(l.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(50u8));
        match l.accept() {
            Ok((s, _)) => {
                if let Err(e) = open(&sh, s) {
                    sh.note(format!("cannot open the device: {e}"));
                }
            }
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::EmuConfig;
    use iscsid::vscsi::emu::EmuDev;
    use iscsid::vscsi::Device;
    use std::os::fd::OwnedFd;

    const READ10: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    const WRITE10: [u8; 10] = [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0];

    /// A connection whose relay end the test plays with the real `EmuDev`.
    fn setup(openings: usize) -> (Arc<Shared>, Arc<Conn>, EmuDev) {
        let sh = Arc::new(Shared::new(EmuConfig {
            openings,
            ..EmuConfig::default()
        }));
        let (a, b) = UnixStream::pair().unwrap();
        open(&sh, a).unwrap();
        iscsid::vscsi::emu::opened(&b, Duration::from_secs(5)).unwrap();
        let conn = sh.current().unwrap();
        (sh, conn, EmuDev::new(OwnedFd::from(b)).unwrap())
    }

    fn teardown(sh: &Shared, conn: &Conn) {
        conn.shutdown();
        for h in sh.take_threads() {
            h.join().unwrap();
        }
    }

    fn next_i2t(dev: &mut EmuDev) -> I2t {
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(c) = dev.i2t().unwrap() {
                return c;
            }
            assert!(Instant::now() < end, "no command from the emulator");
            let mut fds = [PollFd::new(dev.fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(100u8));
        }
    }

    fn read(datalen: u32) -> Req<'static> {
        Req {
            target: 0,
            lun: 1,
            cdb: &READ10,
            dir: Dir::Read,
            datalen,
            out: Arc::from(&[][..]),
        }
    }

    fn call(tx: &mpsc::Sender<CmdResult>) -> Waiter {
        let tx = tx.clone();
        Waiter::Call(Box::new(move |r| {
            let _ = tx.send(r);
        }))
    }

    #[test]
    fn callbacks_complete_and_resubmit_from_the_reader() {
        let (sh, conn, mut dev) = setup(4);
        let (tx, rx) = mpsc::channel();
        let (sh2, tx2) = (Arc::clone(&sh), tx.clone());
        // The callback starts the next command on the reader thread, which
        // holds the writer: the I2T must still reach the relay.
        let first = Waiter::Call(Box::new(move |r| {
            let c = sh2.current().unwrap();
            c.start(&sh2, read(4), Instant::now(), call(&tx2)).unwrap();
            let _ = tx2.send(r);
        }));
        conn.start(&sh, read(4), Instant::now(), first).unwrap();
        let c = next_i2t(&mut dev);
        assert_eq!((c.dir, c.datalen, c.lun), (Dir::Read, 4, 1));
        dev.data_read(c.tag, b"abcd").unwrap();
        dev.t2i(c.tag, Status::Done, &[]).unwrap();
        let r = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!((r.status, r.resid), (Status::Done, 0));
        assert_eq!(r.data, b"abcd");
        let c2 = next_i2t(&mut dev);
        assert_ne!(c2.tag, c.tag);
        // Completed with nothing moved: the whole length is residual.
        dev.t2i(c2.tag, Status::Done, &[]).unwrap();
        let r = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!((r.resid, r.data.len()), (4, 0));
        assert_eq!(sh.ctr.protocol_errors.load(Ordering::Relaxed), 0);
        teardown(&sh, &conn);
    }

    #[test]
    fn no_free_opening_fails_at_once_and_writes_pass_the_held_writer() {
        let (sh, conn, mut dev) = setup(2);
        let (tx, rx) = mpsc::channel();
        let w = Req {
            cdb: &WRITE10,
            dir: Dir::Write,
            out: Arc::from(&b"wxyz"[..]),
            ..read(4)
        };
        conn.start(&sh, w, Instant::now(), call(&tx)).unwrap();
        conn.start(&sh, read(8), Instant::now(), call(&tx)).unwrap();
        let t0 = Instant::now();
        assert!(matches!(
            conn.start(&sh, read(8), Instant::now(), call(&tx)),
            Err(EmuError::Timeout)
        ));
        assert!(t0.elapsed() < Duration::from_secs(1));
        let a = next_i2t(&mut dev);
        let b = next_i2t(&mut dev);
        let (w, r) = if a.dir == Dir::Write { (a, b) } else { (b, a) };
        // DATA_WRITE is answered by the reader while it holds the writer.
        let mut buf = [0u8; 4];
        dev.data_write(w.tag, &mut buf).unwrap();
        assert_eq!(&buf, b"wxyz");
        // A wrong-direction request gets its errno, and the link lives on.
        let mut two = [0u8; 2];
        assert!(dev.data_write(r.tag, &mut two).is_err());
        dev.t2i(w.tag, Status::Done, &[]).unwrap();
        let done = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!((done.status, done.resid), (Status::Done, 0));
        // The freed opening takes a new command; the close resets the rest.
        conn.start(&sh, read(8), Instant::now(), call(&tx)).unwrap();
        teardown(&sh, &conn);
        for _ in 0..2 {
            let r = rx.recv_timeout(Duration::from_secs(5)).unwrap();
            assert_eq!(r.status, Status::Reset);
        }
    }
}
