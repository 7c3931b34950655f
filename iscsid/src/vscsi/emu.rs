//! The relay's end of the vscsi emulator socket (`iscsid -n PATH`).
//!
//! Each `Device` call maps to the message of the same ioctl. Only
//! `data_write` waits for an answer, as `VSCSI_DATA_WRITE` returns data;
//! the other calls are writes that never drop or reorder bytes.
//!
//! `EmuDev::new` writes each call's frame before the call returns, as the
//! ioctl would have taken effect by then. `EmuDev::batched` is for a caller
//! that keeps the batching contract of `Device` (the relay), and saves the
//! syscalls and round trips an ioctl costs nothing but a socket does:
//! - frames wait in one buffer, in call order, and leave in one write at
//!   `flush`, when the buffer passes `OUT_HIGH`, or before `data_write`
//!   sleeps. Read data over `COPY_MAX` leaves from where it lies, behind the
//!   buffer and in the same write, as copying it costs more than a syscall.
//! - a write command's data is asked for (one DATA_WRITE of its `datalen`)
//!   as soon as its I2T is decoded, so a batch of commands costs one round
//!   trip instead of one each. Answers are matched by tag and kept until
//!   `data_write` asks. A caller asking in pieces is served from the kept
//!   bytes in order; what they cannot serve goes to the emulator, whose
//!   running offset is then at the end, so it answers as the kernel would.
//!   Only the whole-fetch contract makes this safe: the emulator counts the
//!   data as moved when it answers, so a command completed after a partial
//!   fetch would show no residual.
//!
//! The emulator may block writing to us while we block writing to it. So a
//! batched write that finds the socket full stops once there is input (and
//! keeps what it could not write, copying read data if need be): the caller
//! drains it and flushes again. Only `i2t` and `data_write` read, so the
//! input came after the last `i2t` that drained, and even an edge-triggered
//! poll reports it. `data_write` reads and decodes while it waits for its
//! answer; the commands it meets are handed out by later `i2t` calls, and
//! as their bytes have left the socket, it may no longer poll readable: a
//! caller must drain `i2t` after `data_write` (`pending()` says whether any
//! are queued).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{self, IoSlice, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{sendmsg, MsgFlags, UnixAddr};

use super::emuproto::{self, data_header, Decoder, Msg, MsgType, OpenResult, WriteErrno, MAX_DATA};
use super::{DevError, Device, Dir, I2t, Status, SENSE_LEN};

/// How long a DATA_WRITE answer or a blocked write may take before the
/// emulator is taken for dead.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the emulator may take to say whether an open succeeded.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the emulator device could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// EBUSY: the device is open already (another iscsid has it).
    Busy,
    /// The emulator closed the connection, or did not answer in time.
    NoAnswer,
    /// The first byte is no `OpenResult`.
    BadAnswer(u8),
    Io(io::Error),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Busy => f.write_str("device busy (open in another iscsid)"),
            OpenError::NoAnswer => f.write_str("the emulator did not answer the open"),
            OpenError::BadAnswer(b) => write!(f, "bad answer {b} from the emulator"),
            OpenError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for OpenError {}

/// Opens the emulated device at `path`, as `open(2)` opens /dev/vscsi0:
/// it fails at once when the device is busy.
pub fn open(path: &Path) -> Result<OwnedFd, OpenError> {
    let s = UnixStream::connect(path).map_err(OpenError::Io)?;
    opened(&s, OPEN_TIMEOUT)?;
    Ok(s.into())
}

/// Reads the emulator's answer to a connection (`OpenResult`), which comes
/// before any frame.
pub fn opened(s: &UnixStream, timeout: Duration) -> Result<(), OpenError> {
    s.set_read_timeout(Some(timeout)).map_err(OpenError::Io)?;
    let mut b = [0u8; 1];
    let r = loop {
        match (&*s).read(&mut b) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => break r,
        }
    };
    s.set_read_timeout(None).map_err(OpenError::Io)?;
    match r {
        Ok(0) => Err(OpenError::NoAnswer),
        Ok(_) => match OpenResult::from_raw(b[0]) {
            Some(OpenResult::Opened) => Ok(()),
            Some(OpenResult::Busy) => Err(OpenError::Busy),
            None => Err(OpenError::BadAnswer(b[0])),
        },
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Err(OpenError::NoAnswer)
        }
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Err(OpenError::NoAnswer),
        Err(e) => Err(OpenError::Io(e)),
    }
}

/// Batched frames past this many bytes are written without waiting for
/// `flush`, so a long batch neither hoards memory nor starves the emulator.
const OUT_HIGH: usize = 64 * 1024;
/// Batched read data up to this size is copied into the buffer; larger
/// pieces are written from the caller's buffer.
const COPY_MAX: usize = 16 * 1024;

/// The DATA_WRITE request of a tag, from the wire to the caller.
enum Fetch {
    /// Sent or buffered; the answer will be `len` bytes. `dropped` once the
    /// command is completed: its answer is then thrown away.
    Asked { len: u32, dropped: bool },
    /// A prefetch's answer, of which `off` bytes were handed out.
    Got { data: Vec<u8>, off: usize },
    /// A prefetch of `len` bytes that the emulator refused.
    Refused { len: u32, err: WriteErrno },
}

/// What applying one message did for the tag a caller waits on.
#[derive(Debug, PartialEq, Eq)]
enum Took {
    Other,
    /// Its answer arrived and went straight into the caller's buffer.
    Copied,
    /// Its answer arrived and is kept in `fetches` (or was dropped).
    Answered,
}

/// A command the caller took with `i2t` and has not completed: an entry of
/// the kernel's t2i list, whose lookups this end does itself, as only
/// DATA_WRITE has an answer from the emulator.
struct Taken {
    target: u32,
    lun: u32,
    dir: Dir,
    datalen: u32,
    /// The kernel's `ccb_datalen`: bytes the caller moved so far.
    moved: u32,
}

impl Taken {
    /// `vscsi_data`'s checks after the tag lookup, in its order: ENOMEM
    /// for more than is left, then EINVAL for the wrong direction (or none).
    fn check(&self, tag: u32, len: usize, dir: Dir) -> Result<(), DevError> {
        let left = self.datalen.saturating_sub(self.moved) as usize;
        if len > left {
            return Err(DevError::TooMuchData(tag));
        }
        if self.dir != dir {
            return Err(DevError::WrongDirection(tag));
        }
        Ok(())
    }

    fn matches(&self, target: i32, lun: i32) -> bool {
        let hit = |want: i32, have: u32| want == -1 || i64::from(want) == i64::from(have);
        hit(target, self.target) && hit(lun, self.lun)
    }
}

/// What the emulator sent that nobody took yet, and what waits to go to it.
struct State {
    /// Commands the caller took and has not completed, by tag.
    taken: HashMap<u32, Taken>,
    queue: VecDeque<I2t>,
    fetches: HashMap<u32, Fetch>,
    out: Vec<u8>,
    prefetch: bool,
    /// An error met while decoding ahead; reported once the commands
    /// decoded before it are handed out.
    deferred: Option<DevError>,
}

fn errno_error(tag: u32, err: WriteErrno) -> DevError {
    match err {
        WriteErrno::Fault => DevError::UnknownTag(tag),
        WriteErrno::NoMem => DevError::TooMuchData(tag),
        WriteErrno::Inval => DevError::WrongDirection(tag),
    }
}

