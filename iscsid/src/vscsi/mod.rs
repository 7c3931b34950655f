//! The vscsi(4) device as the relay sees it.
//!
//! On OpenBSD the relay drives `/dev/vscsi0` with ioctls (`openbsd.rs`).
//! Everywhere, `iscsid -n PATH` may name a unix socket instead: the vscsi
//! emulator in `regress/` listens there and plays the kernel (`emu.rs`,
//! wire format in `emuproto.rs`). Both carry the same messages, so the
//! relay and the engine run the same code on either.

use std::fmt;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

pub mod abi;
pub mod emu;
pub mod emuproto;
#[cfg(target_os = "openbsd")]
pub mod openbsd;

/// Longest CDB vscsi(4) carries (`struct scsi_generic`).
pub const CDB_MAX: usize = 16;
/// Sense bytes vscsi(4) carries (`struct scsi_sense_data`, OpenBSD >= 5.x).
pub const SENSE_LEN: usize = 18;

/// Data direction of a command, as `VSCSI_DIR_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    None,
    Read,
    Write,
}

impl Dir {
    pub fn from_raw(v: i32) -> Option<Dir> {
        match v {
            0 => Some(Dir::None),
            1 => Some(Dir::Read),
            2 => Some(Dir::Write),
            _ => None,
        }
    }

    pub fn raw(self) -> i32 {
        match self {
            Dir::None => 0,
            Dir::Read => 1,
            Dir::Write => 2,
        }
    }
}

/// A command handed from the kernel to userland (`VSCSI_I2T`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct I2t {
    pub tag: u32,
    pub target: u32,
    pub lun: u32,
    pub cdb: [u8; CDB_MAX],
    pub cdblen: u8,
    pub datalen: u32,
    pub dir: Dir,
}

impl I2t {
    pub fn cdb(&self) -> &[u8] {
        &self.cdb[..usize::from(self.cdblen).min(CDB_MAX)]
    }
}

/// Completion status, as `VSCSI_STAT_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// XS_NOERROR
    Done,
    /// XS_SENSE: sense data is valid.
    Sense,
    /// XS_RESET: the midlayer retries the command.
    Reset,
    /// XS_DRIVER_STUFFUP: the command fails.
    Err,
}

impl Status {
    pub fn from_raw(v: i32) -> Option<Status> {
        match v {
            0 => Some(Status::Done),
            1 => Some(Status::Sense),
            2 => Some(Status::Reset),
            3 => Some(Status::Err),
            _ => None,
        }
    }

    pub fn raw(self) -> i32 {
        match self {
            Status::Done => 0,
            Status::Sense => 1,
            Status::Reset => 2,
            Status::Err => 3,
        }
    }
}

