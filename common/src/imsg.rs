//! Framed messages over a Unix stream socket, with descriptor passing, in
//! the style of OpenBSD's imsg(3).
//!
//! Wire format: every message is a 16-byte header in host byte order,
//! `u32 type, u32 len, u32 peerid, u32 pid`, followed by `len - 16` bytes of
//! payload. Bit 31 of `len` ([`FD_MARK`]) says a descriptor travels with
//! the message, as OpenBSD's imsg.c has done since 2024; the receiver masks
//! it off. Both ends run on the same host, so host byte order is fine.
//!
//! At most one descriptor goes with a message, as one SCM_RIGHTS control
//! message on the `sendmsg` that carries the message's first byte. A
//! message with a descriptor therefore always starts a new `sendmsg`, while
//! runs of descriptor-less messages are coalesced into one gathered write.
//! The receiver queues descriptors in arrival order and hands the oldest one
//! to the next message that carries the mark.
//!
//! [`ImsgBuf`] never changes the socket's blocking mode: callers of the
//! event loop set `O_NONBLOCK` themselves, simple clients may leave it off.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

/// Size of the fixed message header.
pub const HEADER_SIZE: usize = 16;
/// Default largest message, header included (OpenBSD's MAX_IMSGSIZE).
pub const DEFAULT_MAX_SIZE: usize = 16384;
/// Bit of the header's `len` that marks an attached descriptor.
pub const FD_MARK: u32 = 0x8000_0000;

/// The largest length that still leaves bit 31 free for [`FD_MARK`].
const MAX_LIMIT: usize = (FD_MARK - 1) as usize;
/// Smallest free space offered to each `recvmsg`.
const READ_CHUNK: usize = 64 * 1024;
/// Upper bound on iovecs per `sendmsg`; well under IOV_MAX (1024) everywhere.
const MAX_IOV: usize = 128;
/// Senders attach at most one descriptor per `sendmsg`, and stream sockets do
/// not merge control messages, so room for a few copes with a sloppy peer
/// without MSG_CTRUNC.
const MAX_FDS_PER_READ: usize = 8;

// Atomic close-on-exec avoids leaking received descriptors into a concurrent
// fork+exec (OpenBSD has had MSG_CMSG_CLOEXEC since 5.7), and a vanished peer
// must surface as EPIPE, not as a process-killing SIGPIPE. Elsewhere neither
// flag exists and read() sets FD_CLOEXEC afterwards.
#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "netbsd",
    target_os = "openbsd"
))]
mod flags {
    use nix::sys::socket::MsgFlags;
    pub const RECV: MsgFlags = MsgFlags::MSG_CMSG_CLOEXEC;
    pub const SEND: MsgFlags = MsgFlags::MSG_NOSIGNAL;
}
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "netbsd",
    target_os = "openbsd"
)))]
mod flags {
    use nix::sys::socket::MsgFlags;
    pub const RECV: MsgFlags = MsgFlags::empty();
    pub const SEND: MsgFlags = MsgFlags::empty();
}
const RECV_FLAGS: nix::sys::socket::MsgFlags = flags::RECV;
const SEND_FLAGS: nix::sys::socket::MsgFlags = flags::SEND;

/// The 16-byte message header, exactly as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: u32,
    /// Header plus payload length, possibly with [`FD_MARK`] set.
    pub len: u32,
    pub peerid: u32,
    pub pid: u32,
}

impl Header {
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..4].copy_from_slice(&self.kind.to_ne_bytes());
        b[4..8].copy_from_slice(&self.len.to_ne_bytes());
        b[8..12].copy_from_slice(&self.peerid.to_ne_bytes());
        b[12..16].copy_from_slice(&self.pid.to_ne_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; HEADER_SIZE]) -> Header {
        let word = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Header {
            kind: word(0),
            len: word(4),
            peerid: word(8),
            pid: word(12),
        }
    }

    /// Header plus payload length with the descriptor mark removed.
    pub fn frame_len(&self) -> usize {
        (self.len & !FD_MARK) as usize
    }

    pub fn has_fd(&self) -> bool {
        self.len & FD_MARK != 0
    }
}

/// One received message.
#[derive(Debug)]
pub struct Imsg {
    pub kind: u32,
    pub peerid: u32,
    pub pid: u32,
    pub data: Vec<u8>,
    pub fd: Option<OwnedFd>,
}

#[derive(Debug)]
pub enum Error {
    Io(io::Error),
    /// A message (header included) longer than the configured maximum.
    TooLarge {
        len: usize,
        max: usize,
    },
    /// A header whose length does not even cover the header.
    TooShort {
        len: usize,
    },
    /// A message carries the descriptor mark but no descriptor arrived.
    MissingFd,
    /// The kernel dropped control data (descriptors) for lack of room.
    ControlTruncated,
    /// The peer closed the connection in the middle of a message.
    Closed,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "imsg: {e}"),
            Error::TooLarge { len, max } => {
                write!(
                    f,
                    "imsg: message of {len} bytes exceeds the maximum of {max}"
                )
            }
            Error::TooShort { len } => {
                write!(f, "imsg: message length {len} is shorter than the header")
            }
            Error::MissingFd => write!(f, "imsg: message announces a descriptor that never came"),
            Error::ControlTruncated => write!(f, "imsg: control data truncated, descriptors lost"),
            Error::Closed => write!(f, "imsg: peer closed the connection mid-message"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}

