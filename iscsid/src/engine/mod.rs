//! The session engine: every iSCSI connection and every control client on
//! one event loop (kqueue on OpenBSD, epoll on Linux, through mio). It runs
//! chrooted as the unprivileged user, pledged to "stdio inet unix".

mod control;
mod reload;
mod sess;
mod start;

pub use start::main;

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use common::ctl::VscsiStats;
use common::imsg::{Error as ImsgError, ImsgBuf};
use log::{debug, error, info, warn};
use mio::net::UnixListener;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::procmsg;
use crate::relay::set_nonblocking;
use crate::relaymsg::{self, Cmd, Done};
use crate::vscsi::{Dir, Status};
use proto::lun;
use proto::scsi::{Direction, Outcome};
use proto::session::Event;
use proto::task::{Completion, ScsiTask};

use control::Client;
pub use sess::{Ending, Sess};

const RELAY: Token = Token(0);
const PARENT: Token = Token(1);
const LISTENER: Token = Token(2);
const SIGNALS: Token = Token(3);
const FIRST_DYNAMIC: usize = 16;

/// How long a shutdown waits for logouts.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);
/// vscsi(4) has 256 targets.
const VSCSI_TARGETS: u32 = 256;

pub struct Engine {
    poll: Poll,
    relay: ImsgBuf,
    parent: ImsgBuf,
    listener: UnixListener,
    signals: std::os::unix::net::UnixStream,
    clients: HashMap<Token, Client>,
    sessions: Vec<Sess>,
    /// vscsi target -> session index is found by search; this marks use.
    targets: [bool; VSCSI_TARGETS as usize],
    next_token: usize,
    stats: VscsiStats,
    initiatorname: String,
    isid: [u8; 6],
    /// Discovery sessions started, for their ISID qualifiers.
    discoveries: u16,
    stopping: Option<Instant>,
}

fn default_initiatorname() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "initiator".to_owned());
    let short = host
        .split('.')
        .next()
        .unwrap_or("initiator")
        .to_ascii_lowercase();
    format!("iqn.1995-11.org.openbsd.iscsid:{short}")
}

impl Engine {
    pub(super) fn new(parent: ImsgBuf, control: OwnedFd, relay: OwnedFd) -> io::Result<Engine> {
        let poll = Poll::new()?;
        set_nonblocking(&relay)?;
        set_nonblocking(parent.as_fd())?;
        let mut relay = ImsgBuf::new(relay);
        relay.set_max_size(procmsg::MAX_RELAY_MSG);
        let std_listener = std::os::unix::net::UnixListener::from(control);
        std_listener.set_nonblocking(true)?;
        let mut listener = UnixListener::from_std(std_listener);
        let (sig_r, sig_w) = std::os::unix::net::UnixStream::pair()?;
        sig_r.set_nonblocking(true)?;
        sig_w.set_nonblocking(true)?;
        for s in [
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGHUP,
        ] {
            signal_hook::low_level::pipe::register(s, sig_w.try_clone()?)?;
        }
        // SAFETY: SIG_IGN installs no handler code.
        let _ = unsafe {
            nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGPIPE,
                nix::sys::signal::SigHandler::SigIgn,
            )
        };
        let reg = poll.registry();
        reg.register(
            &mut SourceFd(&relay.as_fd().as_raw_fd()),
            RELAY,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        reg.register(
            &mut SourceFd(&parent.as_fd().as_raw_fd()),
            PARENT,
            Interest::READABLE,
        )?;
        reg.register(&mut listener, LISTENER, Interest::READABLE)?;
        reg.register(
            &mut SourceFd(&sig_r.as_raw_fd()),
            SIGNALS,
            Interest::READABLE,
        )?;
        let mut r = [0u8; 8];
        let _ = getrandom::getrandom(&mut r);
        // ISID type "random" (RFC 7143 10.12.5): T=10b, 22 random bits, and
        // a random qualifier; `isid` in iscsi.conf replaces it.
        let isid = [0x80 | (r[0] & 0x3f), r[1], r[2], r[3], r[4], r[5]];
        Ok(Engine {
            poll,
            relay,
            parent,
            listener,
            signals: sig_r,
            clients: HashMap::new(),
            sessions: Vec::new(),
            targets: [false; VSCSI_TARGETS as usize],
            next_token: FIRST_DYNAMIC,
            stats: VscsiStats::default(),
            initiatorname: default_initiatorname(),
            isid,
            discoveries: 0,
            stopping: None,
        })
    }

