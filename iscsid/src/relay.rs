//! The vscsi relay: the only process that holds the device. pledge(2) has
//! no promise for vscsi(4) ioctls, so this process stays unpledged and does
//! as little as possible: it moves commands from the kernel to the engine
//! and completions back. Its state is which commands it took (for detach
//! ordering) and which data arena slot each holds (`crate::arena`).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use common::imsg::{Imsg, ImsgBuf};
use log::{debug, error, warn};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::arena::{Arena, FreeSlots, Slot, SLOT_SIZE};
use crate::child::{self, Startup};
use crate::procmsg::{self, Cmd, Done};
use crate::vscsi::{self, DevError, Device, Dir, I2t, Status};

const DEVICE: Token = Token(0);
const ENGINE: Token = Token(1);
const PARENT: Token = Token(2);

/// The relay's start, after `child::main` has dropped privileges and
/// received the descriptors.
pub fn main(mut startup: Startup) -> i32 {
    let fds = startup.take(procmsg::DEVICE).and_then(|d| {
        Ok((
            d,
            startup.take(procmsg::RELAY_CHANNEL)?,
            startup.take(procmsg::ARENA)?,
        ))
    });
    let (dev, engine, arena) = match fds {
        Ok(v) => v,
        Err(e) => {
            error!("{e}");
            return 1;
        }
    };
    let dev = match vscsi::from_fd(dev) {
        Ok(d) => d,
        Err(e) => {
            error!("device: {e}");
            return 1;
        }
    };
    let arena = match Arena::map(arena) {
        Ok(a) => a,
        Err(e) => {
            error!("{e}");
            return 1;
        }
    };
    // Shutdown comes from the engine closing the channel, not from signals
    // (a ^C in the foreground reaches every process of the group). Ignored
    // first, unblocked after: a signal pending since the fork is dropped.
    ignore_signals();
    if let Err(e) = child::unblock_signals() {
        error!("{e}");
        return 1;
    }
    match Relay::new(dev, engine, startup.parent, arena).and_then(|mut r| r.run()) {
        Ok(()) => 0,
        Err(e) => {
            error!("{e}");
            1
        }
    }
}

fn ignore_signals() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    for s in [
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGTERM,
        Signal::SIGPIPE,
    ] {
        // SAFETY: SIG_IGN installs no handler code.
        let _ = unsafe { signal(s, SigHandler::SigIgn) };
    }
}

/// A command taken from the device and not completed.
struct Taken {
    target: u32,
    lun: u32,
    /// Its data's arena slot, if it has one.
    slot: Option<Slot>,
}

pub struct Relay {
    dev: Box<dyn Device>,
    engine: ImsgBuf,
    parent: ImsgBuf,
    poll: Poll,
    /// Commands taken from the device and not completed, by tag.
    taken: HashMap<u32, Taken>,
    arena: Arena,
    free: FreeSlots,
    /// Probe and detach requests in order; a detach waits at the front
    /// while commands it would cover are taken (see `devevents`).
    devevents: VecDeque<(u32, i32, i32)>,
    /// The engine channel is registered for writable events.
    engine_writable: bool,
}

