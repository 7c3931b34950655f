//! Control clients (iscsictl): one imsg channel each. Requests that change
//! state need root, checked with the peer's credentials.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Instant;

use common::config::{SessionType, Target};
use common::ctl::{self, kind, DiscoverRequest, PollResult};
use common::imsg::{Error as ImsgError, Imsg, ImsgBuf};
use log::{info, warn};
use mio::unix::SourceFd;
use mio::{Interest, Token};
use proto::discovery::TargetRecord;
use proto::initiator::ClientId;

use super::{convert, Engine};

/// Reply bytes a control client may leave unread.
const CLIENT_QUEUE_MAX: usize = 16 << 20;
/// Control clients at once; more are turned away (each may hold a reply
/// queue of up to CLIENT_QUEUE_MAX while it reads slowly).
pub const MAX_CLIENTS: usize = 64;

pub struct Client {
    pub ib: ImsgBuf,
    pub uid: u32,
}

/// The peer's effective uid (SO_PEERCRED on Linux, getpeereid(2) elsewhere).
fn peer_uid(fd: impl AsFd) -> io::Result<u32> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let c = nix::sys::socket::getsockopt(&fd, nix::sys::socket::sockopt::PeerCredentials)?;
        Ok(c.uid())
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let (uid, _) = nix::unistd::getpeereid(fd)?;
        Ok(uid.as_raw())
    }
}