impl From<Errno> for Error {
    fn from(e: Errno) -> Error {
        Error::Io(io::Error::from(e))
    }
}

/// A composed message waiting to be written.
struct Outgoing {
    bytes: Vec<u8>,
    /// Taken (and so closed) as soon as the first byte is sent.
    fd: Option<OwnedFd>,
}

/// A buffered imsg channel over one Unix stream socket, which it owns.
///
/// After [`get`](ImsgBuf::get) returns [`Error::TooShort`] or
/// [`Error::TooLarge`], or [`read`](ImsgBuf::read) returns
/// [`Error::ControlTruncated`], the stream can no longer be framed
/// reliably: the caller must drop the channel. Later calls stay safe and
/// keep returning the same framing error.
pub struct ImsgBuf {
    sock: OwnedFd,
    max: usize,
    wqueue: VecDeque<Outgoing>,
    /// Bytes of the front message already written.
    woff: usize,
    /// Bytes not yet written, over the whole queue.
    wqueued: usize,
    /// Received bytes live in `rbuf[rstart..rend]`; consumed bytes are
    /// skipped by advancing `rstart`, so each `get` is O(message).
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    fds: VecDeque<OwnedFd>,
    cmsg: Vec<u8>,
    /// Whether `read` asks for passed descriptors at all.
    recv_fds: bool,
    /// The last read did not fill the room it had.
    short_read: bool,
}

impl fmt::Debug for ImsgBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImsgBuf")
            .field("sock", &self.sock)
            .field("max", &self.max)
            .field("queued", &self.wqueued)
            .field("pending", &(self.rend - self.rstart))
            .field("fds", &self.fds.len())
            .finish()
    }
}

impl ImsgBuf {
    pub fn new(fd: OwnedFd) -> ImsgBuf {
        ImsgBuf {
            sock: fd,
            max: DEFAULT_MAX_SIZE,
            wqueue: VecDeque::new(),
            woff: 0,
            wqueued: 0,
            rbuf: Vec::new(),
            rstart: 0,
            rend: 0,
            fds: VecDeque::new(),
            cmsg: nix::cmsg_space!([RawFd; MAX_FDS_PER_READ]),
            recv_fds: true,
            short_read: false,
        }
    }

    /// Largest message, header included, accepted in either direction.
    /// Clamped to `HEADER_SIZE..=0x7fff_ffff` because bit 31 of the length
    /// is the descriptor mark.
    pub fn set_max_size(&mut self, max: usize) {
        self.max = max.clamp(HEADER_SIZE, MAX_LIMIT);
    }

