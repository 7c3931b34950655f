//! The initiator: every session iscsid keeps, under stable ids, through
//! its whole life: connect, login (with CHAP and digest fallbacks and
//! redirects), full feature phase, loss and reconnect with backoff,
//! commands held and reissued within the replacement timeout, logout,
//! reload, and sessions that discovery creates.
//!
//! Sans-IO, in the style of quinn-proto: the daemon feeds it the time,
//! configuration, kernel commands and what happened on the sockets; it
//! answers with [`Action`]s (connect, send, close, complete a command,
//! probe, detach, answer a control client) and the next deadline
//! ([`Initiator::poll_timeout`]). Sockets, clocks and the random source
//! stay outside.

mod cause;
mod config;
mod discover;
mod entropy;
mod lifecycle;
mod luns;
mod reload;
#[cfg(test)]
mod rig;
mod sess;
mod status;
mod table;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::io::IoSlice;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

pub use cause::CloseCause;
pub use config::{ChapAlgs, ChapIdentity, InitiatorConfig, TargetConfig, Timers};
pub use config::{DEFAULT_QUEUE_DEPTH, DEFAULT_TIMERS};
pub use discover::DiscoverError;
pub use entropy::{Entropy, EntropyError};
pub use reload::{NotStarted, NotStartedReason, ReloadError, ReloadReport};
pub use status::{Counts, SessionStatus, State, Stats};

use crate::discovery::TargetRecord;
use crate::lun;
use crate::scsi::{self, Direction, Outcome};
use crate::task::{Completion, Gather, Placement, ScsiTask, Tag};
use luns::LunState;
use sess::Sess;
use table::Table;

/// vscsi(4) has 256 targets on its bus.
pub const VSCSI_TARGETS: usize = 256;

/// A session, for as long as it exists: a slot and its generation, so
/// that the id of a session that is gone never names another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId {
    index: u32,
    generation: u32,
}

/// One TCP connection of one session; a reconnect gets a new one, so an
/// event for a connection already replaced can never reach its successor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId {
    session: SessionId,
    seq: u32,
}

impl ConnId {}

/// A control client, named by the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(pub u64);

/// A command from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelCommand {
    pub tag: u32,
    /// The vscsi target it is addressed to.
    pub target: u32,
    pub lun: u32,
    pub cdb: Vec<u8>,
    pub dir: Direction,
    pub datalen: u32,
    /// Write data; empty otherwise.
    pub data: Vec<u8>,
}

/// What the daemon must do.
#[derive(Debug)]
pub enum Action {
    /// Open a TCP connection (non-blocking), then report `connected` or
    /// `closed`.
    Connect {
        conn: ConnId,
        addr: SocketAddr,
        local: Option<IpAddr>,
    },
    /// New bytes wait in `tx_data(conn)`.
    Send(ConnId),
    /// Drop the connection; no further events for it are wanted.
    Close(ConnId),
    /// A kernel command is finished.
    Complete(Completion),
    /// Have the kernel probe a vscsi target (every LUN) or one LUN.
    Probe { target: u32, lun: Option<u32> },
    /// Have the kernel detach a vscsi target (every LUN) or one LUN.
    Detach { target: u32, lun: Option<u32> },
    /// A one-off discovery's answer for a control client.
    Discovered {
        client: ClientId,
        targets: Vec<TargetRecord>,
    },
    /// A one-off discovery failed.
    DiscoverFailed { client: ClientId, error: String },
    /// The random source failed: nothing safe is left to do.
    Fatal(EntropyError),
}

pub struct Initiator {
    sessions: Table<Sess>,
    /// vscsi target -> the session that owns it.
    targets: Vec<Option<SessionId>>,
    actions: VecDeque<Action>,
    rng: Box<dyn Entropy>,
    /// The initiator name for blocks without their own.
    initiatorname: String,
    /// The ISID base for new sessions.
    isid: [u8; 6],
    /// Discovery sessions started, for their ISID qualifiers.
    discoveries: u16,
    stopping: bool,
}