impl State {
    fn push(&mut self, m: &Msg<&[u8]>) -> Result<(), DevError> {
        emuproto::encode(m, &mut self.out).map_err(|e| DevError::Protocol(e.as_str()))
    }

    /// Buffers a DATA_WRITE and records that its answer is due.
    fn ask(&mut self, tag: u32, len: u32) -> Result<(), DevError> {
        self.push(&Msg::DataWrite { tag, len })?;
        self.fetches.insert(
            tag,
            Fetch::Asked {
                len,
                dropped: false,
            },
        );
        Ok(())
    }

    /// `tag` is completed: nothing will be asked for it any more.
    fn forget(&mut self, tag: u32) {
        match self.fetches.get_mut(&tag) {
            Some(Fetch::Asked { dropped, .. }) => *dropped = true,
            Some(_) => {
                self.fetches.remove(&tag);
            }
            None => {}
        }
    }

    fn command(&mut self, c: I2t) -> Result<(), DevError> {
        // The emulator answers in order, so a completed command's answer
        // always precedes the I2T that reuses its tag.
        if self.fetches.contains_key(&c.tag) {
            return Err(DevError::Protocol("I2T for a tag in flight"));
        }
        if self.prefetch && c.dir == Dir::Write && c.datalen > 0 && c.datalen as usize <= MAX_DATA {
            self.ask(c.tag, c.datalen)?;
        }
        self.queue.push_back(c);
        Ok(())
    }

    /// Applies one message. An answer for `want` goes into `direct` when
    /// that is exactly its size, sparing a copy.
    fn take(
        &mut self,
        m: Msg<&[u8]>,
        want: Option<u32>,
        direct: Option<&mut [u8]>,
    ) -> Result<Took, DevError> {
        let (tag, answer) = match m {
            Msg::I2t(c) => return self.command(c).map(|()| Took::Other),
            Msg::WriteData { tag, data } => (tag, Ok(data)),
            Msg::WriteErr { tag, err } => (tag, Err(err)),
            _ => return Err(DevError::Protocol("unexpected message")),
        };
        let Some(&Fetch::Asked { len, dropped }) = self.fetches.get(&tag) else {
            return Err(DevError::Protocol("DATA_WRITE answer nobody asked for"));
        };
        let took = if want == Some(tag) {
            Took::Answered
        } else {
            Took::Other
        };
        match answer {
            Ok(data) if data.len() != len as usize => {
                Err(DevError::Protocol("WRITE_DATA of the wrong length"))
            }
            _ if dropped => {
                self.fetches.remove(&tag);
                Ok(took)
            }
            Ok(data) => {
                if let Some(buf) = direct.filter(|b| want == Some(tag) && b.len() == data.len()) {
                    buf.copy_from_slice(data);
                    self.fetches.remove(&tag);
                    return Ok(Took::Copied);
                }
                let data = data.to_vec();
                self.fetches.insert(tag, Fetch::Got { data, off: 0 });
                Ok(took)
            }
            Err(err) => {
                self.fetches.insert(tag, Fetch::Refused { len, err });
                Ok(took)
            }
        }
    }
}

/// What a write does while the socket is full.
enum Full<'a> {
    /// Waits for room.
    Wait,
    /// Waits for room, reading what arrives into the decoder meanwhile.
    Read(&'a mut Decoder),
    /// Waits for room, but stops once there is input: the emulator may be
    /// blocked writing it, and the caller must read it first.
    Yield,
}

/// The socket and its wait limit.
struct Link {
    sock: UnixStream,
    timeout: Duration,
}

impl Link {
    /// Waits for `events` until `deadline`; returns those that occurred.
    fn wait(&self, events: PollFlags, deadline: Instant) -> Result<PollFlags, DevError> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(DevError::Io(io::ErrorKind::TimedOut.into()));
            }
            // Round up so a sub-millisecond remainder still sleeps.
            let ms = left.as_millis().saturating_add(1);
            let t = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(self.sock.as_fd(), events)];
            match poll(&mut fds, t) {
                Ok(0) | Err(Errno::EINTR) => continue,
                Ok(_) => return Ok(fds[0].revents().unwrap_or(PollFlags::empty())),
                Err(e) => return Err(DevError::Io(e.into())),
            }
        }
    }

    /// One sendmsg of `parts` from byte `skip` on: how much went, or `None`
    /// when the socket is full.
    fn write_some(&self, parts: &[&[u8]], mut skip: usize) -> Result<Option<usize>, DevError> {
        let mut iov = [IoSlice::new(&[]); 4];
        let mut n = 0;
        for p in parts {
            // Also skips empty parts, which would send nothing.
            if skip >= p.len() {
                skip -= p.len();
                continue;
            }
            let Some(slot) = iov.get_mut(n) else { break };
            *slot = IoSlice::new(p.get(skip..).unwrap_or(&[]));
            skip = 0;
            n += 1;
        }
        if n == 0 {
            return Ok(Some(0));
        }
        loop {
            let r = sendmsg::<UnixAddr>(
                self.sock.as_raw_fd(),
                &iov[..n],
                &[],
                MsgFlags::MSG_NOSIGNAL,
                None,
            );
            return match r {
                Ok(0) | Err(Errno::EAGAIN) => Ok(None),
                Ok(s) => Ok(Some(s)),
                Err(Errno::EINTR) => continue,
                Err(Errno::EPIPE | Errno::ECONNRESET) => Err(DevError::Closed),
                Err(e) => Err(DevError::Io(e.into())),
            };
        }
    }

    /// Writes the bytes of `parts` in order, waiting out a full socket as
    /// `full` says; returns how many went, which is all of them unless
    /// `Full::Yield` stopped early.
    fn send(&self, parts: &[&[u8]], mut full: Full<'_>) -> Result<usize, DevError> {
        let total = parts.iter().fold(0usize, |a, p| a.saturating_add(p.len()));
        let mut done = 0;
        let mut deadline = None;
        while done < total {
            if let Some(n) = self.write_some(parts, done)? {
                done += n;
                // Progress restarts the clock: only a stalled peer times out.
                deadline = None;
                continue;
            }
            let d = *deadline.get_or_insert_with(|| Instant::now() + self.timeout);
            let input = PollFlags::POLLIN | PollFlags::POLLHUP;
            match full {
                Full::Wait => {
                    self.wait(PollFlags::POLLOUT, d)?;
                }
                Full::Read(ref mut dec) => {
                    if self
                        .wait(PollFlags::POLLOUT | PollFlags::POLLIN, d)?
                        .intersects(input)
                    {
                        self.fill(dec)?;
                    }
                }
                Full::Yield => {
                    let ev = self.wait(PollFlags::POLLOUT | PollFlags::POLLIN, d)?;
                    if ev.intersects(input) && !ev.contains(PollFlags::POLLOUT) {
                        return Ok(done);
                    }
                }
            }
        }
        Ok(done)
    }

    /// One non-blocking read into `dec`. `Ok(false)` on EAGAIN.
    fn fill(&self, dec: &mut Decoder) -> Result<bool, DevError> {
        loop {
            match dec.read_from(&mut (&self.sock)) {
                Ok(0) => return Err(DevError::Closed),
                Ok(_) => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Err(DevError::Closed)
                }
                Err(e) => return Err(DevError::Io(e)),
            }
        }
    }
}

/// The emulator device, as the relay sees it.
pub struct EmuDev {
    link: Link,
    dec: Decoder,
    st: State,
    batched: bool,
}