/// Errors from the device, named after the errno the kernel returns.
#[derive(Debug)]
pub enum DevError {
    /// EFAULT: no command with this tag is in flight.
    UnknownTag(u32),
    /// ENOMEM: more data than the command has left.
    TooMuchData(u32),
    /// EINVAL: the command has no data phase in this direction.
    WrongDirection(u32),
    /// The device (or the emulator) went away.
    Closed,
    /// A malformed message from the emulator.
    Protocol(&'static str),
    Io(io::Error),
}

impl fmt::Display for DevError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DevError::UnknownTag(t) => write!(f, "unknown tag {t}"),
            DevError::TooMuchData(t) => write!(f, "too much data for tag {t}"),
            DevError::WrongDirection(t) => write!(f, "wrong data direction for tag {t}"),
            DevError::Closed => write!(f, "device closed"),
            DevError::Protocol(m) => write!(f, "device protocol error: {m}"),
            DevError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for DevError {}

impl From<io::Error> for DevError {
    fn from(e: io::Error) -> Self {
        DevError::Io(e)
    }
}

/// What the relay needs from vscsi(4). Every call maps to one ioctl.
///
/// The descriptor is readable (kqueue/epoll) while commands may be queued;
/// callers drain `i2t` until it returns `Ok(None)` (EAGAIN).
///
/// The calls take effect in call order, but a device may batch them (the
/// emulator does, `emu.rs`). The relay's contract, which allows that:
/// - it calls `flush` at the end of each batch, before it sleeps;
/// - it drains `i2t` after `data_write`, which may read commands ahead
///   while it waits, leaving the descriptor unreadable though commands are
///   queued;
/// - it fetches a write command's data all at once, one `data_write` of
///   `datalen` bytes, before it completes the command, so a device may ask
///   for the data as soon as the command arrives.
pub trait Device {
    /// The descriptor to watch for readability.
    fn fd(&self) -> BorrowedFd<'_>;
    /// `VSCSI_I2T`: the next queued command, or `None` when drained.
    fn i2t(&mut self) -> Result<Option<I2t>, DevError>;
    /// `VSCSI_DATA_WRITE`: fetch `buf.len()` bytes of write data at the
    /// kernel's running offset for `tag`.
    fn data_write(&mut self, tag: u32, buf: &mut [u8]) -> Result<(), DevError>;
    /// `VSCSI_DATA_READ`: hand `buf` to the kernel as read data at its
    /// running offset for `tag`.
    fn data_read(&mut self, tag: u32, buf: &[u8]) -> Result<(), DevError>;
    /// `VSCSI_T2I`: complete `tag`. `sense` is used with `Status::Sense`
    /// and is cut or zero-padded to `SENSE_LEN`.
    fn t2i(&mut self, tag: u32, status: Status, sense: &[u8]) -> Result<(), DevError>;
    /// `VSCSI_REQPROBE`; -1 is a wildcard.
    fn probe(&mut self, target: i32, lun: i32) -> Result<(), DevError>;
    /// `VSCSI_REQDETACH`; -1 is a wildcard.
    fn detach(&mut self, target: i32, lun: i32) -> Result<(), DevError>;
    /// Hands what earlier calls left buffered to the kernel side. It may
    /// keep some back while the device has input for the caller, as the
    /// other side may be blocked writing it: the descriptor then polls
    /// readable (edge-triggered too: the input came after the last `i2t`
    /// that drained), and the caller reads it and flushes again. Dropping
    /// the device writes what is left. An ioctl takes effect at once, so
    /// on vscsi(4) this does nothing.
    fn flush(&mut self) -> Result<(), DevError>;
}

/// The device behind a descriptor the parent opened: the emulator when it
/// is a socket (`iscsid -n PATH`), else (on OpenBSD) `/dev/vscsi0`. The
/// caller keeps the batching contract of `Device` (the relay does), so the
/// emulator client may hold frames until `flush` and prefetch write data.
pub fn from_fd(fd: OwnedFd) -> Result<Box<dyn Device>, DevError> {
    let st = nix::sys::stat::fstat(&fd).map_err(io::Error::from)?;
    let fmt = st.st_mode & libc::S_IFMT;
    if fmt == libc::S_IFSOCK {
        return Ok(Box::new(emu::EmuDev::batched(fd)?));
    }
    #[cfg(target_os = "openbsd")]
    if fmt == libc::S_IFCHR {
        return Ok(Box::new(openbsd::VscsiDev::new(fd)));
    }
    Err(DevError::Io(io::ErrorKind::Unsupported.into()))
}

// The protocol core has its own words for direction and outcome; these
// are the only places they meet the device's.
impl From<Dir> for proto::scsi::Direction {
    fn from(d: Dir) -> Self {
        match d {
            Dir::None => proto::scsi::Direction::None,
            Dir::Read => proto::scsi::Direction::Read,
            Dir::Write => proto::scsi::Direction::Write,
        }
    }
}

impl From<proto::scsi::Direction> for Dir {
    fn from(d: proto::scsi::Direction) -> Self {
        match d {
            proto::scsi::Direction::None => Dir::None,
            proto::scsi::Direction::Read => Dir::Read,
            proto::scsi::Direction::Write => Dir::Write,
        }
    }
}

impl From<proto::scsi::Outcome> for Status {
    fn from(o: proto::scsi::Outcome) -> Self {
        match o {
            proto::scsi::Outcome::Good => Status::Done,
            proto::scsi::Outcome::Sense => Status::Sense,
            proto::scsi::Outcome::Retry => Status::Reset,
            proto::scsi::Outcome::Failed => Status::Err,
        }
    }
}
