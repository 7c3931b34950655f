//! The session engine: a thin pump around the core's `Initiator`. Every
//! iSCSI connection and every control client is on one event loop (kqueue
//! on OpenBSD, epoll on Linux, through mio); readiness goes in, the core's
//! actions come out. It runs chrooted as the unprivileged user, pledged to
//! "stdio inet unix".

mod conn;
mod control;
mod convert;
mod start;

pub use start::main;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use common::ctl::VscsiStats;
use common::imsg::{Error as ImsgError, ImsgBuf};
use log::{error, info};
use mio::net::UnixListener;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use proto::initiator::{Action, ConnId, Entropy, EntropyError, Initiator, KernelCommand};
use proto::task::{Completion, Placement, Tag};

use crate::arena::{Arena, Slot};
use crate::procmsg;
use crate::procmsg::{Cmd, Done};
use crate::relay::set_nonblocking;
use crate::vscsi::{Dir, Status};

use conn::Socket;
use control::Client;

const RELAY: Token = Token(0);
const PARENT: Token = Token(1);
const LISTENER: Token = Token(2);
const SIGNALS: Token = Token(3);
const FIRST_DYNAMIC: usize = 16;

/// How long a shutdown waits for logouts.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// Read data of kernel commands goes into their arena slots as it comes
/// off the socket (one copy; see `crate::arena`).
struct SlotPlacement<'a> {
    arena: &'a mut Arena,
    slots: &'a HashMap<u32, Slot>,
}

impl Placement for SlotPlacement<'_> {
    fn place(&mut self, tag: Tag, offset: usize, data: &[u8]) -> bool {
        let Some(&s) = u32::try_from(tag).ok().and_then(|t| self.slots.get(&t)) else {
            return false;
        };
        let Some(end) = offset.checked_add(data.len()) else {
            return false;
        };
        match self.arena.get_mut(s, end) {
            Some(buf) => {
                buf[offset..].copy_from_slice(data);
                true
            }
            None => false,
        }
    }
}

/// getrandom(2) / getentropy(2) for the core.
struct OsRandom;

impl Entropy for OsRandom {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyError> {
        getrandom::getrandom(buf).map_err(|_| EntropyError)
    }
}

pub struct Engine {
    poll: Poll,
    relay: ImsgBuf,
    parent: ImsgBuf,
    listener: UnixListener,
    signals: std::os::unix::net::UnixStream,
    clients: BTreeMap<Token, Client>,
    /// Clients are being turned away (logged once per burst).
    clients_full: bool,
    /// The relay channel is registered for writable events.
    relay_writable: bool,
    sockets: HashMap<Token, Socket>,
    conn_tokens: HashMap<ConnId, Token>,
    next_token: usize,
    init: Initiator,
    /// The data arena, and the slot of each kernel command that has one.
    arena: Arena,
    slots: HashMap<u32, Slot>,
    stats: VscsiStats,
    stopping: Option<Instant>,
}