impl EmuDev {
    /// Takes a connected unix stream socket and makes it non-blocking.
    /// Every call's frame is written before the call returns.
    pub fn new(fd: OwnedFd) -> Result<EmuDev, DevError> {
        let sock = UnixStream::from(fd);
        sock.set_nonblocking(true)?;
        Ok(EmuDev {
            link: Link {
                sock,
                timeout: DEFAULT_TIMEOUT,
            },
            dec: Decoder::new(),
            st: State {
                taken: HashMap::new(),
                queue: VecDeque::new(),
                fetches: HashMap::new(),
                out: Vec::with_capacity(OUT_HIGH),
                prefetch: false,
                deferred: None,
            },
            batched: false,
        })
    }

    /// As `new`, for a caller that keeps the batching contract of `Device`:
    /// frames wait for `flush`, and write data is prefetched.
    pub fn batched(fd: OwnedFd) -> Result<EmuDev, DevError> {
        let mut d = EmuDev::new(fd)?;
        d.batched = true;
        d.st.prefetch = true;
        Ok(d)
    }

    /// Changes the wait limit (`DEFAULT_TIMEOUT`).
    pub fn set_timeout(&mut self, t: Duration) {
        self.link.timeout = t;
    }

    /// Whether commands read ahead wait for `i2t`.
    pub fn pending(&self) -> bool {
        !self.st.queue.is_empty()
    }

    /// Writes the buffered frames. Batched, it stops early while the
    /// emulator has input for us (see `Device::flush`).
    fn flush_out(&mut self) -> Result<(), DevError> {
        if self.st.out.is_empty() {
            return Ok(());
        }
        let full = if self.batched {
            Full::Yield
        } else {
            Full::Wait
        };
        match self.link.send(&[&self.st.out], full) {
            Ok(n) => {
                self.st.out.drain(..n.min(self.st.out.len()));
                Ok(())
            }
            Err(e) => {
                // The stream is cut mid-frame: the link is done anyway.
                self.st.out.clear();
                Err(e)
            }
        }
    }

    /// Writes the buffered frames that fit without blocking; true if any did.
    fn push_out(&mut self) -> Result<bool, DevError> {
        let mut done = 0;
        while done < self.st.out.len() {
            match self.link.write_some(&[&self.st.out], done)? {
                Some(n) if n > 0 => done += n,
                _ => break,
            }
        }
        self.st.out.drain(..done);
        Ok(done > 0)
    }

    /// After frames were buffered: unbatched, or past `OUT_HIGH`, they go.
    fn queued(&mut self) -> Result<(), DevError> {
        if !self.batched || self.st.out.len() >= OUT_HIGH {
            return self.flush_out();
        }
        Ok(())
    }

    /// Applies what the emulator sends until the answer for `tag` is in,
    /// writing the buffer out whenever there is nothing to read.
    fn await_answer(&mut self, tag: u32, mut direct: Option<&mut [u8]>) -> Result<Took, DevError> {
        // Whatever went wrong in the stream so far comes first.
        if let Some(e) = self.st.deferred.take() {
            return Err(e);
        }
        let mut deadline = Instant::now() + self.link.timeout;
        loop {
            match self.dec.next_msg() {
                Err(e) => return Err(DevError::Protocol(e.as_str())),
                Ok(Some(m)) => {
                    let t = self.st.take(m, Some(tag), direct.as_deref_mut())?;
                    if t != Took::Other {
                        return Ok(t);
                    }
                    continue;
                }
                Ok(None) => {}
            }
            if self.push_out()? {
                deadline = Instant::now() + self.link.timeout;
            }
            if self.link.fill(&mut self.dec)? {
                continue;
            }
            let mut ev = PollFlags::POLLIN;
            if !self.st.out.is_empty() {
                ev |= PollFlags::POLLOUT;
            }
            self.link.wait(ev, deadline)?;
        }
    }

    /// One DATA_WRITE for `buf.len()` bytes, answered into `buf`.
    fn fetch_piece(&mut self, tag: u32, buf: &mut [u8]) -> Result<(), DevError> {
        // MAX_DATA < u32::MAX, and callers split on it.
        let len = u32::try_from(buf.len()).map_err(|_| DevError::TooMuchData(tag))?;
        self.st.ask(tag, len)?;
        self.queued()?;
        if self.await_answer(tag, Some(buf))? == Took::Copied {
            return Ok(());
        }
        match self.st.fetches.remove(&tag) {
            Some(Fetch::Refused { err, .. }) => Err(errno_error(tag, err)),
            // An answer of the asked length is always copied.
            _ => Err(DevError::Protocol("DATA_WRITE answer lost")),
        }
    }

    /// `data_write` without a prefetch: one request per frame's worth.
    fn fetch(&mut self, tag: u32, buf: &mut [u8]) -> Result<(), DevError> {
        if buf.is_empty() {
            // Still asked: the emulator checks tag and direction as the
            // kernel does for a zero-length ioctl.
            return self.fetch_piece(tag, buf);
        }
        for piece in buf.chunks_mut(MAX_DATA) {
            self.fetch_piece(tag, piece)?;
        }
        Ok(())
    }

    fn read_piece(&mut self, tag: u32, piece: &[u8]) -> Result<(), DevError> {
        let h = data_header(MsgType::DataRead, tag, piece.len())
            .map_err(|e| DevError::Protocol(e.as_str()))?;
        if self.batched && piece.len() <= COPY_MAX {
            self.st.out.extend_from_slice(&h);
            self.st.out.extend_from_slice(piece);
            return self.queued();
        }
        if !self.batched {
            let r = self.link.send(&[&self.st.out, &h, piece], Full::Wait);
            self.st.out.clear();
            return r.map(|_| ());
        }
        // Behind the buffer and in the same write, from where it lies; only
        // what a full socket leaves over is copied.
        let mut out = std::mem::take(&mut self.st.out);
        let r = self.link.send(&[&out, &h, piece], Full::Yield);
        let sent = match r {
            Ok(n) => n,
            Err(e) => {
                out.clear();
                self.st.out = out;
                return Err(e);
            }
        };
        let from_out = sent.min(out.len());
        out.drain(..from_out);
        let mut skip = sent - from_out;
        for p in [&h[..], piece] {
            out.extend_from_slice(p.get(skip.min(p.len())..).unwrap_or(&[]));
            skip = skip.saturating_sub(p.len());
        }
        self.st.out = out;
        self.queued()
    }
}

/// Writes what is left, as `std::io::BufWriter` does, so that the frames of
/// a caller's last batch are not lost when it goes (errors have nobody to
/// go to then).
impl Drop for EmuDev {
    fn drop(&mut self) {
        if !self.st.out.is_empty() {
            let _ = self.link.send(&[&self.st.out], Full::Read(&mut self.dec));
        }
    }
}

