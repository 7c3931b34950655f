//! The relay's end of the vscsi emulator socket (`iscsid -n PATH`).
//!
//! Each `Device` call maps to the message of the same ioctl. Only
//! `data_write` waits for an answer, as `VSCSI_DATA_WRITE` returns data;
//! the other calls are writes that never drop bytes.
//!
//! Commands that arrive while `data_write` waits for its answer are queued
//! and handed out by later `i2t` calls. Their bytes have left the socket,
//! so it may no longer poll readable: a relay on an edge-triggered loop
//! should drain `i2t` after a burst of `data_write`s (`pending()` says
//! whether any are queued).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{sendmsg, MsgFlags, UnixAddr};

use super::emuproto::{self, data_header, Decoder, Msg, MsgType, WriteErrno, MAX_DATA};
use super::{DevError, Device, I2t, Status, SENSE_LEN};

/// How long a DATA_WRITE answer or a blocked write may take before the
/// emulator is taken for dead.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The emulator device, as the relay sees it.
pub struct EmuDev {
    sock: UnixStream,
    dec: Decoder,
    queue: VecDeque<I2t>,
    scratch: Vec<u8>,
    timeout: Duration,
}

impl EmuDev {
    /// Takes a connected unix stream socket and makes it non-blocking.
    pub fn new(fd: OwnedFd) -> Result<EmuDev, DevError> {
        let sock = UnixStream::from(fd);
        sock.set_nonblocking(true)?;
        Ok(EmuDev {
            sock,
            dec: Decoder::new(),
            queue: VecDeque::new(),
            scratch: Vec::with_capacity(64),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Changes the wait limit (`DEFAULT_TIMEOUT`).
    pub fn set_timeout(&mut self, t: Duration) {
        self.timeout = t;
    }

    /// Whether commands read during a `data_write` wait for `i2t`.
    pub fn pending(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Waits for `events` on the socket until `deadline`.
    fn wait(&self, events: PollFlags, deadline: Instant) -> Result<(), DevError> {
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
                Ok(_) => return Ok(()),
                Err(e) => return Err(DevError::Io(e.into())),
            }
        }
    }

    /// Writes every byte of `parts` in order, waiting out a full socket.
    fn send(&self, parts: &[&[u8]]) -> Result<(), DevError> {
        let mut idx = 0;
        let mut off = 0;
        let mut deadline = None;
        loop {
            // Skip what is done (and empty parts, which would send nothing).
            while idx < parts.len() && parts[idx].len() <= off {
                idx += 1;
                off = 0;
            }
            if idx == parts.len() {
                return Ok(());
            }
            let mut iov: [IoSlice<'_>; 2] = [IoSlice::new(&[]), IoSlice::new(&[])];
            let mut n = 0;
            for (i, p) in parts.iter().enumerate().skip(idx).take(iov.len()) {
                let from = if i == idx { off } else { 0 };
                iov[n] = IoSlice::new(p.get(from..).unwrap_or(&[]));
                n += 1;
            }
            let r = sendmsg::<UnixAddr>(
                self.sock.as_raw_fd(),
                &iov[..n],
                &[],
                MsgFlags::MSG_NOSIGNAL,
                None,
            );
            let mut sent = match r {
                Ok(s) => s,
                Err(Errno::EAGAIN) => {
                    let d = *deadline.get_or_insert_with(|| Instant::now() + self.timeout);
                    self.wait(PollFlags::POLLOUT, d)?;
                    continue;
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EPIPE | Errno::ECONNRESET) => return Err(DevError::Closed),
                Err(e) => return Err(DevError::Io(e.into())),
            };
            // Progress restarts the clock: only a stalled peer times out.
            deadline = None;
            while sent > 0 && idx < parts.len() {
                let left = parts[idx].len() - off;
                if sent >= left {
                    sent -= left;
                    idx += 1;
                    off = 0;
                } else {
                    off += sent;
                    sent = 0;
                }
            }
        }
    }

    fn send_msg(&mut self, m: &Msg<&[u8]>) -> Result<(), DevError> {
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        let r = emuproto::encode(m, &mut buf)
            .map_err(|e| DevError::Protocol(e.as_str()))
            .and_then(|()| self.send(&[&buf]));
        self.scratch = buf;
        r
    }

    /// One non-blocking read into the decoder. `Ok(false)` on EAGAIN.
    fn fill(&mut self) -> Result<bool, DevError> {
        loop {
            match self.dec.read_from(&mut (&self.sock)) {
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

    /// Sends one DATA_WRITE for `buf.len()` bytes and waits for its answer.
    fn data_write_piece(&mut self, tag: u32, buf: &mut [u8]) -> Result<(), DevError> {
        // MAX_DATA < u32::MAX, and callers split on it.
        let len = u32::try_from(buf.len()).map_err(|_| DevError::TooMuchData(tag))?;
        self.send_msg(&Msg::DataWrite { tag, len })?;
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.dec.next_msg() {
                Err(e) => return Err(DevError::Protocol(e.as_str())),
                Ok(Some(Msg::I2t(c))) => self.queue.push_back(c),
                Ok(Some(Msg::WriteData { tag: t, data })) => {
                    if t != tag {
                        return Err(DevError::Protocol("WRITE_DATA for another tag"));
                    }
                    if data.len() != buf.len() {
                        return Err(DevError::Protocol("WRITE_DATA of the wrong length"));
                    }
                    buf.copy_from_slice(data);
                    return Ok(());
                }
                Ok(Some(Msg::WriteErr { tag: t, err })) => {
                    if t != tag {
                        return Err(DevError::Protocol("WRITE_ERR for another tag"));
                    }
                    return Err(match err {
                        WriteErrno::Fault => DevError::UnknownTag(tag),
                        WriteErrno::NoMem => DevError::TooMuchData(tag),
                        WriteErrno::Inval => DevError::WrongDirection(tag),
                    });
                }
                Ok(Some(_)) => return Err(DevError::Protocol("unexpected message")),
                Ok(None) => {
                    if !self.fill()? {
                        self.wait(PollFlags::POLLIN, deadline)?;
                    }
                }
            }
        }
    }
}

impl Device for EmuDev {
    fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    fn i2t(&mut self) -> Result<Option<I2t>, DevError> {
        if let Some(c) = self.queue.pop_front() {
            return Ok(Some(c));
        }
        loop {
            match self.dec.next_msg() {
                Err(e) => return Err(DevError::Protocol(e.as_str())),
                Ok(Some(Msg::I2t(c))) => return Ok(Some(c)),
                Ok(Some(_)) => return Err(DevError::Protocol("unexpected message")),
                Ok(None) => {}
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    fn data_write(&mut self, tag: u32, buf: &mut [u8]) -> Result<(), DevError> {
        if buf.is_empty() {
            // Still asked: the emulator checks tag and direction as the
            // kernel does for a zero-length ioctl.
            return self.data_write_piece(tag, buf);
        }
        for piece in buf.chunks_mut(MAX_DATA) {
            self.data_write_piece(tag, piece)?;
        }
        Ok(())
    }

    fn data_read(&mut self, tag: u32, buf: &[u8]) -> Result<(), DevError> {
        if buf.is_empty() {
            let h = data_header(MsgType::DataRead, tag, 0)
                .map_err(|e| DevError::Protocol(e.as_str()))?;
            return self.send(&[&h]);
        }
        for piece in buf.chunks(MAX_DATA) {
            let h = data_header(MsgType::DataRead, tag, piece.len())
                .map_err(|e| DevError::Protocol(e.as_str()))?;
            self.send(&[&h, piece])?;
        }
        Ok(())
    }

    fn t2i(&mut self, tag: u32, status: Status, sense: &[u8]) -> Result<(), DevError> {
        let mut s = [0u8; SENSE_LEN];
        let n = sense.len().min(SENSE_LEN);
        s[..n].copy_from_slice(&sense[..n]);
        self.send_msg(&Msg::T2i {
            tag,
            status,
            sense: s,
        })
    }

    fn probe(&mut self, target: i32, lun: i32) -> Result<(), DevError> {
        self.send_msg(&Msg::Probe { target, lun })
    }

    fn detach(&mut self, target: i32, lun: i32) -> Result<(), DevError> {
        self.send_msg(&Msg::Detach { target, lun })
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
        assert!(matches!(
            dev.data_write(5, &mut [0u8; 8]),
            Err(DevError::Protocol(_))
        ));
        let (mut dev, mut emu) = pair();
        emu.write_all(&frame(&Msg::Probe { target: 0, lun: 0 }))
            .unwrap();
        assert!(matches!(
            dev.data_write(5, &mut [0u8; 8]),
            Err(DevError::Protocol(_))
        ));
    }

    #[test]
    fn data_write_times_out_and_eof_is_closed() {
        let (mut dev, emu) = pair();
        dev.set_timeout(Duration::from_millis(50));
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
                    lun: -1
                },
            ]
        );
    }

    #[test]
    fn send_skips_empty_parts() {
        let (dev, mut emu) = pair();
        dev.send(&[&[], &[1, 2], &[], &[3]]).unwrap();
        dev.send(&[&[], &[]]).unwrap();
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
}
