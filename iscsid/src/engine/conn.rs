//! The TCP connections to targets: connect, read into the core's buffer,
//! write what it has queued, and report how each ended.

use std::io::{self, IoSlice, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;

use log::warn;
use mio::net::TcpStream;
use mio::{Interest, Token};
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrStorage};
use proto::initiator::{CloseCause, ConnId};

use super::Engine;

/// Bytes asked of the core per read: a connection starts small (an idle
/// session should cost little memory) and doubles its reads while they
/// come back full, up to the largest, for few syscalls under load. The
/// core offers more when a PDU being received needs more.
const RX_MIN: usize = 16 * 1024;
const RX_MAX: usize = 256 * 1024;

/// Slices per writev(2): headers and write data of up to 32 PDUs. Well
/// under IOV_MAX (1024 on OpenBSD and Linux).
const TX_IOV: usize = 64;

pub struct Socket {
    pub stream: TcpStream,
    pub conn: ConnId,
    /// connect(2) has finished.
    pub connected: bool,
    /// How much the next read asks for.
    pub rx_want: usize,
    /// Registered for writable events too: while connecting, and while
    /// bytes wait for room. Otherwise every ACK that frees send buffer
    /// would wake the loop for nothing.
    pub writable: bool,
}

fn cause(e: &io::Error) -> CloseCause {
    CloseCause::from_kind(e.kind())
}

impl Engine {
    pub(super) fn connect(
        &mut self,
        conn: ConnId,
        addr: SocketAddr,
        local: Option<IpAddr>,
        now: Instant,
    ) {
        let mut stream = match tcp_connect(addr, local) {
            Ok(s) => s,
            Err(e) => return self.init.closed(conn, cause(&e), now),
        };
        let token = self.token();
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            warn!("register: {e}");
            return self.init.closed(conn, cause(&e), now);
        }
        self.sockets.insert(
            token,
            Socket {
                stream,
                conn,
                connected: false,
                rx_want: RX_MIN,
                writable: true,
            },
        );
        self.conn_tokens.insert(conn, token);
    }

    /// The core is done with the connection.
    pub(super) fn drop_conn(&mut self, conn: ConnId) {
        if let Some(t) = self.conn_tokens.remove(&conn) {
            if let Some(mut s) = self.sockets.remove(&t) {
                let _ = self.poll.registry().deregister(&mut s.stream);
            }
        }
    }

    /// The socket failed or hit EOF: forget it and tell the core.
    fn lost(&mut self, conn: ConnId, why: CloseCause, now: Instant) {
        self.drop_conn(conn);
        self.init.closed(conn, why, now);
    }

    /// Readiness on a target connection.
    pub(super) fn socket_event(&mut self, token: Token, now: Instant) {
        let Some(s) = self.sockets.get_mut(&token) else {
            return;
        };
        let conn = s.conn;
        if !s.connected {
            match s.stream.take_error() {
                Ok(Some(e)) | Err(e) => return self.lost(conn, cause(&e), now),
                Ok(None) => {}
            }
            match s.stream.peer_addr() {
                Ok(_) => {
                    s.connected = true;
                    let _ = s.stream.set_nodelay(true);
                    self.init.connected(conn, now);
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => return self.lost(conn, cause(&e), now),
            }
        }
        // Read until the socket is drained; the core refuses room while too
        // much waits to be sent, and the writable event brings us back.
        loop {
            let mut drained = false;
            loop {
                let Some(s) = self.sockets.get_mut(&token) else {
                    return;
                };
                let Some(buf) = self.init.rx_space(conn, s.rx_want) else {
                    break;
                };
                let room = buf.len();
                match s.stream.read(buf) {
                    Ok(0) => return self.lost(conn, CloseCause::Eof, now),
                    Ok(n) => {
                        if n == room {
                            s.rx_want = (s.rx_want * 2).min(RX_MAX);
                        }
                        let mut place = super::SlotPlacement {
                            arena: &mut self.arena,
                            slots: &self.slots,
                        };
                        self.init.rx_filled_with(conn, n, now, &mut place);
                        // A short read drained the socket; readiness is
                        // edge-triggered, so new bytes bring a new event
                        // and an EAGAIN read would only cost a syscall.
                        if n < room {
                            drained = true;
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        drained = true;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return self.lost(conn, cause(&e), now),
                }
            }
            if !self.flush_conn(conn, now) || drained || self.init.rx_space(conn, 0).is_none() {
                return;
            }
        }
    }

    /// Writes what the core has queued; false if the connection is gone.
    pub(super) fn flush_conn(&mut self, conn: ConnId, now: Instant) -> bool {
        let Some(&token) = self.conn_tokens.get(&conn) else {
            return false;
        };
        let Some(s) = self.sockets.get_mut(&token) else {
            return false;
        };
        if !s.connected {
            return true;
        }
        loop {
            let mut iov = [IoSlice::new(&[]); TX_IOV];
            let n = self.init.tx_slices(conn, &mut iov);
            if n == 0 {
                if s.writable {
                    s.writable = false;
                    let _ =
                        self.poll
                            .registry()
                            .reregister(&mut s.stream, token, Interest::READABLE);
                }
                return true;
            }
            match s.stream.write_vectored(&iov[..n]) {
                Ok(0) => {
                    self.lost(conn, CloseCause::Other(io::ErrorKind::WriteZero), now);
                    return false;
                }
                Ok(n) => self.init.tx_advance(conn, n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !s.writable {
                        s.writable = true;
                        let interest = Interest::READABLE | Interest::WRITABLE;
                        let r = self
                            .poll
                            .registry()
                            .reregister(&mut s.stream, token, interest);
                        if let Err(e) = r {
                            self.lost(conn, cause(&e), now);
                            return false;
                        }
                    }
                    return true;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.lost(conn, cause(&e), now);
                    return false;
                }
            }
        }
    }
}

/// A non-blocking connect, bound to `local` first if configured.
fn tcp_connect(addr: SocketAddr, local: Option<IpAddr>) -> io::Result<TcpStream> {
    let Some(local) = local else {
        return TcpStream::connect(addr);
    };
    let fam = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd: OwnedFd = socket::socket(
        fam,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    socket::bind(
        fd.as_raw_fd(),
        &SockaddrStorage::from(SocketAddr::new(local, 0)),
    )?;
    match socket::connect(fd.as_raw_fd(), &SockaddrStorage::from(addr)) {
        Ok(()) | Err(nix::Error::EINPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(TcpStream::from_std(std::net::TcpStream::from(fd)))
}