/// The default initiator name, as base builds it: the host name up to the
/// first dot.
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
    pub(super) fn new(
        parent: ImsgBuf,
        control: OwnedFd,
        relay: OwnedFd,
        arena: Arena,
    ) -> io::Result<Engine> {
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
            Interest::READABLE,
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
        let init = Initiator::new(default_initiatorname(), Box::new(OsRandom))
            .map_err(io::Error::other)?;
        Ok(Engine {
            poll,
            relay,
            parent,
            listener,
            signals: sig_r,
            clients: BTreeMap::new(),
            clients_full: false,
            relay_writable: false,
            sockets: HashMap::new(),
            conn_tokens: HashMap::new(),
            next_token: FIRST_DYNAMIC,
            init,
            arena,
            slots: HashMap::new(),
            stats: VscsiStats::default(),
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
            self.init.handle_timeout(now);
            self.actions(now)?;
            self.flush_all();
            if self
                .stopping
                .is_some_and(|d| now >= d || self.init.finished())
            {
                info!("all sessions closed");
                return Ok(());
            }
            let next = [self.init.poll_timeout(), self.stopping]
                .into_iter()
                .flatten()
                .min();
            let timeout = next.map(|t| t.saturating_duration_since(Instant::now()));
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
                    t if self.sockets.contains_key(&t) => self.socket_event(t, now),
                    t => self.client_event(t, ev.is_readable(), now),
                }
                // Commands from one relay read go out in one write per
                // connection: the actions wait for the whole batch.
            }
            self.actions(now)?;
        }
    }

    /// Carries out what the core asks for.
    fn actions(&mut self, now: Instant) -> io::Result<()> {
        while let Some(a) = self.init.poll_action() {
            match a {
                Action::Connect { conn, addr, local } => self.connect(conn, addr, local, now),
                Action::Send(conn) => {
                    self.flush_conn(conn, now);
                }
                Action::Close(conn) => self.drop_conn(conn),
                Action::Complete(c) => self.done(c),
                Action::Probe { target, lun } => self.devevent(procmsg::PROBE, target, lun),
                Action::Detach { target, lun } => self.devevent(procmsg::DETACH, target, lun),
                Action::Discovered { client, targets } => self.discovered(client, targets),
                Action::DiscoverFailed { client, error } => {
                    self.reply_fail(Token(client.0 as usize), &error)
                }
                Action::Fatal(e) => return Err(io::Error::other(e)),
            }
        }
        Ok(())
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
            self.init.shutdown(now);
        }
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
            let drained = self.relay.drained();
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
                    Ok(c) => self.command(c, now)?,
                    Err(e) => return Err(io::Error::other(format!("bad command from relay: {e}"))),
                }
            }
            // A short read drained the socket: no EAGAIN read to prove it.
            if drained {
                return Ok(());
            }
        }
    }

    fn command(&mut self, c: Cmd, now: Instant) -> io::Result<()> {
        let i2t = c.i2t;
        let mut data = c.data;
        if let Some(s) = c.slot {
            let n = i2t.datalen as usize;
            let Some(buf) = self.arena.get(s, n) else {
                return Err(io::Error::other(format!(
                    "relay: tag {}: {n} bytes in slot {s}",
                    i2t.tag
                )));
            };
            if i2t.dir == Dir::Write {
                data = buf.to_vec();
            }
            self.slots.insert(i2t.tag, s);
        }
        let dir = usize::try_from(i2t.dir.raw()).unwrap_or(0).min(2);
        self.stats.commands[dir] += 1;
        if i2t.dir == Dir::Write {
            self.stats.data_writes += 1;
            self.stats.bytes_written += data.len() as u64;
        }
        self.init.command(
            KernelCommand {
                tag: i2t.tag,
                target: i2t.target,
                lun: i2t.lun,
                cdb: i2t.cdb().to_vec(),
                dir: i2t.dir.into(),
                datalen: i2t.datalen,
                data,
            },
            now,
        );
        Ok(())
    }

    fn done(&mut self, c: Completion) {
        // The core keeps its own commands' completions to itself.
        let Ok(tag) = u32::try_from(c.tag) else {
            return error!("completion for a tag the kernel never gave: {:#x}", c.tag);
        };
        let status = Status::from(c.status);
        let st = usize::try_from(status.raw()).unwrap_or(3).min(3);
        self.stats.completions[st] += 1;
        if status != Status::Done {
            let d = usize::try_from(Dir::from(c.dir).raw()).unwrap_or(0).min(2);
            self.stats.errors[d] += 1;
        }
        let read = c.data.len() as u64 + u64::from(c.placed);
        if read > 0 {
            self.stats.data_reads += 1;
            self.stats.bytes_read += read;
        }
        // Read data goes into the command's slot if it has one; the core
        // may have placed it there already (`SlotPlacement`).
        let (mut status, mut inline, mut in_slot) = (status, &c.data[..], c.placed);
        if let Some(s) = self.slots.remove(&tag) {
            inline = &[];
            // Data the core gathered itself (placed data is there already).
            if !c.data.is_empty() {
                match self.arena.get_mut(s, c.data.len()) {
                    Some(buf) => {
                        buf.copy_from_slice(&c.data);
                        in_slot = c.data.len() as u32;
                    }
                    None => {
                        error!("tag {tag}: {} bytes of read data, slot {s}", c.data.len());
                        status = Status::Err;
                    }
                }
            }
        }
        let trailer = Done::trailer(tag, status, &c.sense, in_slot);
        if let Err(e) = self
            .relay
            .compose_parts(procmsg::DONE, 0, 0, &[inline, &trailer], None)
        {
            error!("relay channel: {e}");
        }
    }

    fn devevent(&mut self, kind: u32, target: u32, lun: Option<u32>) {
        if kind == procmsg::PROBE {
            self.stats.probes += 1;
        } else {
            self.stats.detaches += 1;
        }
        // -1: every LUN of the target, as vscsi(4) takes it.
        let lun = lun.and_then(|l| i32::try_from(l).ok()).unwrap_or(-1);
        let data = procmsg::encode_devevent(target as i32, lun);
        if let Err(e) = self.relay.compose(kind, 0, 0, &data, None) {
            error!("relay channel: {e}");
        }
    }

    fn flush_all(&mut self) {
        if let Err(e) = self.relay.flush() {
            error!("relay channel: {e}");
        }
        if let Err(e) = procmsg::want_writable(
            self.poll.registry(),
            &self.relay,
            RELAY,
            &mut self.relay_writable,
        ) {
            error!("relay channel: {e}");
        }
        for c in self.clients.values_mut() {
            let _ = c.ib.flush();
        }
    }
}