    pub fn max_size(&self) -> usize {
        self.max
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// Queue one message. On error the descriptor, if any, is closed.
    pub fn compose(
        &mut self,
        kind: u32,
        peerid: u32,
        pid: u32,
        data: &[u8],
        fd: Option<OwnedFd>,
    ) -> Result<(), Error> {
        self.compose_parts(kind, peerid, pid, &[data], fd)
    }

    /// Queue one message whose payload is the concatenation of `parts`.
    pub fn compose_parts(
        &mut self,
        kind: u32,
        peerid: u32,
        pid: u32,
        parts: &[&[u8]],
        fd: Option<OwnedFd>,
    ) -> Result<(), Error> {
        let total = parts
            .iter()
            .try_fold(HEADER_SIZE, |acc, p| acc.checked_add(p.len()));
        let len = match total {
            Some(len) if len <= self.max => len,
            _ => {
                return Err(Error::TooLarge {
                    len: total.unwrap_or(usize::MAX),
                    max: self.max,
                })
            }
        };
        let mut wire_len =
            u32::try_from(len).map_err(|_| Error::TooLarge { len, max: self.max })?;
        if fd.is_some() {
            wire_len |= FD_MARK;
        }
        let hdr = Header {
            kind,
            len: wire_len,
            peerid,
            pid,
        };
        let mut bytes = Vec::with_capacity(len);
        bytes.extend_from_slice(&hdr.to_bytes());
        for p in parts {
            bytes.extend_from_slice(p);
        }
        self.wqueued = self.wqueued.saturating_add(len);
        self.wqueue.push_back(Outgoing { bytes, fd });
        Ok(())
    }

    /// Bytes composed but not yet written.
    pub fn queued(&self) -> usize {
        self.wqueued
    }

    /// Write as much as the socket takes without blocking. `Ok(true)` means
    /// the queue is empty, `Ok(false)` that the socket is full.
    pub fn flush(&mut self) -> Result<bool, Error> {
        loop {
            let res = {
                let Some(front) = self.wqueue.front() else {
                    return Ok(true);
                };
                let mut iov = Vec::with_capacity(self.wqueue.len().min(MAX_IOV));
                iov.push(IoSlice::new(front.bytes.get(self.woff..).unwrap_or(&[])));
                for m in self.wqueue.iter().skip(1).take(MAX_IOV - 1) {
                    if m.fd.is_some() {
                        break;
                    }
                    iov.push(IoSlice::new(&m.bytes));
                }
                let raw = front.fd.as_ref().map(|f| [f.as_raw_fd()]);
                let cmsgs: Vec<ControlMessage<'_>> = match &raw {
                    Some(fds) => vec![ControlMessage::ScmRights(fds)],
                    None => Vec::new(),
                };
                sendmsg::<()>(self.sock.as_raw_fd(), &iov, &cmsgs, SEND_FLAGS, None)
            };
            match res {
                Ok(0) => return Err(Error::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.consume_written(n),
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn consume_written(&mut self, mut n: usize) {
        self.wqueued = self.wqueued.saturating_sub(n);
        // The kernel holds its own reference once any byte went out with the
        // control message; ours must go, and must not be sent twice.
        if let Some(front) = self.wqueue.front_mut() {
            front.fd = None;
        }
        while n > 0 {
            let Some(front) = self.wqueue.front() else {
                break;
            };
            let left = front.bytes.len().saturating_sub(self.woff);
            if n >= left {
                n -= left;
                self.wqueue.pop_front();
                self.woff = 0;
            } else {
                self.woff += n;
                n = 0;
            }
        }
    }

    /// One `recvmsg` into the internal buffer. `Ok(0)` is end of file; a
    /// non-blocking socket with nothing to read gives `Err(Io(e))` with
    /// `e.kind() == WouldBlock`.
    /// Reads with read(2) from now on, never asking for descriptors: the
    /// kernel discards any a peer passes (a pledged process without
    /// "recvfd" would be killed for receiving one), and a message that
    /// claims one fails with `MissingFd`.
    pub fn refuse_fds(&mut self) {
        self.recv_fds = false;
    }

    pub fn read(&mut self) -> Result<usize, Error> {
        self.reserve_read_space();
        if !self.recv_fds {
            loop {
                let Some(space) = self.rbuf.get_mut(self.rend..) else {
                    return Ok(0);
                };
                let room = space.len();
                match nix::unistd::read(&self.sock, space) {
                    Ok(n) => {
                        self.short_read = n < room;
                        self.rend = self.rend.saturating_add(n).min(self.rbuf.len());
                        return Ok(n);
                    }
                    Err(Errno::EINTR) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        loop {
            let room = self.rbuf.len() - self.rend;
            let res = {
                let Some(space) = self.rbuf.get_mut(self.rend..) else {
                    return Ok(0);
                };
                let mut iov = [IoSliceMut::new(space)];
                recvmsg::<()>(
                    self.sock.as_raw_fd(),
                    &mut iov,
                    Some(&mut self.cmsg),
                    RECV_FLAGS,
                )
                .map(|msg| {
                    let truncated = msg.flags.contains(MsgFlags::MSG_CTRUNC);
                    let mut raw = Vec::new();
                    // cmsgs() refuses to walk a truncated buffer, so
                    // descriptors that did fit stay open but unreachable;
                    // acceptable since the channel must be dropped then.
                    if let Ok(cmsgs) = msg.cmsgs() {
                        for c in cmsgs {
                            if let ControlMessageOwned::ScmRights(fds) = c {
                                raw.extend(fds);
                            }
                        }
                    }
                    (msg.bytes, truncated, raw)
                })
            };
            match res {
                Ok((n, truncated, raw)) => {
                    for fd in raw.into_iter().filter_map(adopt_fd) {
                        set_cloexec(&fd);
                        self.fds.push_back(fd);
                    }
                    self.short_read = n < room;
                    self.rend = self.rend.saturating_add(n).min(self.rbuf.len());
                    if truncated {
                        return Err(Error::ControlTruncated);
                    }
                    return Ok(n);
                }
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Gives the read buffer back while it holds nothing, and the write
    /// queue's while it is empty: a connection that is quiet between
    /// requests (a control client) then costs next to no memory.
    pub fn release_idle(&mut self) {
        if self.rstart == self.rend {
            self.rbuf = Vec::new();
            self.rstart = 0;
            self.rend = 0;
        }
        if self.wqueue.is_empty() {
            self.wqueue = VecDeque::new();
        }
    }

    /// The last read returned less than it had room for: the socket is
    /// drained, and with edge-triggered readiness another read would only
    /// say EAGAIN (a new arrival raises a new event).
    pub fn drained(&self) -> bool {
        self.short_read
    }

    /// Bytes of buffer held (read buffer and queued messages).
    pub fn buffer_bytes(&self) -> usize {
        self.rbuf.capacity() + self.wqueued
    }

    /// Make at least READ_CHUNK bytes free after `rend`.
    ///
    /// Compacting copies the pending bytes, so it is done only when at
    /// least as many bytes were consumed in front of them; otherwise the
    /// buffer doubles. Both keep the total copying linear in the bytes
    /// received, and the buffer ends up about twice the largest message.
    fn reserve_read_space(&mut self) {
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
        }
        if self.rbuf.len() - self.rend >= READ_CHUNK {
            return;
        }
        let pending = self.rend - self.rstart;
        if self.rstart >= pending {
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            self.rstart = 0;
            self.rend = pending;
        }
        if self.rbuf.len() - self.rend < READ_CHUNK {
            let want = self
                .rbuf
                .len()
                .saturating_mul(2)
                .max(self.rend.saturating_add(READ_CHUNK));
            self.rbuf.resize(want, 0);
        }
    }

    /// The next complete message from the buffer, or `None` if more bytes
    /// are needed. Framing errors leave the channel unusable (see the type's
    /// documentation). A [`Error::MissingFd`] message is discarded, so the
    /// stream stays framed.
    pub fn get(&mut self) -> Result<Option<Imsg>, Error> {
        let avail = self.rbuf.get(self.rstart..self.rend).unwrap_or(&[]);
        let Some(hbytes) = avail.first_chunk::<HEADER_SIZE>() else {
            return Ok(None);
        };
        let hdr = Header::from_bytes(hbytes);
        let len = hdr.frame_len();
        if len < HEADER_SIZE {
            return Err(Error::TooShort { len });
        }
        if len > self.max {
            return Err(Error::TooLarge { len, max: self.max });
        }
        let Some(frame) = avail.get(..len) else {
            return Ok(None);
        };
        let data = frame.get(HEADER_SIZE..).unwrap_or(&[]).to_vec();
        self.rstart += len;
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
        }
        let fd = if hdr.has_fd() {
            // The descriptor rides with the message's first byte, so by now
            // it has arrived or it never will.
            Some(self.fds.pop_front().ok_or(Error::MissingFd)?)
        } else {
            None
        };
        Ok(Some(Imsg {
            kind: hdr.kind,
            peerid: hdr.peerid,
            pid: hdr.pid,
            data,
            fd,
        }))
    }

    /// Whether received bytes remain unconsumed. Once [`get`](ImsgBuf::get)
    /// has returned `None`, these are an incomplete message, so after EOF
    /// this means the peer closed mid-message.
    pub fn eof_pending(&self) -> bool {
        self.rend > self.rstart
    }

    /// Flush until the queue is empty, waiting in poll(2) when the socket
    /// is full.
    pub fn write_all(&mut self) -> Result<(), Error> {
        while !self.flush()? {
            self.wait(PollFlags::POLLOUT)?;
        }
        Ok(())
    }

    /// The next message, reading (and waiting in poll(2) on a non-blocking
    /// socket) as needed. `Ok(None)` is a clean end of file;
    /// [`Error::Closed`] an end of file in the middle of a message.
    pub fn recv_blocking(&mut self) -> Result<Option<Imsg>, Error> {
        loop {
            if let Some(m) = self.get()? {
                return Ok(Some(m));
            }
            match self.read() {
                Ok(0) if self.eof_pending() => return Err(Error::Closed),
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.wait(PollFlags::POLLIN)?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn wait(&self, events: PollFlags) -> Result<(), Error> {
        loop {
            let mut pfd = [PollFd::new(self.sock.as_fd(), events)];
            match poll(&mut pfd, PollTimeout::NONE) {
                Ok(_) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl AsFd for ImsgBuf {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl AsRawFd for ImsgBuf {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

fn adopt_fd(raw: RawFd) -> Option<OwnedFd> {
    if raw < 0 {
        return None;
    }
    // SAFETY: the kernel just installed `raw` in our descriptor table for an
    // SCM_RIGHTS message we received; nothing else knows it, so this is its
    // only owner.
    Some(unsafe { OwnedFd::from_raw_fd(raw) })
}

#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "netbsd",
    target_os = "openbsd"
))]
fn set_cloexec(_fd: &OwnedFd) {}

#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "netbsd",
    target_os = "openbsd"
)))]
fn set_cloexec(fd: &OwnedFd) {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    // Best effort: failure only risks leaking the descriptor across exec.
    let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use nix::sys::socket::{setsockopt, socketpair, sockopt, AddressFamily, SockFlag, SockType};
    use nix::unistd::{pipe, read as raw_read, write as raw_write};

    fn pair() -> (OwnedFd, OwnedFd) {
        socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::empty(),
        )
        .unwrap()
    }

    #[test]
    fn refusing_descriptors_drops_them_and_fails_the_message() {
        let (a, b) = pair();
        let mut tx = ImsgBuf::new(a);
        let mut rx = ImsgBuf::new(b);
        rx.refuse_fds();
        let (pr, pw) = pipe().unwrap();
        tx.compose(1, 0, 0, b"with fd", Some(pw)).unwrap();
        tx.compose(2, 0, 0, b"plain", None).unwrap();
        tx.write_all().unwrap();
        let mut got = Vec::new();
        while got.len() < 2 {
            match rx.recv_blocking() {
                Ok(Some(m)) => got.push(Ok(m.kind)),
                Ok(None) => break,
                Err(e) => got.push(Err(e.to_string())),
            }
        }
        assert!(got[0].is_err(), "{got:?}");
        assert_eq!(got[1], Ok(2));
        assert!(rx.fds.is_empty());
        // The write end was discarded by the kernel: the pipe reads EOF.
        drop(tx);
        let mut buf = [0u8; 1];
        assert_eq!(raw_read(&pr, &mut buf).unwrap(), 0);
    }

    fn nonblock(fd: &impl AsFd) {
        fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).unwrap();
    }

    fn frame(kind: u32, len: u32, peerid: u32, pid: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = Header {
            kind,
            len,
            peerid,
            pid,
        }
        .to_bytes()
        .to_vec();
        v.extend_from_slice(payload);
        v
    }

    /// Read exactly `n` bytes from a blocking raw socket.
    fn read_exact(fd: &OwnedFd, n: usize) -> Vec<u8> {
        let mut out = vec![0u8; n];
        let mut got = 0;
        while got < n {
            let r = raw_read(fd, &mut out[got..]).unwrap();
            assert!(r > 0, "unexpected EOF after {got} bytes");
            got += r;
        }
        out
    }

    /// Write `data` to `w`, read it back from `r`.
    fn pipe_works(w: &OwnedFd, r: &OwnedFd, data: &[u8]) {
        assert_eq!(raw_write(w, data).unwrap(), data.len());
        assert_eq!(read_exact(r, data.len()), data);
    }

    fn assert_eof(fd: &OwnedFd) {
        let mut b = [0u8; 8];
        assert_eq!(raw_read(fd, &mut b).unwrap(), 0);
    }

    #[test]
    fn header_byte_layout() {
        let h = Header {
            kind: 0x0102_0304,
            len: 0x1122_3344,
            peerid: 7,
            pid: 0xdead_beef,
        };
        let mut want = Vec::new();
        want.extend_from_slice(&0x0102_0304u32.to_ne_bytes());
        want.extend_from_slice(&0x1122_3344u32.to_ne_bytes());
        want.extend_from_slice(&7u32.to_ne_bytes());
        want.extend_from_slice(&0xdead_beefu32.to_ne_bytes());
        assert_eq!(h.to_bytes().to_vec(), want);
        assert_eq!(Header::from_bytes(&h.to_bytes()), h);
        assert_eq!(h.frame_len(), 0x1122_3344);
        assert!(!h.has_fd());
        let marked = Header {
            len: 20 | FD_MARK,
            ..h
        };
        assert_eq!(marked.frame_len(), 20);
        assert!(marked.has_fd());
    }

    #[test]
    fn composed_message_layout() {
        let (a, b) = pair();
        let mut ib = ImsgBuf::new(a);
        ib.compose(5, 6, 7, b"abc", None).unwrap();
        ib.compose_parts(8, 9, 10, &[b"de", b"", b"f"], None)
            .unwrap();
        assert_eq!(ib.queued(), 19 + 19);
        assert!(ib.flush().unwrap());
        assert_eq!(ib.queued(), 0);
        let mut want = Vec::new();
        for w in [5u32, 19, 6, 7] {
            want.extend_from_slice(&w.to_ne_bytes());
        }
        want.extend_from_slice(b"abc");
        for w in [8u32, 19, 9, 10] {
            want.extend_from_slice(&w.to_ne_bytes());
        }
        want.extend_from_slice(b"def");
        assert_eq!(read_exact(&b, want.len()), want);

        // Only a message with a descriptor carries the mark.
        let (_r, w) = pipe().unwrap();
        ib.compose(1, 2, 3, b"", Some(w)).unwrap();
        ib.compose(1, 2, 3, b"", None).unwrap();
        ib.write_all().unwrap();
        let got = read_exact(&b, 32);
        assert_eq!(&got[4..8], &(16u32 | FD_MARK).to_ne_bytes());
        assert_eq!(&got[20..24], &16u32.to_ne_bytes());
    }

    #[test]
    fn many_messages_round_trip() {
        let (a, b) = pair();
        let mut tx = ImsgBuf::new(a);
        let mut rx = ImsgBuf::new(b);
        for i in 0..1000u32 {
            let data = vec![i as u8; (i % 37) as usize];
            tx.compose(i, i + 1, i + 2, &data, None).unwrap();
        }
        assert!(tx.flush().unwrap());
        drop(tx);
        for i in 0..1000u32 {
            let m = rx.recv_blocking().unwrap().unwrap();
            assert_eq!((m.kind, m.peerid, m.pid), (i, i + 1, i + 2));
            assert_eq!(m.data, vec![i as u8; (i % 37) as usize]);
            assert!(m.fd.is_none());
        }
        assert!(rx.recv_blocking().unwrap().is_none());
        assert!(!rx.eof_pending());
    }

    #[test]
    fn empty_and_max_size_payloads() {
        let (a, b) = pair();
        let mut tx = ImsgBuf::new(a);
        let mut rx = ImsgBuf::new(b);
        let big: Vec<u8> = (0..DEFAULT_MAX_SIZE - HEADER_SIZE)
            .map(|i| (i * 7) as u8)
            .collect();
        tx.compose(1, 0, 0, &[], None).unwrap();
        tx.compose(2, 0, 0, &big, None).unwrap();
        tx.write_all().unwrap();
        let m = rx.recv_blocking().unwrap().unwrap();
        assert_eq!((m.kind, m.data.len()), (1, 0));
        let m = rx.recv_blocking().unwrap().unwrap();
        assert_eq!(m.kind, 2);
        assert_eq!(m.data, big);
    }

    #[test]
    fn one_mib_payload_with_larger_max() {
        let (a, b) = pair();
        let size = 1 << 20;
        let mut tx = ImsgBuf::new(a);
        let mut rx = ImsgBuf::new(b);
        tx.set_max_size(size + HEADER_SIZE);
        rx.set_max_size(size + HEADER_SIZE);
        let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let expect = payload.clone();
        let writer = std::thread::spawn(move || {
            for k in 0..3 {
                tx.compose(k, 0, 0, &payload, None).unwrap();
            }
            tx.write_all().unwrap();
        });
        for k in 0..3 {
            let m = rx.recv_blocking().unwrap().unwrap();
            assert_eq!(m.kind, k);
            assert!(m.data == expect);
        }
        writer.join().unwrap();
        assert!(rx.recv_blocking().unwrap().is_none());
        // The buffer stays within a few multiples of the largest message.
        assert!(
            rx.rbuf.len() <= 4 * (size + READ_CHUNK),
            "{}",
            rx.rbuf.len()
        );
    }

    #[test]
    fn partial_reads_byte_at_a_time() {
        let (a, b) = pair();
        let mut rx = ImsgBuf::new(b);
        let bytes = frame(42, 16 + 5, 1, 2, b"hello");
        for byte in &bytes {
            assert!(rx.get().unwrap().is_none());
            raw_write(&a, std::slice::from_ref(byte)).unwrap();
            assert_eq!(rx.read().unwrap(), 1);
            assert!(rx.eof_pending());
        }
        let m = rx.get().unwrap().unwrap();
        assert_eq!((m.kind, m.peerid, m.pid), (42, 1, 2));
        assert_eq!(m.data, b"hello");
        assert!(rx.get().unwrap().is_none());
        assert!(!rx.eof_pending());
    }

    /// Drain everything readable from a non-blocking receiver.
    fn drain(rx: &mut ImsgBuf, out: &mut Vec<Imsg>) {
        loop {
            match rx.read() {
                Ok(0) => break,
                Ok(_) => {}
                Err(Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
            while let Some(m) = rx.get().unwrap() {
                out.push(m);
            }
        }
    }

    #[test]
    fn partial_writes_small_sndbuf() {
        let (a, b) = pair();
        setsockopt(&a, sockopt::SndBuf, &4096).unwrap();
        nonblock(&a);
        nonblock(&b);
        let mut tx = ImsgBuf::new(a);
        let mut rx = ImsgBuf::new(b);
        let (pr, pw) = pipe().unwrap();
        // The message with the descriptor is larger than the send buffer, so
        // it cannot go out in one sendmsg.
        let size = |i: usize| if i == 20 { 16000 } else { 3000 + i * 97 };
        let n = 40u32;
        let mut total = 0;
        for i in 0..n {
            let data = vec![i as u8; size(i as usize)];
            total += HEADER_SIZE + data.len();
            let fd = if i == 20 {
                Some(pw.try_clone().unwrap())
            } else {
                None
            };
            tx.compose(i, 0, 0, &data, fd).unwrap();
        }
        drop(pw);
        assert_eq!(tx.queued(), total);
        assert!(!tx.flush().unwrap(), "flush should hit EAGAIN");
        assert!(tx.queued() > 0 && tx.queued() < total);
        let mut got = Vec::new();
        let mut rounds = 0;
        while !tx.flush().unwrap() {
            drain(&mut rx, &mut got);
            rounds += 1;
            assert!(rounds < 10_000);
        }
        assert_eq!(tx.queued(), 0);
        drain(&mut rx, &mut got);
        assert_eq!(got.len(), n as usize);
        for (i, m) in got.iter().enumerate() {
            assert_eq!(m.kind, i as u32);
            assert_eq!(m.data, vec![i as u8; size(i)]);
            assert_eq!(m.fd.is_some(), i == 20);
        }
        // Sent exactly once: nothing stray queued on the receiver.
        assert!(rx.fds.is_empty());
        let fd = got.swap_remove(20).fd.unwrap();
        pipe_works(&fd, &pr, b"through the socket");
        drop(fd);
        drop(got);
        assert_eof(&pr);
    }

    #[test]
    fn fd_passing_pipe() {
        let (a, b) = pair();
        let mut tx = ImsgBuf::new(a);
        let mut rx = ImsgBuf::new(b);
        let (pr, pw) = pipe().unwrap();
        tx.compose(9, 0, 0, b"pipe", Some(pw)).unwrap();
        tx.write_all().unwrap();
        let m = rx.recv_blocking().unwrap().unwrap();
        assert_eq!((m.kind, m.data.as_slice()), (9, &b"pipe"[..]));
        let fd = m.fd.unwrap();
        let flags = fcntl(&fd, FcntlArg::F_GETFD).unwrap();
        assert_ne!(flags & libc::FD_CLOEXEC, 0, "received fd lacks FD_CLOEXEC");
        pipe_works(&fd, &pr, b"hi there");
        // EOF proves the sender closed its copy after sending.
        drop(fd);
        assert_eof(&pr);
    }

    #[test]
    fn two_fds_in_one_flush_keep_order() {
        let (a, b) = pair();
        let mut tx = ImsgBuf::new(a);
        let mut rx = ImsgBuf::new(b);
        let (r1, w1) = pipe().unwrap();
        let (r2, w2) = pipe().unwrap();
        tx.compose(1, 0, 0, b"one", Some(w1)).unwrap();
        tx.compose(2, 0, 0, b"two", Some(w2)).unwrap();
        assert!(tx.flush().unwrap());
        let m1 = rx.recv_blocking().unwrap().unwrap();
        let m2 = rx.recv_blocking().unwrap().unwrap();
        assert_eq!((m1.kind, m2.kind), (1, 2));
        pipe_works(m1.fd.as_ref().unwrap(), &r1, b"first");
        pipe_works(m2.fd.as_ref().unwrap(), &r2, b"second");
    }

    #[test]
    fn fd_in_middle_of_batch() {
        let (a, b) = pair();
        let mut tx = ImsgBuf::new(a);
        let mut rx = ImsgBuf::new(b);
        let (pr, pw) = pipe().unwrap();
        tx.compose(1, 0, 0, b"a", None).unwrap();
        tx.compose(2, 0, 0, b"b", None).unwrap();
        tx.compose(3, 0, 0, b"c", Some(pw)).unwrap();
        tx.compose(4, 0, 0, b"d", None).unwrap();
        assert!(tx.flush().unwrap());
        drop(tx);
        let mut got = Vec::new();
        while let Some(m) = rx.recv_blocking().unwrap() {
            got.push(m);
        }
        let kinds: Vec<_> = got.iter().map(|m| (m.kind, m.fd.is_some())).collect();
        assert_eq!(kinds, [(1, false), (2, false), (3, true), (4, false)]);
        pipe_works(got[2].fd.as_ref().unwrap(), &pr, b"middle");
    }

    #[test]
    fn fds_are_matched_in_fifo_order() {
        let (a, b) = pair();
        let mut rx = ImsgBuf::new(b);
        let (pr, pw) = pipe().unwrap();
        // An unmarked message brings a descriptor; the next marked one
        // claims it.
        let first = frame(1, 16, 0, 0, b"");
        let fds = [pw.as_raw_fd()];
        let iov = [IoSlice::new(&first)];
        let cm = [ControlMessage::ScmRights(&fds)];
        sendmsg::<()>(a.as_raw_fd(), &iov, &cm, MsgFlags::empty(), None).unwrap();
        drop(pw);
        raw_write(&a, &frame(2, 16 | FD_MARK, 0, 0, b"")).unwrap();
        let m = rx.recv_blocking().unwrap().unwrap();
        assert_eq!((m.kind, m.fd.is_some()), (1, false));
        let m = rx.recv_blocking().unwrap().unwrap();
        assert_eq!(m.kind, 2);
        pipe_works(m.fd.as_ref().unwrap(), &pr, b"fifo");
    }

    #[test]
    fn too_many_fds_is_control_truncated() {
        let (a, b) = pair();
        let mut rx = ImsgBuf::new(b);
        let pipes: Vec<_> = (0..MAX_FDS_PER_READ + 2).map(|_| pipe().unwrap()).collect();
        let raw: Vec<RawFd> = pipes.iter().map(|(_, w)| w.as_raw_fd()).collect();
        let first = frame(1, 16 | FD_MARK, 0, 0, b"");
        let iov = [IoSlice::new(&first)];
        let cm = [ControlMessage::ScmRights(&raw)];
        sendmsg::<()>(a.as_raw_fd(), &iov, &cm, MsgFlags::empty(), None).unwrap();
        assert!(matches!(rx.read(), Err(Error::ControlTruncated)));
    }

    #[test]
    fn oversize_frame_is_rejected() {
        let (a, b) = pair();
        let mut rx = ImsgBuf::new(b);
        raw_write(&a, &frame(1, DEFAULT_MAX_SIZE as u32 + 1, 0, 0, b"xx")).unwrap();
        rx.read().unwrap();
        for _ in 0..2 {
            match rx.get() {
                Err(Error::TooLarge { len, max }) => {
                    assert_eq!((len, max), (DEFAULT_MAX_SIZE + 1, DEFAULT_MAX_SIZE))
                }
                other => panic!("expected TooLarge, got {other:?}"),
            }
        }
        // The mark is not part of the length: 0xffffffff is 2^31-1 bytes.
        let (a, b) = pair();
        let mut rx = ImsgBuf::new(b);
        raw_write(&a, &frame(1, u32::MAX, 0, 0, b"")).unwrap();
        rx.read().unwrap();
        assert!(matches!(
            rx.get(),
            Err(Error::TooLarge {
                len: 0x7fff_ffff,
                ..
            })
        ));
    }

    #[test]
    fn short_frame_is_rejected() {
        for bad in [0u32, 15, FD_MARK | 3] {
            let (a, b) = pair();
            let mut rx = ImsgBuf::new(b);
            raw_write(&a, &frame(1, bad, 0, 0, b"")).unwrap();
            rx.read().unwrap();
            match rx.get() {
                Err(Error::TooShort { len }) => assert_eq!(len, (bad & !FD_MARK) as usize),
                other => panic!("expected TooShort, got {other:?}"),
            }
        }
    }

    #[test]
    fn truncated_frame_then_eof() {
        let (a, b) = pair();
        let mut rx = ImsgBuf::new(b);
        let bytes = frame(1, 16 + 10, 0, 0, b"0123456789");
        raw_write(&a, &bytes[..20]).unwrap();
        drop(a);
        assert_eq!(rx.read().unwrap(), 20);
        assert!(rx.get().unwrap().is_none());
        assert_eq!(rx.read().unwrap(), 0);
        assert!(rx.eof_pending());
        assert!(matches!(rx.recv_blocking(), Err(Error::Closed)));
    }

    #[test]
    fn missing_fd_is_an_error_and_skips_the_message() {
        let (a, b) = pair();
        let mut rx = ImsgBuf::new(b);
        let mut bytes = frame(1, 16 | FD_MARK, 0, 0, b"");
        bytes.extend(frame(2, 17, 0, 0, b"z"));
        raw_write(&a, &bytes).unwrap();
        rx.read().unwrap();
        assert!(matches!(rx.get(), Err(Error::MissingFd)));
        let m = rx.get().unwrap().unwrap();
        assert_eq!((m.kind, m.data.as_slice()), (2, &b"z"[..]));
    }

    #[test]
    fn compose_too_large() {
        let (a, _b) = pair();
        let mut tx = ImsgBuf::new(a);
        let data = vec![0u8; DEFAULT_MAX_SIZE - HEADER_SIZE + 1];
        match tx.compose(1, 0, 0, &data, None) {
            Err(Error::TooLarge { len, max }) => {
                assert_eq!((len, max), (DEFAULT_MAX_SIZE + 1, DEFAULT_MAX_SIZE))
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert!(matches!(
            tx.compose_parts(1, 0, 0, &[&data[..10], &data[10..]], None),
            Err(Error::TooLarge { .. })
        ));
        assert_eq!(tx.queued(), 0);
        tx.set_max_size(usize::MAX);
        assert_eq!(tx.max_size(), 0x7fff_ffff);
        tx.set_max_size(0);
        assert_eq!(tx.max_size(), HEADER_SIZE);
        assert!(tx.compose(1, 0, 0, b"", None).is_ok());
        assert!(matches!(
            tx.compose(1, 0, 0, b"x", None),
            Err(Error::TooLarge { len: 17, max: 16 })
        ));
    }

    #[test]
    fn would_block_and_broken_pipe() {
        let (a, b) = pair();
        nonblock(&b);
        let mut rx = ImsgBuf::new(b);
        match rx.read() {
            Err(Error::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock),
            other => panic!("expected WouldBlock, got {other:?}"),
        }
        drop(rx);
        let mut tx = ImsgBuf::new(a);
        tx.compose(1, 0, 0, b"nobody listens", None).unwrap();
        match tx.flush() {
            Err(Error::Io(e)) => assert_eq!(e.raw_os_error(), Some(libc::EPIPE)),
            other => panic!("expected EPIPE, got {other:?}"),
        }
    }

    #[test]
    fn read_buffer_compacts_instead_of_growing() {
        let (a, b) = pair();
        let mut rx = ImsgBuf::new(b);
        let msg = frame(1, 16 + 1000, 0, 0, &[7u8; 1000]);
        let stream = msg.repeat(500);
        // Chunks that split messages, so a partial one is always pending.
        let mut count = 0;
        for chunk in stream.chunks(1500) {
            raw_write(&a, chunk).unwrap();
            rx.read().unwrap();
            while let Some(m) = rx.get().unwrap() {
                assert_eq!(m.data.len(), 1000);
                count += 1;
            }
        }
        assert_eq!(count, 500);
        assert!(rx.rbuf.len() <= 2 * READ_CHUNK, "{}", rx.rbuf.len());
    }
}
