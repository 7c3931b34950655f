//! ImsgBuf::get on arbitrary bytes written into one end of a socketpair,
//! some writes carrying a descriptor. Every message returned must be
//! exactly the frame at that point of the byte stream, and framing errors
//! must stick.
#![no_main]

use std::fs::File;
use std::io::{ErrorKind, IoSlice};
use std::os::fd::AsRawFd;

use common::imsg::{Error, Header, ImsgBuf, FD_MARK, HEADER_SIZE};
use iscsid_fuzz::Cursor;
use libfuzzer_sys::fuzz_target;
use nix::sys::socket::{
    sendmsg, socketpair, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType,
};

/// What the reader has seen so far.
struct Reader {
    buf: ImsgBuf,
    /// Every byte written, in order.
    stream: Vec<u8>,
    /// Offset in `stream` of the next message.
    off: usize,
    broken: bool,
}

impl Reader {
    fn drain(&mut self) {
        while !self.broken {
            match self.buf.get() {
                Ok(Some(m)) => {
                    let hb: [u8; HEADER_SIZE] = self.stream[self.off..self.off + HEADER_SIZE]
                        .try_into()
                        .expect("header");
                    let h = Header::from_bytes(&hb);
                    let len = h.frame_len();
                    assert!(len >= HEADER_SIZE && len <= self.buf.max_size());
                    assert_eq!((m.kind, m.peerid, m.pid), (h.kind, h.peerid, h.pid));
                    assert_eq!(m.data, self.stream[self.off + HEADER_SIZE..self.off + len]);
                    assert_eq!(m.fd.is_some(), h.len & FD_MARK != 0);
                    self.off += len;
                }
                Ok(None) => return,
                Err(Error::MissingFd) => {
                    let hb: [u8; HEADER_SIZE] = self.stream[self.off..self.off + HEADER_SIZE]
                        .try_into()
                        .expect("header");
                    self.off += Header::from_bytes(&hb).frame_len();
                }
                Err(e @ (Error::TooShort { .. } | Error::TooLarge { .. })) => {
                    let again = self.buf.get();
                    assert!(
                        matches!(
                            (&e, &again),
                            (Error::TooShort { .. }, Err(Error::TooShort { .. }))
                                | (Error::TooLarge { .. }, Err(Error::TooLarge { .. }))
                        ),
                        "framing error {e} did not stick: {again:?}"
                    );
                    self.broken = true;
                }
                Err(e) => panic!("unexpected error from get: {e}"),
            }
        }
    }

    /// Reads whatever the socket holds, draining after each read.
    fn pump(&mut self) {
        loop {
            match self.buf.read() {
                Ok(0) => return,
                Ok(_) => self.drain(),
                Err(Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => return,
                Err(Error::ControlTruncated) => return,
                Err(e) => panic!("read: {e}"),
            }
            if self.broken {
                return;
            }
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let mut c = Cursor::new(input);
    let max = [16usize, 64, 16384, 1 << 20][usize::from(c.u8() & 3)];
    let Ok((w, r)) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
    ) else {
        return;
    };
    let devnull = File::open("/dev/null").expect("/dev/null");
    let mut rd = Reader {
        buf: ImsgBuf::new(r),
        stream: Vec::new(),
        off: 0,
        broken: false,
    };
    rd.buf.set_max_size(max);
    while !c.is_empty() && !rd.broken {
        let ctl = c.u8();
        let len = usize::from(c.u16() & 0x3fff);
        let bytes = c.take(len);
        if bytes.is_empty() {
            continue;
        }
        let fds = [devnull.as_raw_fd()];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        let iov = [IoSlice::new(bytes)];
        let cmsgs: &[ControlMessage] = if ctl & 1 != 0 { &cmsg } else { &[] };
        match sendmsg::<()>(w.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(n) => rd.stream.extend_from_slice(&bytes[..n]),
            Err(_) => break,
        }
        rd.pump();
    }
    drop(w);
    rd.pump();
    let _ = rd.buf.eof_pending();
});