impl Engine {
    pub(super) fn accept(&mut self) {
        loop {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!("control accept: {e}");
                    return;
                }
            };
            if self.clients.len() >= MAX_CLIENTS {
                // Dropping the stream closes it: the client sees EOF.
                if !self.clients_full {
                    warn!("control: {MAX_CLIENTS} clients connected, refusing more");
                    self.clients_full = true;
                }
                continue;
            }
            let fd: OwnedFd = stream.into();
            let uid = match peer_uid(&fd) {
                Ok(u) => u,
                Err(e) => {
                    warn!("control: peer credentials: {e}");
                    continue;
                }
            };
            let mut ib = ImsgBuf::new(fd);
            ib.set_max_size(ctl::MAX_MSG);
            // Clients have nothing to pass us; and the pledged engine would
            // be killed for receiving a descriptor.
            ib.refuse_fds();
            let t = self.token();
            if let Err(e) = self.poll.registry().register(
                &mut SourceFd(&ib.as_fd().as_raw_fd()),
                t,
                Interest::READABLE | Interest::WRITABLE,
            ) {
                warn!("control: register: {e}");
                continue;
            }
            self.clients.insert(t, Client { ib, uid });
        }
    }

    pub(super) fn client_event(&mut self, t: Token, readable: bool, now: Instant) {
        let mut msgs = Vec::new();
        let mut close = false;
        if let Some(c) = self.clients.get_mut(&t) {
            // Only a readable client gets a read buffer: one that connects
            // and waits costs next to nothing.
            if readable {
                loop {
                    match c.ib.read() {
                        Ok(0) => {
                            close = true;
                            break;
                        }
                        Ok(_) => {}
                        Err(ImsgError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            warn!("control client: {e}");
                            close = true;
                            break;
                        }
                    }
                }
            }
            loop {
                match c.ib.get() {
                    Ok(Some(m)) => msgs.push(m),
                    Ok(None) => break,
                    Err(e) => {
                        // Garbage framing: this client is done, the daemon is not.
                        warn!("control client: {e}");
                        close = true;
                        break;
                    }
                }
            }
        }
        for m in msgs {
            self.request(t, m, now);
        }
        if let Some(c) = self.clients.get_mut(&t) {
            let _ = c.ib.flush();
            c.ib.release_idle();
            // A client that asks and never reads does not get to grow our
            // memory without end.
            if c.ib.queued() > CLIENT_QUEUE_MAX {
                warn!("control client does not read its replies, closing it");
                close = true;
            }
        }
        if close {
            if let Some(c) = self.clients.remove(&t) {
                let _ = self
                    .poll
                    .registry()
                    .deregister(&mut SourceFd(&c.ib.as_fd().as_raw_fd()));
            }
            self.init.client_gone(client_id(t));
            if self.clients.is_empty() {
                // After a burst of clients, their buffers go back to the
                // system rather than stay in the allocator's cache.
                self.clients_full = false;
                crate::malloc::release();
            }
        }
    }

    pub(super) fn reply(&mut self, t: Token, k: u32, data: &[u8]) {
        if let Some(c) = self.clients.get_mut(&t) {
            if let Err(e) = c.ib.compose(k, 0, 0, data, None) {
                warn!("control reply: {e}");
            }
            let _ = c.ib.flush();
        }
    }

    pub(super) fn reply_fail(&mut self, t: Token, msg: &str) {
        self.reply(t, kind::FAIL, msg.as_bytes());
    }

    fn request(&mut self, t: Token, m: Imsg, now: Instant) {
        let uid = self.clients.get(&t).map_or(u32::MAX, |c| c.uid);
        if ctl::needs_root(m.kind) && uid != 0 {
            warn!("control: uid {uid} may not send request {}", m.kind);
            return self.reply_fail(t, "permission denied: only root may change iscsid's state");
        }
        match m.kind {
            kind::RELOAD => match ctl::decode_config(&m.data) {
                Ok(cfg) => match self.init.reload(convert::initiator_config(&cfg), now) {
                    Ok(report) => {
                        let r = convert::reload_result(&report);
                        self.reply(t, kind::RELOAD_RESULT, &r.encode());
                    }
                    Err(e) => self.reply_fail(t, &e.to_string()),
                },
                Err(e) => self.reply_fail(t, &e.to_string()),
            },
            kind::SHOW => {
                let infos: Vec<Vec<u8>> = self
                    .init
                    .status(now)
                    .into_iter()
                    .map(|s| convert::session_info(s).encode())
                    .collect();
                for i in infos {
                    self.reply(t, kind::SESSION, &i);
                }
                self.reply(t, kind::END, &[]);
            }
            kind::VSCSI_STATS => {
                let s = self.stats.encode();
                self.reply(t, kind::STATS, &s);
            }
            kind::POLL => {
                let p = self.poll_result().encode();
                self.reply(t, kind::POLL_RESULT, &p);
            }
            kind::LOG_VERBOSE => match ctl::decode_bool(&m.data) {
                Ok(v) => {
                    common::log::set_verbose(v);
                    info!("verbose logging {}", if v { "on" } else { "off" });
                    self.reply(t, kind::OK, &[]);
                }
                Err(e) => self.reply_fail(t, &e.to_string()),
            },
            kind::DISCOVER => match DiscoverRequest::decode(&m.data) {
                Ok(d) => self.discover(t, d, now),
                Err(e) => self.reply_fail(t, &e.to_string()),
            },
            k => {
                warn!("control: unknown request {k}");
                self.reply_fail(t, &format!("unknown request {k}"));
            }
        }
    }

    fn poll_result(&self) -> PollResult {
        let c = self.init.counts();
        PollResult {
            sessions: c.sessions,
            disabled: c.disabled,
            logged_in: c.logged_in,
            failed: c.failed,
            connecting: c.connecting,
        }
    }

    /// `iscsictl discover`: a one-off discovery session whose results go
    /// back to the client.
    fn discover(&mut self, t: Token, d: DiscoverRequest, now: Instant) {
        let cfg = Target {
            name: String::new(),
            line: 0,
            disabled: false,
            session_type: SessionType::Discovery,
            targetname: None,
            initiatorname: d.initiatorname,
            targetaddr: Some(d.addr),
            initiatoraddr: None,
            params: d.params,
        };
        if let Err(e) = self.init.discover(client_id(t), convert::target(&cfg), now) {
            self.reply_fail(t, &e.to_string());
        }
    }

    /// A one-off discovery's answer.
    pub(super) fn discovered(&mut self, client: ClientId, recs: Vec<TargetRecord>) {
        let t = Token(client.0 as usize);
        for r in &recs {
            let d = ctl::Discovered {
                targetname: r.name.clone(),
                addresses: r.addresses.clone(),
            };
            self.reply(t, kind::DISCOVERED, &d.encode());
        }
        self.reply(t, kind::END, &[]);
    }
}

/// Control clients are named to the core by their poll token.
fn client_id(t: Token) -> ClientId {
    ClientId(t.0 as u64)
}