impl Device for EmuDev {
    fn fd(&self) -> BorrowedFd<'_> {
        self.link.sock.as_fd()
    }

    fn i2t(&mut self) -> Result<Option<I2t>, DevError> {
        loop {
            if let Some(c) = self.st.queue.pop_front() {
                let t = Taken {
                    target: c.target,
                    lun: c.lun,
                    dir: c.dir,
                    datalen: c.datalen,
                    moved: 0,
                };
                self.st.taken.insert(c.tag, t);
                return Ok(Some(c));
            }
            if let Some(e) = self.st.deferred.take() {
                return Err(e);
            }
            // Decode all that is here, so a batch's DATA_WRITEs are all
            // asked for before the first of them is awaited.
            loop {
                let r = match self.dec.next_msg() {
                    Ok(None) => break,
                    Ok(Some(m)) => self.st.take(m, None, None).map(|_| ()),
                    Err(e) => Err(DevError::Protocol(e.as_str())),
                };
                if let Err(e) = r {
                    if self.st.queue.is_empty() {
                        return Err(e);
                    }
                    self.st.deferred = Some(e);
                    break;
                }
            }
            if self.st.queue.is_empty() && !self.link.fill(&mut self.dec)? {
                return Ok(None);
            }
        }
    }

    fn data_write(&mut self, tag: u32, buf: &mut [u8]) -> Result<(), DevError> {
        // vscsi_data looks only at the t2i list: a command not taken yet
        // (prefetched or not) is EFAULT, as is one completed.
        if !self.st.taken.contains_key(&tag) {
            return Err(DevError::UnknownTag(tag));
        }
        let r = self.data_write_taken(tag, buf);
        if r.is_ok() {
            if let Some(t) = self.st.taken.get_mut(&tag) {
                // Fits: the emulator checked what is left.
                t.moved = t.moved.saturating_add(buf.len() as u32);
            }
        }
        r
    }

    fn data_read(&mut self, tag: u32, buf: &[u8]) -> Result<(), DevError> {
        // The kernel answers with an errno; the emulator cannot, so the
        // errno is worked out here, and the data still goes for the
        // emulator to refuse and record.
        let verdict = match self.st.taken.get(&tag) {
            None => Err(DevError::UnknownTag(tag)),
            Some(t) => t.check(tag, buf.len(), Dir::Read),
        };
        self.send_read(tag, buf)?;
        verdict?;
        if let Some(t) = self.st.taken.get_mut(&tag) {
            // Fits: checked above.
            t.moved += buf.len() as u32;
        }
        Ok(())
    }

    fn t2i(&mut self, tag: u32, status: Status, sense: &[u8]) -> Result<(), DevError> {
        let known = self.st.taken.remove(&tag).is_some();
        self.st.forget(tag);
        let mut s = [0u8; SENSE_LEN];
        let n = sense.len().min(SENSE_LEN);
        s[..n].copy_from_slice(&sense[..n]);
        // Sent either way, for the emulator to refuse and record.
        self.st.push(&Msg::T2i {
            tag,
            status,
            sense: s,
        })?;
        self.queued()?;
        if !known {
            return Err(DevError::UnknownTag(tag));
        }
        Ok(())
    }

    fn probe(&mut self, target: i32, lun: i32) -> Result<(), DevError> {
        self.st.push(&Msg::Probe { target, lun })?;
        self.queued()
    }

    fn detach(&mut self, target: i32, lun: i32) -> Result<(), DevError> {
        let busy = emuproto::tag_bytes(
            self.st
                .taken
                .iter()
                .filter(|(_, t)| t.matches(target, lun))
                .map(|(&tag, _)| tag),
        );
        self.st.push(&Msg::Detach {
            target,
            lun,
            busy: &busy,
        })?;
        self.queued()
    }

    fn flush(&mut self) -> Result<(), DevError> {
        self.flush_out()
    }
}

impl EmuDev {
    /// As if `i2t` had handed out `tag`: for tests of the transport that
    /// make up their commands.
    #[cfg(test)]
    fn took(&mut self, tag: u32, dir: Dir, datalen: u32) {
        let t = Taken {
            target: 0,
            lun: 1,
            dir,
            datalen,
            moved: 0,
        };
        self.st.taken.insert(tag, t);
    }

    /// `data_write` for a taken command.
    fn data_write_taken(&mut self, tag: u32, buf: &mut [u8]) -> Result<(), DevError> {
        if let Some(&Fetch::Asked { len, .. }) = self.st.fetches.get(&tag) {
            // The outstanding answer first: with one request per tag on the
            // wire, answers cannot be mistaken for one another.
            let direct = (buf.len() == len as usize).then_some(&mut *buf);
            if self.await_answer(tag, direct)? == Took::Copied {
                return Ok(());
            }
        }
        match self.st.fetches.remove(&tag) {
            None => self.fetch(tag, buf),
            Some(Fetch::Refused { len, err }) if buf.len() == len as usize => {
                Err(errno_error(tag, err))
            }
            // A refused DATA_WRITE moved nothing: the emulator answers this
            // size as the kernel would.
            Some(Fetch::Refused { .. }) => self.fetch(tag, buf),
            Some(Fetch::Got { data, off }) => {
                let n = buf.len();
                let piece = data.get(off..).and_then(|rest| rest.get(..n));
                if let Some(piece) = piece.filter(|_| n > 0) {
                    buf.copy_from_slice(piece);
                    let off = off + n;
                    if off < data.len() {
                        self.st.fetches.insert(tag, Fetch::Got { data, off });
                    }
                    return Ok(());
                }
                // More than is left, or nothing: the emulator's offset is at
                // the end, so it answers as the kernel would, and the rest
                // stays here for a request that fits.
                let r = self.fetch(tag, buf);
                self.st.fetches.insert(tag, Fetch::Got { data, off });
                r
            }
            Some(f @ Fetch::Asked { .. }) => {
                self.st.fetches.insert(tag, f);
                Err(DevError::Protocol("DATA_WRITE answer lost"))
            }
        }
    }

