//! The emulator's write side of the device socket.
//!
//! Many threads submit commands at once. Their small frames are queued and
//! written by whichever thread finds the socket idle, so a burst of
//! submissions shares write(2) calls instead of taking turns on a lock.
//! The reader holds the writer while it applies a batch of messages, and
//! writes bulk data (WRITE_DATA) from where it lies, after what is queued,
//! without a copy.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Condvar, Mutex};

use nix::errno::Errno;
use nix::sys::socket::{sendmsg, MsgFlags, UnixAddr};
use std::io::IoSlice;

use super::sem::lock;

struct State {
    queued: Vec<u8>,
    spare: Vec<u8>,
    busy: bool,
    broken: bool,
}

pub(crate) struct Writer {
    sock: UnixStream,
    st: Mutex<State>,
    idle: Condvar,
}

fn broken_pipe() -> io::Error {
    io::ErrorKind::BrokenPipe.into()
}

/// Writes every byte of `parts` in order on a blocking socket. A send
/// timeout (SO_SNDTIMEO) surfaces as EAGAIN and ends the attempt: the frame
/// is then cut and the connection must go.
fn write_all(sock: &UnixStream, parts: &[&[u8]]) -> io::Result<()> {
    let mut idx = 0;
    let mut off = 0;
    loop {
        while idx < parts.len() && parts[idx].len() <= off {
            idx += 1;
            off = 0;
        }
        if idx == parts.len() {
            return Ok(());
        }
        let mut iov = [IoSlice::new(&[]); 4];
        let mut n = 0;
        for (i, p) in parts.iter().enumerate().skip(idx).take(iov.len()) {
            iov[n] = IoSlice::new(p.get(if i == idx { off } else { 0 }..).unwrap_or(&[]));
            n += 1;
        }
        let sent = match sendmsg::<UnixAddr>(
            sock.as_raw_fd(),
            &iov[..n],
            &[],
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(s) => s,
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Err(io::ErrorKind::TimedOut.into()),
            Err(e) => return Err(e.into()),
        };
        let mut sent = sent;
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

impl Writer {
    pub(crate) fn new(sock: UnixStream) -> Writer {
        Writer {
            sock,
            st: Mutex::new(State {
                queued: Vec::with_capacity(4096),
                spare: Vec::with_capacity(4096),
                busy: false,
                broken: false,
            }),
            idle: Condvar::new(),
        }
    }

    /// Queues a small frame; writes it (and whatever else is queued) unless
    /// another thread is already writing and will pick it up.
    pub(crate) fn send_small(&self, frame: &[u8]) -> io::Result<()> {
        let mut st = lock(&self.st);
        if st.broken {
            return Err(broken_pipe());
        }
        st.queued.extend_from_slice(frame);
        if st.busy {
            return Ok(());
        }
        st.busy = true;
        drop(st);
        self.flush(&[])
    }

    /// Makes the calling thread the writer until `release`: small frames
    /// sent meanwhile, by any thread, queue up and leave in one write. The
    /// reader holds the writer while it applies a batch of messages, so the
    /// commands their completions start share a write(2).
    pub(crate) fn hold(&self) {
        let mut st = lock(&self.st);
        while st.busy && !st.broken {
            st = self.idle.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.busy = true;
    }

    /// Ends `hold`: writes what queued up and lets other writers in.
    pub(crate) fn release(&self) -> io::Result<()> {
        self.flush(&[])
    }

    /// For the thread that holds the writer: writes what is queued, then
    /// `hdr` and `data`, and keeps holding.
    pub(crate) fn send_data_held(&self, hdr: &[u8], data: &[u8]) -> io::Result<()> {
        if lock(&self.st).broken {
            return Err(broken_pipe());
        }
        self.write_queued(&[hdr, data])
    }

    /// Runs as the one busy writer until the queue is empty. The queue is
    /// looked at again under the lock that gives up `busy`: a frame queued
    /// after the last write (its sender saw `busy` and left it to us)
    /// would otherwise wait until some other frame came along.
    fn flush(&self, extra: &[&[u8]]) -> io::Result<()> {
        let mut extra = extra;
        let res = loop {
            let res = self.write_queued(extra);
            extra = &[];
            let mut st = lock(&self.st);
            if res.is_err() || st.queued.is_empty() {
                st.busy = false;
                break res;
            }
        };
        self.idle.notify_all();
        res
    }

    /// Writes the queue (and then `extra`) until it is empty; the caller
    /// is the busy writer and stays so.
    fn write_queued(&self, extra: &[&[u8]]) -> io::Result<()> {
        let mut extra = extra;
        let mut st = lock(&self.st);
        loop {
            if st.queued.is_empty() && extra.is_empty() {
                return Ok(());
            }
            let fresh = std::mem::take(&mut st.spare);
            let batch = std::mem::replace(&mut st.queued, fresh);
            drop(st);
            let mut parts: [&[u8]; 3] = [&batch, &[], &[]];
            for (slot, e) in parts.iter_mut().skip(1).zip(extra) {
                *slot = e;
            }
            let r = write_all(&self.sock, &parts);
            extra = &[];
            st = lock(&self.st);
            let mut batch = batch;
            batch.clear();
            st.spare = batch;
            if let Err(e) = r {
                st.broken = true;
                return Err(e);
            }
        }
    }

    /// Fails every later send (the connection is going away).
    pub(crate) fn set_broken(&self) {
        lock(&self.st).broken = true;
        self.idle.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn concurrent_frames_arrive_whole_and_in_per_thread_order() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let w = Arc::new(Writer::new(a));
        let hs: Vec<_> = (0..8u8)
            .map(|t| {
                let w = Arc::clone(&w);
                thread::spawn(move || {
                    for i in 0..500u16 {
                        let [hi, lo] = i.to_be_bytes();
                        // A 40-byte "frame": thread id, sequence, filler.
                        let mut f = vec![t, hi, lo];
                        f.resize(40, t);
                        if i % 50 == 0 {
                            w.hold();
                            w.send_data_held(&f[..3], &f[3..]).unwrap();
                            w.release().unwrap();
                        } else {
                            w.send_small(&f).unwrap();
                        }
                    }
                })
            })
            .collect();
        let total = 8 * 500 * 40;
        let mut got = vec![0u8; total];
        b.read_exact(&mut got).unwrap();
        for h in hs {
            h.join().unwrap();
        }
        let mut next = [0u16; 8];
        for f in got.chunks(40) {
            let t = usize::from(f[0]);
            assert!(f[3..].iter().all(|&x| usize::from(x) == t), "torn frame");
            assert_eq!(u16::from_be_bytes([f[1], f[2]]), next[t]);
            next[t] += 1;
        }
        assert_eq!(next, [500; 8]);
    }

    #[test]
    fn held_writer_batches_until_release() {
        let (a, mut b) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let w = Arc::new(Writer::new(a));
        w.hold();
        let w2 = Arc::clone(&w);
        // Another thread's frame queues instead of waiting for the holder.
        thread::spawn(move || w2.send_small(b"one").unwrap())
            .join()
            .unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(
            b.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        // Bulk data from the holder goes out at once, after what queued.
        w.send_data_held(b"H", b"data").unwrap();
        w.send_small(b"two").unwrap();
        let n = b.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"oneHdata");
        w.release().unwrap();
        let n = b.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"two");
        // Released: the next holder does not wait forever.
        w.hold();
        w.send_data_held(b"x", b"y").unwrap();
        w.release().unwrap();
        let n = b.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"xy");
        w.set_broken();
        assert!(w.send_data_held(b"x", b"y").is_err());
    }

    #[test]
    fn broken_writer_refuses() {
        let (a, b) = UnixStream::pair().unwrap();
        let w = Writer::new(a);
        drop(b);
        // The peer is gone: EPIPE, no SIGPIPE.
        let mut failed = false;
        for _ in 0..4 {
            if w.send_small(&[0; 64]).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed);
        w.hold();
        assert!(w.send_data_held(&[1], &[2]).is_err());
        assert!(w.release().is_ok());
        let (c, _d) = UnixStream::pair().unwrap();
        let w = Writer::new(c);
        w.set_broken();
        assert!(w.send_small(&[0]).is_err());
    }
}