    fn token(&mut self) -> Token {
        let t = Token(self.next_token);
        self.next_token += 1;
        t
    }

    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        info!("engine ready");
        loop {
            let now = Instant::now();
            self.timers(now);
            self.flush_sessions(now);
            self.flush_all();
            if self.finished(now) {
                info!("all sessions closed");
                return Ok(());
            }
            let timeout = self
                .next_wakeup()
                .map(|t| t.saturating_duration_since(Instant::now()));
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            for ev in events.iter() {
                match ev.token() {
                    RELAY => {
                        if ev.is_readable() {
                            self.read_relay(now)?;
                        }
                    }
                    PARENT => {
                        if self.parent_gone() {
                            return Err(io::Error::other("parent went away"));
                        }
                    }
                    LISTENER => self.accept(),
                    SIGNALS => self.signal(now),
                    t => {
                        if self.clients.contains_key(&t) {
                            self.client_event(t, now);
                        } else if let Some(i) = self.session_by_token(t) {
                            self.session_io(i, now);
                        }
                    }
                }
            }
        }
    }

    fn parent_gone(&mut self) -> bool {
        match self.parent.read() {
            Ok(0) => true,
            Ok(_) => false,
            Err(ImsgError::Io(e)) => e.kind() != io::ErrorKind::WouldBlock,
            Err(_) => true,
        }
    }

    fn signal(&mut self, now: Instant) {
        let mut buf = [0u8; 64];
        while matches!(io::Read::read(&mut self.signals, &mut buf), Ok(n) if n > 0) {}
        if self.stopping.is_none() {
            info!("shutting down: logging out sessions");
            self.stopping = Some(now + SHUTDOWN_WAIT);
            for i in 0..self.sessions.len() {
                self.end_session(i, Ending::Shutdown, now);
            }
        }
    }

    fn finished(&self, now: Instant) -> bool {
        match self.stopping {
            None => false,
            Some(deadline) => now >= deadline || self.sessions.iter().all(|s| s.conn.is_none()),
        }
    }

    fn session_by_token(&self, t: Token) -> Option<usize> {
        self.sessions
            .iter()
            .position(|s| s.conn.as_ref().is_some_and(|c| c.token == t))
    }

    pub fn session_by_name(&self, name: &str) -> Option<usize> {
        self.sessions.iter().position(|s| s.name == name)
    }

    fn alloc_target(&mut self) -> Option<u32> {
        let t = self.targets.iter().position(|used| !used)?;
        self.targets[t] = true;
        Some(t as u32)
    }

    // ---- the relay: commands from the kernel ----

    fn read_relay(&mut self, now: Instant) -> io::Result<()> {
        loop {
            match self.relay.read() {
                Ok(0) => return Err(io::Error::other("relay went away")),
                Ok(_) => {}
                Err(ImsgError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(io::Error::other(format!("relay channel: {e}"))),
            }
            loop {
                let m = match self.relay.get() {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(e) => return Err(io::Error::other(format!("relay channel: {e}"))),
                };
                if m.kind != procmsg::CMD {
                    return Err(io::Error::other(format!(
                        "unexpected message {} from relay",
                        m.kind
                    )));
                }
                match Cmd::decode(m.data) {
                    Ok(c) => self.command(c, now),
                    Err(e) => return Err(io::Error::other(format!("bad command from relay: {e}"))),
                }
            }
        }
    }

    fn command(&mut self, c: Cmd, now: Instant) {
        let i2t = c.i2t;
        let direction: Direction = i2t.dir.into();
        let dir = usize::try_from(i2t.dir.raw()).unwrap_or(0).min(2);
        self.stats.commands[dir] += 1;
        if i2t.dir == Dir::Write {
            self.stats.data_writes += 1;
            self.stats.bytes_written += c.data.len() as u64;
        }
        let idx = self
            .sessions
            .iter()
            .position(|s| s.vscsi_target == Some(i2t.target) && s.ending != Some(Ending::Remove));
        let Some(idx) = idx else {
            // Nothing there: like an empty slot on a SCSI bus.
            return self.done(Completion::status_only(i2t.tag, direction, Outcome::Failed));
        };
        let Some(lunfield) = lun::encode(i2t.lun) else {
            // ILLEGAL REQUEST, LOGICAL UNIT NOT SUPPORTED.
            let sense = proto::scsi::fixed_sense(
                proto::scsi::KEY_ILLEGAL_REQUEST,
                proto::scsi::ASC_LUN_NOT_SUPPORTED,
            );
            let c = Completion {
                tag: i2t.tag,
                dir: direction,
                status: Outcome::Sense,
                sense,
                data: Vec::new(),
            };
            return self.done(c);
        };
        let task = ScsiTask {
            tag: i2t.tag,
            lun: lunfield,
            cdb: i2t.cdb().to_vec(),
            dir: direction,
            datalen: i2t.datalen,
            data: c.data,
            deadline: None,
        };
        let s = &mut self.sessions[idx];
        s.commands += 1;
        s.luns.insert(i2t.lun);
        match s.conn.as_mut() {
            Some(conn) if s.state == common::ctl::SessionState::LoggedIn => {
                conn.session.submit(task, now)
            }
            _ if s.ending.is_some() || s.cfg.disabled => {
                self.done(Completion::status_only(i2t.tag, direction, Outcome::Retry))
            }
            _ => {
                // Not logged in (yet, or again): hold it for the next login.
                if s.held_deadline.is_none() {
                    s.held_deadline = Some(now + sess::REPLACEMENT_TIMEOUT);
                }
                s.held.push_back(task);
            }
        }
        // Written by flush_sessions once the whole batch is in.
        self.handle_events(idx, now);
    }

    fn done(&mut self, c: Completion) {
        let status = Status::from(c.status);
        let st = usize::try_from(status.raw()).unwrap_or(3).min(3);
        self.stats.completions[st] += 1;
        if c.status != Outcome::Good {
            let d = usize::try_from(Dir::from(c.dir).raw()).unwrap_or(0).min(2);
            self.stats.errors[d] += 1;
        }
        if !c.data.is_empty() {
            self.stats.data_reads += 1;
            self.stats.bytes_read += c.data.len() as u64;
        }
        let trailer = Done::trailer(c.tag, status, &c.sense);
        if let Err(e) = self
            .relay
            .compose_parts(procmsg::DONE, 0, 0, &[&c.data, &trailer], None)
        {
            error!("relay channel: {e}");
        }
    }

    fn devevent(&mut self, kind: u32, target: u32, lun: i32) {
        if kind == procmsg::PROBE {
            self.stats.probes += 1;
        } else {
            self.stats.detaches += 1;
        }
        let data = relaymsg::encode_devevent(target as i32, lun);
        if let Err(e) = self.relay.compose(kind, 0, 0, &data, None) {
            error!("relay channel: {e}");
        }
    }

    fn flush_all(&mut self) {
        if let Err(e) = self.relay.flush() {
            error!("relay channel: {e}");
        }
        for c in self.clients.values_mut() {
            let _ = c.ib.flush();
        }
    }

    // ---- sessions ----

    fn session_io(&mut self, i: usize, now: Instant) {
        let Some(token) = self.sessions[i].conn.as_ref().map(|c| c.token) else {
            return;
        };
        let r = self.sessions[i].io(now);
        // What arrived before an EOF counts: a Logout Response, completions.
        self.drain_session(i, now);
        if let Err(e) = r {
            // The session may have closed (or gone) while draining.
            if let Some(i) = self.session_by_token(token) {
                self.conn_lost(i, &e.to_string(), now);
            }
        }
    }

    /// Acts on everything the session has to say, then writes what it queued.
    fn drain_session(&mut self, i: usize, now: Instant) {
        self.handle_events(i, now);
        if let Some(s) = self.sessions.get_mut(i) {
            if let Err(e) = s.flush() {
                let msg = e.to_string();
                self.conn_lost(i, &msg, now);
            }
        }
    }

    /// Writes every session's queued bytes: commands from one relay read
    /// go out in one write per connection, not one per command.
    fn flush_sessions(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.sessions.len() {
            let pending = self.sessions[i]
                .conn
                .as_ref()
                .is_some_and(|c| c.connected && !c.session.tx_data().is_empty());
            let n = self.sessions.len();
            if pending {
                if let Err(e) = self.sessions[i].flush() {
                    let msg = e.to_string();
                    self.conn_lost(i, &msg, now);
                }
            }
            if self.sessions.len() == n {
                i += 1;
            }
        }
    }

    fn handle_events(&mut self, i: usize, now: Instant) {
        loop {
            let ev = match self.sessions.get_mut(i).and_then(|s| s.conn.as_mut()) {
                Some(c) => c.session.poll_event(),
                None => None,
            };
            let Some(ev) = ev else { break };
            self.session_event(i, ev, now);
        }
    }

    fn session_event(&mut self, i: usize, ev: Event, now: Instant) {
        let initiatorname = self.initiatorname.clone();
        let s = &mut self.sessions[i];
        match ev {
            Event::LoggedIn => {
                let Some(c) = s.conn.as_mut() else { return };
                s.state = common::ctl::SessionState::LoggedIn;
                s.logins += 1;
                s.backoff = Duration::from_secs(1);
                s.last_error = None;
                s.params = Some(c.session.params().clone());
                s.tsih = c.session.tsih();
                info!(
                    "{}: logged in to {} at {}",
                    s.name,
                    s.cfg.targetname.as_deref().unwrap_or("discovery"),
                    c.addr
                );
                // Bytes after the final Login Response may already have
                // closed the session again; then the commands stay held.
                if c.session.phase() == proto::session::Phase::FullFeature {
                    s.held_deadline = None;
                    for t in s.held.drain(..) {
                        c.session.submit(t, now);
                    }
                }
                if let Some(e) = s.ending {
                    // Removed or changed while logging in.
                    c.session.logout(now);
                    debug!("{}: logging out at once ({e:?})", s.name);
                } else if let Some(t) = s.vscsi_target {
                    self.devevent(procmsg::PROBE, t, -1);
                }
                let _ = initiatorname;
            }
            Event::Complete(c) => {
                if c.status != Outcome::Good {
                    s.errors += 1;
                }
                self.done(c);
            }
            Event::Rescan => {
                if let Some(t) = s.vscsi_target {
                    self.devevent(procmsg::PROBE, t, -1);
                }
            }
            Event::Discovered(recs) => {
                info!("{}: found {} targets", s.name, recs.len());
                if let Some(c) = s.conn.as_mut() {
                    c.session.logout(now);
                }
                self.discovered(i, recs, now);
            }
            Event::TargetLogout { .. } if s.ending.is_some() => {
                self.close_conn(i);
                self.after_logout(i, now);
            }
            Event::TargetLogout { time2wait } => {
                self.close_conn(i);
                let s = &mut self.sessions[i];
                s.state = common::ctl::SessionState::Failed;
                s.retry_at = Some(now + Duration::from_secs(u64::from(time2wait)));
                s.last_error = Some("target requested logout".into());
            }
            Event::LoggedOut => {
                info!("{}: logged out", s.name);
                self.close_conn(i);
                self.after_logout(i, now);
            }
            Event::Redirect { addr, permanent } => {
                info!(
                    "{}: redirected to {addr}{}",
                    s.name,
                    if permanent { " (permanent)" } else { "" }
                );
                self.close_conn(i);
                let s = &mut self.sessions[i];
                match proto::discovery::parse_address(&addr) {
                    Some(a) => {
                        if permanent {
                            s.moved_to = Some(a);
                            s.redirect = None;
                        } else {
                            s.redirect = Some(a);
                        }
                        s.state = common::ctl::SessionState::Idle;
                        s.retry_at = Some(now);
                    }
                    None => {
                        let msg = format!("redirected to {addr}, not a numeric address");
                        warn!("{}: {msg}", s.name);
                        self.fail_session(i, msg, true, now);
                    }
                }
            }
            Event::Failed(e) => {
                use proto::login::LoginError;
                use proto::session::SessionError;
                let permanent = matches!(&e, SessionError::Login(l) if l.is_permanent());
                let auth = matches!(
                    &e,
                    SessionError::Login(
                        LoginError::AuthFailed
                            | LoginError::InitiatorError(_)
                            | LoginError::Chap(_)
                    )
                );
                let msg = e.to_string();
                warn!("{}: {msg}", self.sessions[i].name);
                self.take_back(i, now);
                self.close_conn(i);
                let s = &mut self.sessions[i];
                if auth && s.ending.is_none() && s.chap_fallback(now) {
                    s.last_error = Some(msg);
                    return;
                }
                self.fail_session(i, msg, permanent, now);
            }
        }
    }

    /// Commands of a dead connection wait for the next one.
    /// A command that went down with this many connections goes back to
    /// the kernel instead of around again (a target that takes the login
    /// but never answers it must not keep it forever).
    const MAX_REISSUE: u8 = 3;

    fn take_back(&mut self, i: usize, now: Instant) {
        let s = &mut self.sessions[i];
        let Some(c) = s.conn.as_mut() else { return };
        let tasks = c.session.take_tasks();
        if tasks.is_empty() {
            s.reissued.clear();
            return;
        }
        let mut counts = std::collections::HashMap::new();
        let mut keep = Vec::new();
        let mut give_up = Vec::new();
        for t in tasks {
            let n = s.reissued.get(&t.tag).copied().unwrap_or(0) + 1;
            if n > Self::MAX_REISSUE {
                give_up.push(t);
            } else {
                counts.insert(t.tag, n);
                keep.push(t);
            }
        }
        s.reissued = counts;
        if !give_up.is_empty() {
            warn!(
                "{}: {} commands failed on {} connections, giving up on them",
                s.name,
                give_up.len(),
                Self::MAX_REISSUE
            );
        }
        keep.extend(s.held.drain(..));
        s.held = keep.into();
        if !s.held.is_empty() {
            s.held_deadline
                .get_or_insert(now + sess::REPLACEMENT_TIMEOUT);
        }
        for t in give_up {
            self.done(Completion::status_only(t.tag, t.dir, Outcome::Retry));
        }
    }

    fn conn_lost(&mut self, i: usize, why: &str, now: Instant) {
        if self.sessions[i].conn.is_none() {
            return;
        }
        let s = &self.sessions[i];
        // Some targets (tgt) just hang up on a wrong CHAP secret.
        let why = match (s.state, s.cfg.params.chap.is_some()) {
            (common::ctl::SessionState::LoggingIn, true) => {
                format!("{why} during login (authentication refused? check chap name and secret)")
            }
            (common::ctl::SessionState::LoggingIn, false) => format!("{why} during login"),
            (common::ctl::SessionState::Connecting, _) => match s.conn.as_ref() {
                Some(c) => format!("connect to {}: {why}", c.addr),
                None => format!("connect: {why}"),
            },
            _ => why.to_owned(),
        };
        let why = why.as_str();
        // tgt hangs up on a CHAP_A it does not know: try MD5 alone.
        let hangup =
            why.starts_with("connection closed by target") || why.contains("reset by peer");
        if hangup && self.sessions[i].ending.is_none() && self.sessions[i].chap_fallback(now) {
            self.take_back(i, now);
            self.close_conn(i);
            self.sessions[i].last_error = Some(why.to_owned());
            return;
        }
        let s = &self.sessions[i];
        if s.state == common::ctl::SessionState::Connecting {
            warn!("{}: {why}", s.name);
        } else {
            warn!("{}: connection lost: {why}", s.name);
        }
        // Events already produced (completions) still count.
        self.drain_events_only(i);
        self.take_back(i, now);
        self.close_conn(i);
        self.fail_session(i, why.to_owned(), false, now);
    }

    fn drain_events_only(&mut self, i: usize) {
        loop {
            let ev = match self.sessions[i].conn.as_mut() {
                Some(c) => c.session.poll_event(),
                None => None,
            };
            match ev {
                Some(Event::Complete(c)) => self.done(c),
                Some(Event::Failed(_)) | Some(Event::LoggedOut) => {}
                Some(other) => debug!(
                    "{}: dropped event {other:?} with the connection",
                    self.sessions[i].name
                ),
                None => break,
            }
        }
    }

    fn close_conn(&mut self, i: usize) {
        // Completions the session still holds in its event queue (commands
        // refused after it closed) must reach the kernel.
        self.drain_events_only(i);
        // A temporary redirect is good for one login (RFC 7143 11.13.5):
        // later connections go to the configured portal again.
        self.sessions[i].redirect = None;
        if let Some(mut c) = self.sessions[i].conn.take() {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
    }

    fn fail_session(&mut self, i: usize, msg: String, permanent: bool, now: Instant) {
        let s = &mut self.sessions[i];
        s.last_error = Some(msg.clone());
        if s.ending.is_some() {
            return self.after_logout(i, now);
        }
        if s.oneoff {
            // A one-off discovery: report and forget it.
            if let Some(w) = s.waiter.take() {
                self.reply_fail(w, &msg);
            }
            return self.remove_session(i);
        }
        let s = &mut self.sessions[i];
        s.state = common::ctl::SessionState::Failed;
        s.schedule_retry(now, permanent);
    }

    /// The connection is gone after a logout (or failed while ending).
    fn after_logout(&mut self, i: usize, now: Instant) {
        let s = &mut self.sessions[i];
        // Commands never sent go back for a retry (the kernel may give up).
        let held: Vec<ScsiTask> = s.held.drain(..).collect();
        s.held_deadline = None;
        for t in held {
            self.done(Completion::status_only(t.tag, t.dir, Outcome::Retry));
        }
        let s = &mut self.sessions[i];
        match s.ending {
            Some(Ending::Remove) => self.remove_session(i),
            Some(Ending::Restart) => {
                s.ending = None;
                s.state = common::ctl::SessionState::Idle;
                s.retry_at = Some(now);
            }
            Some(Ending::Shutdown) => s.state = common::ctl::SessionState::Idle,
            None if s.discovery() => {
                s.state = common::ctl::SessionState::Done;
                if s.oneoff {
                    self.remove_session(i);
                }
            }
            None => {
                s.state = common::ctl::SessionState::Failed;
                s.schedule_retry(now, false);
            }
        }
    }

    /// Logs a session out for good, for a restart, or for shutdown.
    fn end_session(&mut self, i: usize, why: Ending, now: Instant) {
        let s = &mut self.sessions[i];
        s.ending = Some(why);
        s.state = common::ctl::SessionState::LoggingOut;
        match s.conn.as_mut() {
            Some(c) => {
                c.session.logout(now);
                self.drain_session(i, now);
            }
            None => self.after_logout(i, now),
        }
    }

    fn remove_session(&mut self, i: usize) {
        self.close_conn(i);
        let s = self.sessions.remove(i);
        if let Some(t) = s.vscsi_target {
            self.devevent(procmsg::DETACH, t, -1);
            if let Some(slot) = self.targets.get_mut(t as usize) {
                *slot = false;
            }
        }
        debug!("{}: removed", s.name);
    }

    fn timers(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.sessions.len() {
            let n = self.sessions.len();
            self.session_timers(i, now);
            if self.sessions.len() == n {
                i += 1;
            }
        }
    }

    fn session_timers(&mut self, i: usize, now: Instant) {
        let s = &mut self.sessions[i];
        if s.held_deadline.is_some_and(|d| now >= d) {
            warn!(
                "{}: session not back in time, failing {} commands",
                s.name,
                s.held.len()
            );
            s.held_deadline = None;
            let held: Vec<ScsiTask> = s.held.drain(..).collect();
            for t in held {
                self.done(Completion::status_only(t.tag, t.dir, Outcome::Retry));
            }
        }
        let s = &mut self.sessions[i];
        if let Some(c) = s.conn.as_mut() {
            if c.session.next_timeout().is_some_and(|t| now >= t) {
                c.session.tick(now);
                self.drain_session(i, now);
            }
            return;
        }
        if s.cfg.disabled || s.ending.is_some() || self.stopping.is_some() {
            return;
        }
        if s.retry_at.is_some_and(|t| now < t) || matches!(s.state, common::ctl::SessionState::Done)
        {
            return;
        }
        let token = self.token();
        let initiatorname = self.initiatorname.clone();
        let s = &mut self.sessions[i];
        match s.connect(token, now, &initiatorname) {
            Ok(()) => {
                let Some(c) = s.conn.as_mut() else { return };
                if let Err(e) = self.poll.registry().register(
                    &mut c.stream,
                    token,
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    let msg = format!("register: {e}");
                    self.close_conn(i);
                    // May remove the session: `i` is not to be used after.
                    return self.fail_session(i, msg, false, now);
                }
                debug!("{}: connecting", self.sessions[i].name);
            }
            Err(e) => {
                let msg = format!("connect: {e}");
                warn!("{}: {msg}", s.name);
                self.fail_session(i, msg, false, now);
            }
        }
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let mut next: Option<Instant> = self.stopping;
        let mut take = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for s in &self.sessions {
            take(s.held_deadline);
            match &s.conn {
                Some(c) => take(c.session.next_timeout()),
                None if !s.cfg.disabled
                    && s.ending.is_none()
                    && self.stopping.is_none()
                    && s.state != common::ctl::SessionState::Done =>
                {
                    take(Some(s.retry_at.unwrap_or_else(Instant::now)))
                }
                None => {}
            }
        }
        next
    }
}