    /// DATA_READ frames for `buf`, however the emulator takes them.
    fn send_read(&mut self, tag: u32, buf: &[u8]) -> Result<(), DevError> {
        if buf.is_empty() {
            return self.read_piece(tag, buf);
        }
        for piece in buf.chunks(MAX_DATA) {
            self.read_piece(tag, piece)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vscsi::{Dir, CDB_MAX};
    use std::io::Write;
    use std::thread;

    fn pair() -> (EmuDev, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        (EmuDev::new(OwnedFd::from(a)).unwrap(), b)
    }

    fn cmd(tag: u32, dir: Dir, datalen: u32) -> I2t {
        let mut cdb = [0u8; CDB_MAX];
        cdb[0] = 0x2a;
        I2t {
            tag,
            target: 0,
            lun: 1,
            cdb,
            cdblen: 10,
            datalen,
            dir,
        }
    }

    fn frame(m: &Msg) -> Vec<u8> {
        let mut v = Vec::new();
        emuproto::encode(m, &mut v).unwrap();
        v
    }

    /// Reads whole messages from the emulator side until `n` arrived.
    fn read_msgs(s: &mut UnixStream, n: usize) -> Vec<Msg> {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        while out.len() < n {
            while let Some(m) = d.next_msg().unwrap() {
                out.push(m.to_owned_msg());
            }
            if out.len() < n {
                assert!(d.read_from(s).unwrap() > 0, "EOF");
            }
        }
        out
    }

    #[test]
    fn from_fd_picks_the_emulator_for_a_socket() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut dev = crate::vscsi::from_fd(OwnedFd::from(a)).unwrap();
        // Non-blocking: an empty socket is EAGAIN, not a hang.
        assert!(dev.i2t().unwrap().is_none());
        b.write_all(&frame(&Msg::I2t(cmd(4, Dir::None, 0))))
            .unwrap();
        assert_eq!(dev.i2t().unwrap().unwrap().tag, 4);
        // Anywhere but OpenBSD a character device is not a vscsi device.
        #[cfg(not(target_os = "openbsd"))]
        {
            let f = std::fs::File::open("/dev/null").unwrap();
            let r = crate::vscsi::from_fd(OwnedFd::from(f));
            assert!(
                matches!(r, Err(DevError::Io(ref e)) if e.kind() == io::ErrorKind::Unsupported)
            );
        }
    }

    #[test]
    fn i2t_drains_then_eagain() {
        let (mut dev, mut emu) = pair();
        assert!(dev.i2t().unwrap().is_none());
        let mut b = frame(&Msg::I2t(cmd(1, Dir::Write, 512)));
        b.extend(frame(&Msg::I2t(cmd(2, Dir::Read, 0))));
        // Half a frame must not be returned.
        b.extend(&frame(&Msg::I2t(cmd(3, Dir::None, 0)))[..7]);
        emu.write_all(&b).unwrap();
        assert_eq!(dev.i2t().unwrap().unwrap().tag, 1);
        assert_eq!(dev.i2t().unwrap().unwrap(), cmd(2, Dir::Read, 0));
        assert!(dev.i2t().unwrap().is_none());
    }

    #[test]
    fn data_write_queues_commands_that_arrive_meanwhile() {
        let (mut dev, mut emu) = pair();
        let t = thread::spawn(move || {
            let m = read_msgs(&mut emu, 1);
            assert_eq!(m, vec![Msg::DataWrite { tag: 7, len: 4 }]);
            let mut b = frame(&Msg::I2t(cmd(8, Dir::None, 0)));
            b.extend(frame(&Msg::WriteData {
                tag: 7,
                data: vec![1, 2, 3, 4],
            }));
            b.extend(frame(&Msg::I2t(cmd(9, Dir::None, 0))));
            emu.write_all(&b).unwrap();
            emu
        });
        let mut buf = [0u8; 4];
        dev.took(7, Dir::Write, 4);
        dev.data_write(7, &mut buf).unwrap();
        assert_eq!(buf, [1, 2, 3, 4]);
        let _emu = t.join().unwrap();
        assert!(dev.pending());
        assert_eq!(dev.i2t().unwrap().unwrap().tag, 8);
        assert_eq!(dev.i2t().unwrap().unwrap().tag, 9);
        assert!(dev.i2t().unwrap().is_none());
    }

    #[test]
    fn data_write_errors_map_to_errno() {
        for (code, check) in [
            (WriteErrno::Fault, "unknown tag 5"),
            (WriteErrno::NoMem, "too much data for tag 5"),
            (WriteErrno::Inval, "wrong data direction for tag 5"),
        ] {
            let (mut dev, mut emu) = pair();
            dev.took(5, Dir::Write, 8);
            emu.write_all(&frame(&Msg::WriteErr { tag: 5, err: code }))
                .unwrap();
            let e = dev.data_write(5, &mut [0u8; 8]).unwrap_err();
            assert_eq!(e.to_string(), check);
            assert_eq!(
                read_msgs(&mut emu, 1),
                vec![Msg::DataWrite { tag: 5, len: 8 }]
            );
        }
    }

    #[test]
    fn data_write_rejects_mismatched_answers() {
        let (mut dev, mut emu) = pair();
        emu.write_all(&frame(&Msg::WriteData {
            tag: 6,
            data: vec![0; 8],
        }))
        .unwrap();
        dev.took(5, Dir::Write, 8);
        assert!(matches!(
            dev.data_write(5, &mut [0u8; 8]),
            Err(DevError::Protocol(_))
        ));
        let (mut dev, mut emu) = pair();
        emu.write_all(&frame(&Msg::WriteData {
            tag: 5,
            data: vec![0; 7],
        }))
        .unwrap();
        dev.took(5, Dir::Write, 8);
        assert!(matches!(
            dev.data_write(5, &mut [0u8; 8]),
            Err(DevError::Protocol(_))
        ));
        let (mut dev, mut emu) = pair();
        emu.write_all(&frame(&Msg::Probe { target: 0, lun: 0 }))
            .unwrap();
        dev.took(5, Dir::Write, 8);
        assert!(matches!(
            dev.data_write(5, &mut [0u8; 8]),
            Err(DevError::Protocol(_))
        ));
    }

    #[test]
    fn data_write_times_out_and_eof_is_closed() {
        let (mut dev, emu) = pair();
        dev.set_timeout(Duration::from_millis(50));
        dev.took(1, Dir::Write, 1);
        let e = dev.data_write(1, &mut [0u8; 1]).unwrap_err();
        assert!(matches!(e, DevError::Io(ref e) if e.kind() == io::ErrorKind::TimedOut));
        drop(emu);
        assert!(matches!(dev.i2t(), Err(DevError::Closed)));
        assert!(matches!(
            dev.t2i(1, Status::Done, &[]),
            Err(DevError::Closed)
        ));
    }

    #[test]
    fn fire_and_forget_messages() {
        let (mut dev, mut emu) = pair();
        dev.took(3, Dir::Read, 3);
        dev.took(4, Dir::None, 0);
        dev.data_read(3, &[9, 8, 7]).unwrap();
        dev.data_read(3, &[]).unwrap();
        let long: Vec<u8> = (0..40).collect();
        dev.t2i(3, Status::Sense, &long).unwrap();
        dev.t2i(4, Status::Done, &[0x70]).unwrap();
        dev.probe(2, -1).unwrap();
        dev.detach(-1, -1).unwrap();
        let mut sense = [0u8; SENSE_LEN];
        sense[0] = 0x70;
        assert_eq!(
            read_msgs(&mut emu, 6),
            vec![
                Msg::DataRead {
                    tag: 3,
                    data: vec![9, 8, 7]
                },
                Msg::DataRead {
                    tag: 3,
                    data: vec![]
                },
                Msg::T2i {
                    tag: 3,
                    status: Status::Sense,
                    sense: core::array::from_fn(|i| i as u8)
                },
                Msg::T2i {
                    tag: 4,
                    status: Status::Done,
                    sense
                },
                Msg::Probe { target: 2, lun: -1 },
                Msg::Detach {
                    target: -1,
                    lun: -1,
                    busy: vec![]
                },
            ]
        );
    }

    #[test]
    fn send_skips_empty_parts() {
        let (dev, mut emu) = pair();
        assert_eq!(
            dev.link
                .send(&[&[], &[1, 2], &[], &[3]], Full::Wait)
                .unwrap(),
            3
        );
        assert_eq!(dev.link.send(&[&[], &[]], Full::Wait).unwrap(), 0);
        let mut b = [0u8; 3];
        std::io::Read::read_exact(&mut emu, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3]);
    }

