//! Control clients (iscsictl): one imsg channel each. Requests that change
//! state need root, checked with the peer's credentials.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Instant;

use common::config::{SessionType, Target};
use common::ctl::{self, kind, DiscoverRequest, PollResult, SessionState};
use common::imsg::{Error as ImsgError, Imsg, ImsgBuf};
use log::{debug, info, warn};
use mio::unix::SourceFd;
use mio::{Interest, Token};

use super::{Engine, Sess};
use proto::discovery::{self, TargetRecord};

/// Reply bytes a control client may leave unread.
const CLIENT_QUEUE_MAX: usize = 16 << 20;

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

    pub(super) fn client_event(&mut self, t: Token, now: Instant) {
        let mut msgs = Vec::new();
        let mut close = false;
        if let Some(c) = self.clients.get_mut(&t) {
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
            for s in &mut self.sessions {
                if s.waiter == Some(t) {
                    s.waiter = None;
                }
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
                Ok(cfg) => {
                    self.reload(cfg, now);
                    self.reply(t, kind::OK, &[]);
                }
                Err(e) => self.reply_fail(t, &e.to_string()),
            },
            kind::SHOW => {
                let infos: Vec<Vec<u8>> = self
                    .sessions
                    .iter()
                    .map(|s| s.info(&self.initiatorname).encode())
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
                Ok(d) => self.discover(t, d),
                Err(e) => self.reply_fail(t, &e.to_string()),
            },
            k => {
                warn!("control: unknown request {k}");
                self.reply_fail(t, &format!("unknown request {k}"));
            }
        }
    }

    fn poll_result(&self) -> PollResult {
        let mut p = PollResult::default();
        for s in self.sessions.iter().filter(|s| !s.oneoff) {
            p.sessions += 1;
            match s.state {
                SessionState::Disabled => p.disabled += 1,
                SessionState::LoggedIn | SessionState::Done => p.logged_in += 1,
                SessionState::Failed => p.failed += 1,
                _ => p.connecting += 1,
            }
        }
        p
    }

    /// `iscsictl discover`: a one-off discovery session whose results go
    /// back to the client.
    fn discover(&mut self, t: Token, d: DiscoverRequest) {
        let name = format!("discover {}", d.addr);
        if self.sessions.iter().any(|s| s.name == name) {
            return self.reply_fail(t, "a discovery of this portal is already running");
        }
        let cfg = Target {
            name: name.clone(),
            line: 0,
            disabled: false,
            session_type: SessionType::Discovery,
            targetname: None,
            initiatorname: d.initiatorname,
            targetaddr: Some(d.addr),
            initiatoraddr: None,
            params: d.params,
        };
        let mut s = Sess::new(cfg, self.isid_for(None), None);
        s.waiter = Some(t);
        s.oneoff = true;
        debug!("{name}: starting");
        self.sessions.push(s);
    }

    /// SendTargets answered: report to the waiting client, or, for a
    /// discovery entry of iscsi.conf, create the sessions it found.
    pub(super) fn discovered(&mut self, i: usize, recs: Vec<TargetRecord>, now: Instant) {
        if let Some(w) = self.sessions[i].waiter.take() {
            for r in &recs {
                let d = ctl::Discovered {
                    targetname: r.name.clone(),
                    addresses: r.addresses.clone(),
                };
                self.reply(w, kind::DISCOVERED, &d.encode());
            }
            self.reply(w, kind::END, &[]);
            return;
        }
        // A one-off discovery whose client went away reports to nobody and
        // never logs in anywhere.
        if self.sessions[i].oneoff {
            return;
        }
        let parent = self.sessions[i].cfg.clone();
        for r in recs {
            let exists = self.sessions.iter().any(|s| {
                s.cfg.session_type == SessionType::Normal
                    && s.cfg.targetname.as_deref() == Some(r.name.as_str())
            });
            if exists {
                continue;
            }
            let addr = r
                .addresses
                .iter()
                .find_map(|a| discovery::parse_address(a))
                .or(parent.targetaddr);
            let cfg = Target {
                name: format!("{}/{}", parent.name, r.name),
                line: parent.line,
                disabled: false,
                session_type: SessionType::Normal,
                targetname: Some(r.name.clone()),
                initiatorname: parent.initiatorname.clone(),
                targetaddr: addr,
                initiatoraddr: parent.initiatoraddr,
                params: parent.params.clone(),
            };
            let Some(vt) = self.alloc_target() else {
                warn!("{}: no free vscsi target for {}", parent.name, r.name);
                continue;
            };
            let mut s = Sess::new(cfg, self.isid_for(Some(vt)), Some(vt));
            s.parent = Some(parent.name.clone());
            s.retry_at = Some(now);
            info!("{}: adding session for {}", parent.name, r.name);
            self.sessions.push(s);
        }
    }
}