impl Relay {
    pub fn new(
        dev: Box<dyn Device>,
        engine: OwnedFd,
        parent: ImsgBuf,
        arena: Arena,
    ) -> io::Result<Relay> {
        let poll = Poll::new()?;
        set_nonblocking(&engine)?;
        set_nonblocking(parent.as_fd())?;
        let mut engine = ImsgBuf::new(engine);
        engine.set_max_size(procmsg::MAX_RELAY_MSG);
        poll.registry().register(
            &mut SourceFd(&dev.fd().as_raw_fd()),
            DEVICE,
            Interest::READABLE,
        )?;
        poll.registry().register(
            &mut SourceFd(&engine.as_fd().as_raw_fd()),
            ENGINE,
            Interest::READABLE,
        )?;
        poll.registry().register(
            &mut SourceFd(&parent.as_fd().as_raw_fd()),
            PARENT,
            Interest::READABLE,
        )?;
        Ok(Relay {
            dev,
            engine,
            parent,
            poll,
            taken: HashMap::new(),
            arena,
            free: FreeSlots::default(),
            devevents: VecDeque::new(),
            engine_writable: false,
        })
    }

    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(16);
        // Commands may have queued before we registered: drain once.
        self.drain_device()?;
        loop {
            self.flush_device()?;
            self.flush_engine()?;
            match self.poll.poll(&mut events, None) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for ev in events.iter() {
                match ev.token() {
                    DEVICE => self.drain_device()?,
                    ENGINE => {
                        if ev.is_readable() && !self.read_engine()? {
                            debug!("engine closed the channel, exiting");
                            // The last completions must reach the device
                            // before it closes (dropping it writes what
                            // this leaves).
                            if let Err(e) = self.dev.flush() {
                                debug!("device: {e}");
                            }
                            return Ok(());
                        }
                    }
                    _ => {
                        if self.parent_gone() {
                            return Err(io::Error::other("parent went away"));
                        }
                    }
                }
            }
        }
    }

    /// The parent never writes after startup: readable means it died.
    fn parent_gone(&mut self) -> bool {
        match self.parent.read() {
            Ok(0) => true,
            Ok(_) => false,
            Err(common::imsg::Error::Io(e)) => e.kind() != io::ErrorKind::WouldBlock,
            Err(_) => true,
        }
    }

    fn flush_engine(&mut self) -> io::Result<()> {
        self.engine
            .flush()
            .map_err(|e| io::Error::other(format!("engine channel: {e}")))?;
        procmsg::want_writable(
            self.poll.registry(),
            &self.engine,
            ENGINE,
            &mut self.engine_writable,
        )?;
        Ok(())
    }

    /// Ends a batch: what it left for the device goes in one write. The
    /// device may keep some back while it has input for us; it then polls
    /// readable, and the next round drains it and comes back here.
    fn flush_device(&mut self) -> io::Result<()> {
        match self.dev.flush() {
            Ok(()) => Ok(()),
            Err(DevError::Closed) => Err(io::Error::other("device closed")),
            Err(e) => Err(io::Error::other(format!("device: {e}"))),
        }
    }

    /// VSCSI_I2T until EAGAIN. Write data is fetched whole at once, as the
    /// `Device` contract has it, so the engine can send immediate and
    /// unsolicited data without a round trip.
    fn drain_device(&mut self) -> io::Result<()> {
        loop {
            let i2t = match self.dev.i2t() {
                Ok(Some(c)) => c,
                Ok(None) => return Ok(()),
                Err(DevError::Closed) => return Err(io::Error::other("device closed")),
                Err(e) => return Err(io::Error::other(format!("VSCSI_I2T: {e}"))),
            };
            self.forward(i2t)?;
        }
    }

    fn forward(&mut self, i2t: I2t) -> io::Result<()> {
        let len = i2t.datalen as usize;
        // A slot for any data that fits one; the rest goes inline.
        let slot = if len > 0 && len <= SLOT_SIZE {
            self.free.take()
        } else {
            None
        };
        self.taken.insert(
            i2t.tag,
            Taken {
                target: i2t.target,
                lun: i2t.lun,
                slot,
            },
        );
        if len > procmsg::MAX_DATA {
            warn!("tag {}: {len} bytes is more than we carry", i2t.tag);
            return self.complete(i2t.tag, Status::Err, &[]);
        }
        let mut inline = Vec::new();
        if i2t.dir == Dir::Write && len > 0 {
            let buf = match slot.and_then(|s| self.arena.get_mut(s, len)) {
                Some(b) => b,
                None => {
                    inline.resize(len, 0);
                    &mut inline[..]
                }
            };
            if let Err(e) = self.dev.data_write(i2t.tag, buf) {
                if matches!(e, DevError::Closed) {
                    return Err(io::Error::other("device closed"));
                }
                warn!("VSCSI_DATA_WRITE tag {}: {e}", i2t.tag);
                return self.complete(i2t.tag, Status::Err, &[]);
            }
        }
        let trailer = Cmd::trailer(&i2t, slot);
        self.engine
            .compose_parts(procmsg::CMD, 0, 0, &[&inline, &trailer], None)
            .map_err(|e| io::Error::other(format!("engine channel: {e}")))
    }

    fn complete(&mut self, tag: u32, status: Status, sense: &[u8]) -> io::Result<()> {
        if let Some(s) = self.taken.remove(&tag).and_then(|t| t.slot) {
            self.free.give(s);
        }
        match self.dev.t2i(tag, status, sense) {
            Ok(()) => Ok(()),
            Err(DevError::Closed) => Err(io::Error::other("device closed")),
            Err(e) => {
                warn!("VSCSI_T2I tag {tag}: {e}");
                Ok(())
            }
        }
    }

    /// Returns false on EOF.
    fn read_engine(&mut self) -> io::Result<bool> {
        loop {
            match self.engine.read() {
                Ok(0) => return Ok(false),
                Ok(_) => {}
                Err(common::imsg::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(true)
                }
                Err(e) => return Err(io::Error::other(format!("engine channel: {e}"))),
            }
            let drained = self.engine.drained();
            loop {
                match self.engine.get() {
                    Ok(Some(m)) => self.dispatch(m)?,
                    Ok(None) => break,
                    Err(e) => return Err(io::Error::other(format!("engine channel: {e}"))),
                }
            }
            // A short read drained the socket; the next message raises a
            // new (edge-triggered) event, so no EAGAIN read to prove it.
            if drained {
                return Ok(true);
            }
        }
    }

    /// Does the device events that may go now, in order. A detach waits
    /// while commands of what it covers are taken and not completed: the
    /// kernel's detach task would sleep on them (scsi_link_shutdown), and
    /// with it every later probe and detach. The engine answers every
    /// command, so the wait ends.
    fn devevents(&mut self) -> io::Result<()> {
        while let Some(&(kind, t, l)) = self.devevents.front() {
            let covers = |c: &Taken| {
                i64::from(c.target) == i64::from(t) && (l < 0 || i64::from(c.lun) == i64::from(l))
            };
            if kind == procmsg::DETACH && self.taken.values().any(covers) {
                return Ok(());
            }
            self.devevents.pop_front();
            let r = if kind == procmsg::PROBE {
                self.dev.probe(t, l)
            } else {
                self.dev.detach(t, l)
            };
            match r {
                Ok(()) => {}
                Err(DevError::Closed) => return Err(io::Error::other("device closed")),
                Err(e) => warn!("probe/detach {t}/{l}: {e}"),
            }
        }
        Ok(())
    }

    fn dispatch(&mut self, m: Imsg) -> io::Result<()> {
        match m.kind {
            procmsg::DONE => {
                let d = match Done::decode(m.data) {
                    Ok(d) => d,
                    Err(e) => return Err(io::Error::other(format!("bad DONE: {e}"))),
                };
                let Some(data) = read_data(&self.taken, &self.arena, &d) else {
                    warn!("tag {}: read data not where the command has it", d.tag);
                    return self.complete(d.tag, Status::Err, &[]);
                };
                if !data.is_empty() {
                    if let Err(e) = self.dev.data_read(d.tag, data) {
                        if matches!(e, DevError::Closed) {
                            return Err(io::Error::other("device closed"));
                        }
                        warn!("VSCSI_DATA_READ tag {}: {e}", d.tag);
                        return self.complete(d.tag, Status::Err, &[]);
                    }
                }
                self.complete(d.tag, d.status, &d.sense)?;
                self.devevents()
            }
            procmsg::PROBE | procmsg::DETACH => {
                let (t, l) = procmsg::decode_devevent(&m.data)
                    .map_err(|e| io::Error::other(format!("bad device event: {e}")))?;
                self.devevents.push_back((m.kind, t, l));
                self.devevents()
            }
            k => Err(io::Error::other(format!(
                "unexpected message {k} from engine"
            ))),
        }
    }
}

/// A completion's read data: in the command's own slot (our record, not
/// the engine's word) or inline, never both. None if the engine broke
/// that. Its length is the kernel's to check (vscsi_data: ENOMEM).
fn read_data<'a>(taken: &HashMap<u32, Taken>, arena: &'a Arena, d: &'a Done) -> Option<&'a [u8]> {
    match taken.get(&d.tag).and_then(|t| t.slot) {
        Some(s) if d.data.is_empty() => arena.get(s, d.in_slot as usize),
        None if d.in_slot == 0 => Some(&d.data),
        _ => None,
    }
}

pub fn set_nonblocking(fd: impl std::os::fd::AsFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let fl = fcntl(&fd, FcntlArg::F_GETFL).map_err(io::Error::from)?;
    fcntl(
        &fd,
        FcntlArg::F_SETFL(OFlag::from_bits_truncate(fl) | OFlag::O_NONBLOCK),
    )
    .map_err(io::Error::from)?;
    Ok(())
}