impl Initiator {
    /// `initiatorname` is the default name (base builds it from the host
    /// name); the ISID base is random until a configuration sets one.
    pub fn new(initiatorname: String, rng: Box<dyn Entropy>) -> Result<Initiator, EntropyError> {
        let mut i = Initiator {
            sessions: Table::new(),
            targets: vec![None; VSCSI_TARGETS],
            actions: VecDeque::new(),
            rng,
            initiatorname,
            isid: [0; 6],
            discoveries: 0,
            stopping: false,
        };
        let mut r = [0u8; 5];
        i.rng.fill(&mut r)?;
        // As base: `arc4random_uniform(0xffffff) | 0x80000000` and a random
        // qualifier. Type "random" (RFC 7143 section 10.12.5) is T = 10b
        // with the A field's reserved bits zero, then 24 random B and C
        // bits, then the 16-bit qualifier.
        i.isid = [ISID_TYPE_RANDOM, r[0], r[1], r[2], r[3], r[4]];
        Ok(i)
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When `handle_timeout` next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.sessions
            .values()
            .filter_map(|s| s.next_deadline(self.stopping))
            .min()
    }

    /// The default initiator name in effect.
    pub fn initiatorname(&self) -> &str {
        &self.initiatorname
    }

    // ---- the kernel ----

    /// A command from the kernel for one of our vscsi targets.
    pub fn command(&mut self, c: KernelCommand, now: Instant) {
        let sid = self
            .targets
            .get(c.target as usize)
            .copied()
            .flatten()
            .filter(|sid| self.sessions.get(sid).is_some_and(|s| !s.removing()));
        let Some(sid) = sid else {
            // Nothing there: as an empty slot on a SCSI bus.
            return self.complete(Completion::status_only(
                Tag::from(c.tag),
                c.dir,
                Outcome::Failed,
            ));
        };
        let Some(lunfield) = lun::encode(c.lun) else {
            let sense = scsi::fixed_sense(scsi::KEY_ILLEGAL_REQUEST, scsi::ASC_LUN_NOT_SUPPORTED);
            return self.complete(Completion {
                tag: Tag::from(c.tag),
                dir: c.dir,
                status: Outcome::Sense,
                sense,
                data: Vec::new(),
                placed: 0,
            });
        };
        let task = ScsiTask {
            tag: Tag::from(c.tag),
            lun: lunfield,
            cdb: c.cdb,
            dir: c.dir,
            datalen: c.datalen,
            // Moved, not copied: the send queue shares it from here on.
            data: c.data.into(),
            deadline: None,
        };
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        s.stats.commands += 1;
        if task.dir == Direction::Write {
            s.stats.bytes_written += task.data.len() as u64;
        }
        let sending = s.state == State::LoggedIn && s.ending.is_none() && s.conn.is_some();
        if !sending
            && (s.cfg.disabled
                || matches!(
                    s.ending,
                    Some(sess::Ending::Remove | sess::Ending::Shutdown)
                ))
        {
            // Refused before it is noted anywhere: nothing of it may
            // outlive this completion (its tag comes back with another
            // command).
            return self.complete(Completion::status_only(task.tag, task.dir, Outcome::Retry));
        }
        s.started.insert(task.tag, now);
        s.luns.insert(c.lun);
        s.luns_state.note_command(&task, c.lun);
        if sending {
            if let Some(conn) = s.conn.as_mut() {
                conn.session.submit(task, now);
                return self.process(sid, now);
            }
        }
        // Not logged in (yet, or again): hold it for the next login.
        s.hold(task, now);
    }

    fn complete(&mut self, c: Completion) {
        self.actions.push_back(Action::Complete(c));
    }

    // ---- the sockets ----

    fn conn_mut(&mut self, conn: ConnId) -> Option<&mut sess::Conn> {
        self.sessions
            .get_mut(&conn.session)?
            .conn
            .as_mut()
            .filter(|c| c.id == conn)
    }

    fn conn(&self, conn: ConnId) -> Option<&sess::Conn> {
        self.sessions
            .get(&conn.session)?
            .conn
            .as_ref()
            .filter(|c| c.id == conn)
    }

    /// connect(2) finished on `conn`.
    pub fn connected(&mut self, conn: ConnId, now: Instant) {
        let Some(s) = self.sessions.get_mut(&conn.session) else {
            return;
        };
        if s.conn.as_ref().is_some_and(|c| c.id == conn) && s.state == State::Connecting {
            s.state = State::LoggingIn;
            // The Login Request has waited for the connection.
            self.process(conn.session, now);
        }
    }