    #[test]
    fn big_data_read_waits_for_pollout_and_drops_nothing() {
        let (mut dev, mut emu) = pair();
        // Far more than a socket buffer: send must block and resume.
        let data: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i * 7) as u8).collect();
        let want = data.clone();
        let t = thread::spawn(move || read_msgs(&mut emu, 1));
        dev.took(11, Dir::Read, data.len() as u32);
        dev.data_read(11, &data).unwrap();
        let got = t.join().unwrap();
        assert_eq!(
            got,
            vec![Msg::DataRead {
                tag: 11,
                data: want
            }]
        );
    }

    #[test]
    fn garbage_from_emulator_is_a_protocol_error() {
        let (mut dev, mut emu) = pair();
        emu.write_all(&[0xff, 0xff, 0xff, 0x7f, 1]).unwrap();
        assert!(matches!(dev.i2t(), Err(DevError::Protocol(_))));
        let (mut dev, mut emu) = pair();
        emu.write_all(&frame(&Msg::DataRead {
            tag: 1,
            data: vec![],
        }))
        .unwrap();
        assert!(matches!(dev.i2t(), Err(DevError::Protocol(_))));
    }

    // ---- batched mode ----------------------------------------------------

    /// The emulator's end, keeping bytes read past the messages asked for.
    struct Peer {
        s: UnixStream,
        d: Decoder,
    }

    impl Peer {
        fn recv(&mut self, n: usize) -> Vec<Msg> {
            let mut out = Vec::new();
            while out.len() < n {
                if let Some(m) = self.d.next_msg().unwrap() {
                    out.push(m.to_owned_msg());
                    continue;
                }
                assert!(self.d.read_from(&mut self.s).unwrap() > 0, "EOF");
            }
            out
        }

        fn send(&mut self, msgs: &[Msg]) {
            let mut b = Vec::new();
            for m in msgs {
                emuproto::encode(m, &mut b).unwrap();
            }
            self.s.write_all(&b).unwrap();
        }

        /// Nothing was sent to the emulator that it has not taken.
        fn idle(&mut self) -> bool {
            if self.d.buffered() > 0 {
                return false;
            }
            self.s.set_nonblocking(true).unwrap();
            let mut b = [0u8; 1];
            let r = std::io::Read::read(&mut self.s, &mut b);
            self.s.set_nonblocking(false).unwrap();
            matches!(r, Err(ref e) if e.kind() == io::ErrorKind::WouldBlock)
        }
    }

    fn bpair() -> (EmuDev, Peer) {
        let (a, b) = UnixStream::pair().unwrap();
        let mut dev = EmuDev::batched(OwnedFd::from(a)).unwrap();
        dev.set_timeout(Duration::from_secs(10));
        (
            dev,
            Peer {
                s: b,
                d: Decoder::new(),
            },
        )
    }

    fn wdata(tag: u32, data: &[u8]) -> Msg {
        Msg::WriteData {
            tag,
            data: data.to_vec(),
        }
    }

    fn t2i_done(tag: u32) -> Msg {
        Msg::T2i {
            tag,
            status: Status::Done,
            sense: [0; SENSE_LEN],
        }
    }

    #[test]
    fn batched_frames_wait_for_flush_in_call_order() {
        let (mut dev, mut emu) = bpair();
        dev.took(3, Dir::Read, 3);
        dev.took(4, Dir::Read, 0);
        dev.data_read(3, &[9, 8, 7]).unwrap();
        dev.t2i(3, Status::Done, &[]).unwrap();
        dev.probe(2, -1).unwrap();
        dev.data_read(4, &[]).unwrap();
        dev.detach(-1, -1).unwrap();
        assert!(emu.idle(), "written before flush");
        dev.flush().unwrap();
        assert_eq!(
            emu.recv(5),
            vec![
                Msg::DataRead {
                    tag: 3,
                    data: vec![9, 8, 7]
                },
                t2i_done(3),
                Msg::Probe { target: 2, lun: -1 },
                Msg::DataRead {
                    tag: 4,
                    data: vec![]
                },
                // Tag 4 is still outstanding.
                Msg::Detach {
                    target: -1,
                    lun: -1,
                    busy: emuproto::tag_bytes([4])
                },
            ]
        );
        assert!(emu.idle());
        // Nothing buffered: flush writes nothing.
        dev.flush().unwrap();
        assert!(emu.idle());
    }

    #[test]
    fn big_read_data_goes_at_once_behind_the_buffer() {
        let (mut dev, mut emu) = bpair();
        let big: Vec<u8> = (0..COPY_MAX as u32 + 1).map(|i| (i * 3) as u8).collect();
        dev.took(1, Dir::None, 0);
        dev.took(2, Dir::Read, (COPY_MAX + big.len()) as u32);
        dev.t2i(1, Status::Done, &[]).unwrap();
        dev.data_read(2, &[5; COPY_MAX]).unwrap();
        assert!(emu.idle(), "a small piece is copied and waits");
        dev.data_read(2, &big).unwrap();
        dev.t2i(2, Status::Done, &[]).unwrap();
        // Up to the big piece, everything went; what follows waits.
        assert_eq!(
            emu.recv(3),
            vec![
                t2i_done(1),
                Msg::DataRead {
                    tag: 2,
                    data: vec![5; COPY_MAX]
                },
                Msg::DataRead { tag: 2, data: big },
            ]
        );
        assert!(emu.idle());
        dev.flush().unwrap();
        assert_eq!(emu.recv(1), vec![t2i_done(2)]);
    }

    #[test]
    fn a_full_buffer_goes_without_flush() {
        let (mut dev, mut emu) = bpair();
        // 28 bytes a T2I frame.
        let n = OUT_HIGH / 28 + 1;
        for t in 0..n as u32 {
            dev.took(t, Dir::None, 0);
            dev.t2i(t, Status::Done, &[]).unwrap();
        }
        let got = emu.recv(n);
        let want: Vec<Msg> = (0..n as u32).map(t2i_done).collect();
        assert_eq!(got, want);
        // Completed already: EFAULT, and the frame still goes (buffered).
        assert!(matches!(
            dev.t2i(0, Status::Done, &[]),
            Err(DevError::UnknownTag(0))
        ));
        assert!(emu.idle());
    }

    #[test]
    fn a_full_socket_with_input_waiting_ends_flush_early() {
        let (mut dev, mut emu) = bpair();
        emu.send(&[Msg::I2t(cmd(5, Dir::None, 0))]);
        dev.took(1, Dir::None, 0);
        dev.took(11, Dir::Read, 8 * 1024 * 1024);
        dev.t2i(1, Status::Done, &[]).unwrap();
        // Far more than the socket holds, and the emulator does not read:
        // the write stops instead of waiting for it, and keeps the rest.
        let data: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i * 7) as u8).collect();
        let t0 = Instant::now();
        dev.data_read(11, &data).unwrap();
        dev.t2i(11, Status::Done, &[]).unwrap();
        dev.flush().unwrap();
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert!(!dev.st.out.is_empty());
        assert_eq!(dev.i2t().unwrap().unwrap().tag, 5);
        let want = data.clone();
        let t = thread::spawn(move || emu.recv(3));
        dev.flush().unwrap();
        assert!(dev.st.out.is_empty());
        assert_eq!(
            t.join().unwrap(),
            vec![
                t2i_done(1),
                Msg::DataRead {
                    tag: 11,
                    data: want
                },
                t2i_done(11)
            ]
        );
    }

    #[test]
    fn both_sides_writing_more_than_a_socket_holds_do_not_deadlock() {
        let (mut dev, mut emu) = bpair();
        // The emulator writes all its commands before it reads anything,
        // as its reader thread does while the relay's socket is full.
        let n = 60_000u32;
        let cmds: Vec<Msg> = (0..n)
            .map(|t| Msg::I2t(cmd(t, Dir::Read, 100_000)))
            .collect();
        let reads = 64u32;
        let t = thread::spawn(move || {
            emu.send(&cmds);
            emu.recv(2 * reads as usize)
        });
        // The relay's loop: drain, answer, flush, sleep until readable.
        let mut next = 0;
        let mut left = reads;
        while next < n || !dev.st.out.is_empty() {
            while let Some(c) = dev.i2t().unwrap() {
                assert_eq!(c.tag, next);
                next += 1;
                if left > 0 && c.tag % 500 == 0 {
                    left -= 1;
                    dev.data_read(c.tag, &[c.tag as u8; 100_000]).unwrap();
                    dev.t2i(c.tag, Status::Done, &[]).unwrap();
                }
            }
            dev.flush().unwrap();
            let mut fds = [PollFd::new(dev.fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(100u8));
        }
        let got = t.join().unwrap();
        let want: Vec<Msg> = (0..reads)
            .flat_map(|i| {
                let tag = i * 500;
                [
                    Msg::DataRead {
                        tag,
                        data: vec![tag as u8; 100_000],
                    },
                    t2i_done(tag),
                ]
            })
            .collect();
        assert!(got == want, "frames lost or reordered");
    }

    #[test]
    fn dropping_the_device_writes_what_is_left() {
        let (mut dev, mut emu) = bpair();
        dev.took(3, Dir::None, 0);
        dev.t2i(3, Status::Done, &[]).unwrap();
        dev.probe(1, 2).unwrap();
        assert!(emu.idle());
        drop(dev);
        assert_eq!(
            emu.recv(2),
            vec![t2i_done(3), Msg::Probe { target: 1, lun: 2 }]
        );
    }

    #[test]
    fn prefetch_asks_for_a_batch_in_one_round_trip() {
        let (mut dev, mut emu) = bpair();
        dev.took(9, Dir::None, 0);
        dev.t2i(9, Status::Done, &[]).unwrap();
        emu.send(&[
            Msg::I2t(cmd(1, Dir::Write, 8)),
            Msg::I2t(cmd(2, Dir::Read, 16)),
            Msg::I2t(cmd(3, Dir::Write, 4)),
            Msg::I2t(cmd(4, Dir::None, 0)),
        ]);
        assert_eq!(dev.i2t().unwrap().unwrap().tag, 1);
        // Asked for, but held until the caller waits or flushes.
        assert!(emu.idle());
        let t = thread::spawn(move || {
            let got = emu.recv(3);
            emu.send(&[wdata(1, b"abcdefgh"), wdata(3, b"wxyz")]);
            (emu, got)
        });
        let mut b1 = [0u8; 8];
        dev.data_write(1, &mut b1).unwrap();
        assert_eq!(&b1, b"abcdefgh");
        let (mut emu, got) = t.join().unwrap();
        // Behind what was buffered before, in decoding order.
        assert_eq!(
            got,
            vec![
                t2i_done(9),
                Msg::DataWrite { tag: 1, len: 8 },
                Msg::DataWrite { tag: 3, len: 4 },
            ]
        );
        assert_eq!(dev.i2t().unwrap().unwrap().tag, 2);
        assert_eq!(dev.i2t().unwrap().unwrap().tag, 3);
        let mut b3 = [0u8; 4];
        dev.data_write(3, &mut b3).unwrap();
        assert_eq!(&b3, b"wxyz");
        assert_eq!(dev.i2t().unwrap().unwrap().tag, 4);
        assert!(dev.i2t().unwrap().is_none());
        for t in 1..=4 {
            dev.t2i(t, Status::Done, &[]).unwrap();
        }
        dev.flush().unwrap();
        // No DATA_WRITE beyond the prefetches.
        assert_eq!(emu.recv(4), (1..=4).map(t2i_done).collect::<Vec<_>>());
        assert!(emu.idle());
    }

    #[test]
    fn prefetch_answers_are_matched_by_tag() {
        let (mut dev, mut emu) = bpair();
        emu.send(&[
            Msg::I2t(cmd(1, Dir::Write, 2)),
            Msg::I2t(cmd(2, Dir::Write, 3)),
        ]);
        assert_eq!(dev.i2t().unwrap().unwrap().tag, 1);
        dev.flush().unwrap();
        assert_eq!(
            emu.recv(2),
            vec![
                Msg::DataWrite { tag: 1, len: 2 },
                Msg::DataWrite { tag: 2, len: 3 }
            ]
        );
        // Answered out of order: tag 2's is kept while 1 is awaited.
        emu.send(&[wdata(2, b"two"), wdata(1, b"on")]);
        let mut b = [0u8; 2];
        dev.data_write(1, &mut b).unwrap();
        assert_eq!(&b, b"on");
        // Prefetched, but not taken: the kernel has it on i2t, not t2i.
        let mut b = [0u8; 3];
        assert!(matches!(
            dev.data_write(2, &mut b),
            Err(DevError::UnknownTag(2))
        ));
        assert_eq!(dev.i2t().unwrap().unwrap().tag, 2);
        dev.data_write(2, &mut b).unwrap();
        assert_eq!(&b, b"two");
        assert!(dev.i2t().unwrap().is_none());
        dev.flush().unwrap();
        assert!(emu.idle());
    }

    #[test]
    fn refused_prefetch_reports_its_errno_then_asks_again() {
        let (mut dev, mut emu) = bpair();
        emu.send(&[
            Msg::I2t(cmd(5, Dir::Write, 8)),
            Msg::I2t(cmd(6, Dir::Write, 8)),
        ]);
        assert_eq!(dev.i2t().unwrap().unwrap().tag, 5);
        emu.send(&[
            Msg::WriteErr {
                tag: 5,
                err: WriteErrno::NoMem,
            },
            Msg::WriteErr {
                tag: 6,
                err: WriteErrno::Inval,
            },
        ]);
        let e = dev.data_write(5, &mut [0u8; 8]).unwrap_err();
        assert!(matches!(e, DevError::TooMuchData(5)), "{e}");
        // The refusal is reported once; the next request is the emulator's.
        let t = thread::spawn(move || {
            let got = emu.recv(3);
            emu.send(&[wdata(5, b"12345678")]);
            (emu, got)
        });
        let mut b = [0u8; 8];
        dev.data_write(5, &mut b).unwrap();
        assert_eq!(&b, b"12345678");
        let (mut emu, got) = t.join().unwrap();
        assert_eq!(
            got,
            vec![
                Msg::DataWrite { tag: 5, len: 8 },
                Msg::DataWrite { tag: 6, len: 8 },
                Msg::DataWrite { tag: 5, len: 8 },
            ]
        );
        // Another size than the refused prefetch's is asked for anew.
        assert_eq!(dev.i2t().unwrap().unwrap().tag, 6);
        emu.send(&[Msg::WriteErr {
            tag: 6,
            err: WriteErrno::Fault,
        }]);
        let e = dev.data_write(6, &mut [0u8; 4]).unwrap_err();
        assert!(matches!(e, DevError::UnknownTag(6)), "{e}");
        assert_eq!(emu.recv(1), vec![Msg::DataWrite { tag: 6, len: 4 }]);
    }

    #[test]
    fn eof_while_prefetches_are_outstanding_is_closed() {
        let (mut dev, mut emu) = bpair();
        emu.send(&[
            Msg::I2t(cmd(1, Dir::Write, 8)),
            Msg::I2t(cmd(2, Dir::Write, 8)),
        ]);
        assert_eq!(dev.i2t().unwrap().unwrap().tag, 1);
        let t = thread::spawn(move || {
            let got = emu.recv(2);
            drop(emu);
            got
        });
        assert!(matches!(
            dev.data_write(1, &mut [0u8; 8]),
            Err(DevError::Closed)
        ));
        assert_eq!(t.join().unwrap().len(), 2);
        // The command decoded before the end is still handed out.
        assert_eq!(dev.i2t().unwrap().unwrap().tag, 2);
        assert!(matches!(dev.i2t(), Err(DevError::Closed)));
        assert!(matches!(
            dev.data_write(2, &mut [0u8; 8]),
            Err(DevError::Closed)
        ));
    }

    #[test]
    fn a_prefetch_fetched_in_pieces_is_served_in_order() {
        let (mut dev, mut emu) = bpair();
        emu.send(&[Msg::I2t(cmd(7, Dir::Write, 10))]);
        assert_eq!(dev.i2t().unwrap().unwrap().tag, 7);
        let data: Vec<u8> = (10..20).collect();
        emu.send(&[wdata(7, &data)]);
        let mut a = [0u8; 3];
        dev.data_write(7, &mut a).unwrap();
        assert_eq!(a, [10, 11, 12]);
        assert_eq!(emu.recv(1), vec![Msg::DataWrite { tag: 7, len: 10 }]);
        // More than is left goes to the emulator, whose offset is at the
        // end: it refuses as the kernel would, and the rest stays.
        emu.send(&[Msg::WriteErr {
            tag: 7,
            err: WriteErrno::NoMem,
        }]);
        let e = dev.data_write(7, &mut [0u8; 8]).unwrap_err();
        assert!(matches!(e, DevError::TooMuchData(7)), "{e}");
        assert_eq!(emu.recv(1), vec![Msg::DataWrite { tag: 7, len: 8 }]);
        // A zero-length fetch is the emulator's to judge too.
        emu.send(&[wdata(7, &[])]);
        dev.data_write(7, &mut []).unwrap();
        assert_eq!(emu.recv(1), vec![Msg::DataWrite { tag: 7, len: 0 }]);
        let mut b = [0u8; 4];
        dev.data_write(7, &mut b).unwrap();
        assert_eq!(b, [13, 14, 15, 16]);
        let mut c = [0u8; 3];
        dev.data_write(7, &mut c).unwrap();
        assert_eq!(c, [17, 18, 19]);
        dev.flush().unwrap();
        assert!(emu.idle(), "served pieces were asked of the emulator");
        // All handed out: the next byte is the emulator's to refuse.
        emu.send(&[Msg::WriteErr {
            tag: 7,
            err: WriteErrno::NoMem,
        }]);
        assert!(dev.data_write(7, &mut [0u8; 1]).is_err());
        assert_eq!(emu.recv(1), vec![Msg::DataWrite { tag: 7, len: 1 }]);
    }

    #[test]
    fn a_command_completed_unfetched_drops_its_answer() {
        let (mut dev, mut emu) = bpair();
        emu.send(&[Msg::I2t(cmd(1, Dir::Write, 4))]);
        assert_eq!(dev.i2t().unwrap().unwrap().tag, 1);
        dev.t2i(1, Status::Err, &[]).unwrap();
        dev.flush().unwrap();
        assert_eq!(
            emu.recv(2),
            vec![
                Msg::DataWrite { tag: 1, len: 4 },
                Msg::T2i {
                    tag: 1,
                    status: Status::Err,
                    sense: [0; SENSE_LEN]
                }
            ]
        );
        // The late answer is thrown away, and the tag may come back.
        emu.send(&[wdata(1, b"late"), Msg::I2t(cmd(1, Dir::Write, 2))]);
        assert_eq!(dev.i2t().unwrap().unwrap().datalen, 2);
        emu.send(&[wdata(1, b"ok")]);
        let mut b = [0u8; 2];
        dev.data_write(1, &mut b).unwrap();
        assert_eq!(&b, b"ok");
        assert_eq!(emu.recv(1), vec![Msg::DataWrite { tag: 1, len: 2 }]);
        // Completed after its answer came: dropped at once.
        emu.send(&[Msg::I2t(cmd(2, Dir::Write, 1)), wdata(2, b"x")]);
        assert_eq!(dev.i2t().unwrap().unwrap().tag, 2);
        assert!(dev.i2t().unwrap().is_none());
        dev.t2i(2, Status::Err, &[]).unwrap();
        emu.send(&[Msg::I2t(cmd(2, Dir::None, 0))]);
        assert_eq!(dev.i2t().unwrap().unwrap().dir, Dir::None);
    }

    #[test]
    fn only_whole_frames_are_prefetched() {
        let (mut dev, mut emu) = bpair();
        let big = MAX_DATA as u32 + 1;
        emu.send(&[
            Msg::I2t(cmd(1, Dir::Write, big)),
            Msg::I2t(cmd(2, Dir::Write, 0)),
        ]);
        assert_eq!(dev.i2t().unwrap().unwrap().datalen, big);
        assert_eq!(dev.i2t().unwrap().unwrap().datalen, 0);
        dev.flush().unwrap();
        assert!(emu.idle());
        // Unbatched, nothing is prefetched.
        let (mut dev, mut emu) = pair();
        emu.write_all(&frame(&Msg::I2t(cmd(3, Dir::Write, 8))))
            .unwrap();
        assert_eq!(dev.i2t().unwrap().unwrap().tag, 3);
        dev.flush().unwrap();
        emu.set_nonblocking(true).unwrap();
        let r = std::io::Read::read(&mut emu, &mut [0u8; 1]);
        assert!(matches!(r, Err(ref e) if e.kind() == io::ErrorKind::WouldBlock));
    }

    #[test]
    fn hostile_answers_are_protocol_errors() {
        // An answer nobody asked for.
        let (mut dev, mut emu) = bpair();
        emu.send(&[wdata(4, b"zz")]);
        assert!(matches!(dev.i2t(), Err(DevError::Protocol(_))));
        // A prefetch answered with the wrong length.
        let (mut dev, mut emu) = bpair();
        emu.send(&[Msg::I2t(cmd(1, Dir::Write, 4)), wdata(1, b"abc")]);
        assert_eq!(dev.i2t().unwrap().unwrap().tag, 1);
        assert!(matches!(
            dev.data_write(1, &mut [0u8; 4]),
            Err(DevError::Protocol(_))
        ));
        // A tag reused while its command is in flight.
        let (mut dev, mut emu) = bpair();
        emu.send(&[
            Msg::I2t(cmd(1, Dir::Write, 4)),
            Msg::I2t(cmd(1, Dir::Read, 4)),
        ]);
        assert_eq!(dev.i2t().unwrap().unwrap().tag, 1);
        assert!(matches!(dev.i2t(), Err(DevError::Protocol(_))));
        // An answer to a request that was already answered.
        let (mut dev, mut emu) = bpair();
        emu.send(&[
            Msg::I2t(cmd(2, Dir::Write, 1)),
            wdata(2, b"a"),
            wdata(2, b"b"),
        ]);
        assert_eq!(dev.i2t().unwrap().unwrap().tag, 2);
        assert!(matches!(dev.i2t(), Err(DevError::Protocol(_))));
    }

    #[test]
    fn a_bad_frame_after_commands_is_reported_after_them() {
        let (mut dev, mut emu) = bpair();
        let mut b = frame(&Msg::I2t(cmd(1, Dir::None, 0)));
        b.extend([1, 0, 0, 0, 99]);
        b.extend(frame(&Msg::I2t(cmd(2, Dir::None, 0))));
        emu.s.write_all(&b).unwrap();
        assert_eq!(dev.i2t().unwrap().unwrap().tag, 1);
        assert!(matches!(dev.i2t(), Err(DevError::Protocol(_))));
        assert_eq!(dev.i2t().unwrap().unwrap().tag, 2);
        assert!(dev.i2t().unwrap().is_none());
    }
}