    /// Room to read into; None when the connection is not (or no longer)
    /// ours, or while too much waits to be sent (a target that floods R2Ts
    /// but does not read must not grow our buffer without end).
    pub fn rx_space(&mut self, conn: ConnId, min: usize) -> Option<&mut [u8]> {
        let c = self.conn_mut(conn)?;
        if c.session.tx_pending() >= TX_HIGH {
            return None;
        }
        Some(c.session.rx_space(min))
    }

    /// `n` bytes were read into `rx_space`.
    pub fn rx_filled(&mut self, conn: ConnId, n: usize, now: Instant) {
        self.rx_filled_with(conn, n, now, &mut Gather);
    }

    /// As `rx_filled`; the read data of kernel commands goes straight to
    /// `place` where it has a buffer for them (not for the initiator's own
    /// commands, nor for READ CAPACITY answers, which the core reads).
    pub fn rx_filled_with(
        &mut self,
        conn: ConnId,
        n: usize,
        now: Instant,
        place: &mut dyn Placement,
    ) {
        let Some(s) = self.sessions.get_mut(&conn.session) else {
            return;
        };
        let Some(c) = s.conn.as_mut().filter(|c| c.id == conn) else {
            return;
        };
        let mut kernel = KernelData {
            place,
            luns: &s.luns_state,
        };
        c.session.rx_filled_with(n, now, &mut kernel);
        self.process(conn.session, now);
    }

    /// The first contiguous bytes waiting to be written on `conn`.
    pub fn tx_data(&self, conn: ConnId) -> &[u8] {
        self.conn(conn).map_or(&[], |c| c.session.tx_data())
    }

    /// Everything waiting to be written on `conn`, as slices for
    /// writev(2): headers from the send queue, large write data from the
    /// task's own buffer. Returns how many slices of `out` it filled.
    pub fn tx_slices<'a>(&'a self, conn: ConnId, out: &mut [IoSlice<'a>]) -> usize {
        self.conn(conn).map_or(0, |c| c.session.tx_slices(out))
    }

    /// `n` bytes of `tx_data` were written.
    pub fn tx_advance(&mut self, conn: ConnId, n: usize) {
        if let Some(c) = self.conn_mut(conn) {
            c.session.tx_advance(n);
            if c.session.tx_data().is_empty() {
                c.send_queued = false;
            }
        }
    }

    /// The connection ended; the shell has already dropped it.
    pub fn closed(&mut self, conn: ConnId, cause: CloseCause, now: Instant) {
        if self.conn(conn).is_some() {
            self.conn_lost(conn.session, lifecycle::Loss::Socket(cause), now);
        }
    }

    // ---- time ----

    /// Runs every timer that is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let ids = self.sessions.ids();
        for sid in ids {
            self.session_timers(sid, now);
        }
    }

    // ---- the daemon ----

    /// Logs every session out for shutdown.
    pub fn shutdown(&mut self, now: Instant) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        let ids = self.sessions.ids();
        for sid in ids {
            self.end_session(sid, sess::Ending::Shutdown, now);
        }
    }

    /// After `shutdown`: no connection is left.
    pub fn finished(&self) -> bool {
        self.sessions.values().all(|s| s.conn.is_none())
    }

    fn alloc_target(&mut self, sid: SessionId) -> Option<u32> {
        let t = self.targets.iter().position(Option::is_none)?;
        self.targets[t] = Some(sid);
        u32::try_from(t).ok()
    }

    fn random<const N: usize>(&mut self) -> Option<[u8; N]> {
        let mut r = [0u8; N];
        match self.rng.fill(&mut r) {
            Ok(()) => Some(r),
            Err(e) => {
                self.actions.push_back(Action::Fatal(e));
                None
            }
        }
    }
}

/// T = 10b: a random ISID (RFC 7143 section 10.12.5).
const ISID_TYPE_RANDOM: u8 = 0x80;

/// Bytes queued for a target above which we stop reading from it.
const TX_HIGH: usize = 32 << 20;

/// The shell's placement, for the kernel commands whose data the core
/// need not read itself.
struct KernelData<'a> {
    place: &'a mut dyn Placement,
    luns: &'a LunState,
}

impl Placement for KernelData<'_> {
    fn place(&mut self, tag: Tag, offset: usize, data: &[u8]) -> bool {
        !self.luns.reads_data_of(tag) && self.place.place(tag, offset, data)
    }
}
