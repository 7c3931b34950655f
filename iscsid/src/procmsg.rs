//! Messages between iscsid's processes, all framed as imsg: the start-up
//! messages from the parent to each child, and the data path between the
//! relay and the engine.
//!
//! The kinds are plain `u32` constants, as `common::ctl::kind` is for the
//! control socket: the type is a `u32` on the wire and every reader needs
//! a catch-all for kinds it does not expect anyway.
//!
//! On the relay <-> engine channel write data travels with the command and
//! read data with the completion, so the engine never waits on the relay.
//! Both normally stay in the command's slot of the shared data arena
//! (`crate::arena`, which counts the copies): the command names the slot,
//! the completion says how much read data the engine left there. Data
//! without a slot goes inline, before the message's trailer.

use std::fmt;

use common::imsg::HEADER_SIZE;
use common::wire::{Reader, WireError, Writer};

use crate::arena::Slot;
use crate::vscsi::{Dir, I2t, Status, CDB_MAX, SENSE_LEN};

// parent -> child, at start-up only (see `crate::child::Startup`).

/// parent -> engine: the control listening socket (fd).
pub const CONTROL_SOCKET: u32 = 1;
/// parent -> relay, parent -> engine: one end of the relay<->engine channel (fd).
pub const RELAY_CHANNEL: u32 = 2;
/// parent -> relay: the vscsi device or emulator socket (fd).
pub const DEVICE: u32 = 3;
/// parent -> child: every descriptor has been sent; start working.
pub const GO: u32 = 4;
/// parent -> relay, parent -> engine: the shared data arena (fd).
pub const ARENA: u32 = 5;

// relay <-> engine.

/// relay -> engine: a command from the kernel (`Cmd`).
pub const CMD: u32 = 10;
/// engine -> relay: a completion (`Done`).
pub const DONE: u32 = 11;
/// engine -> relay: VSCSI_REQPROBE (target, lun; `encode_devevent`).
pub const PROBE: u32 = 12;
/// engine -> relay: VSCSI_REQDETACH (target, lun; `encode_devevent`).
pub const DETACH: u32 = 13;

/// OpenBSD's MAXPHYS: the most data one vscsi(4) command moves.
pub const MAXPHYS: usize = 64 << 10;
/// Largest data of one relay<->engine message. The emulator may send more
/// than MAXPHYS, up to this.
pub const MAX_DATA: usize = 16 << 20;
/// Largest relay<->engine message, the imsg size limit of that channel:
/// the data plus its trailer, with room to spare.
pub const MAX_RELAY_MSG: usize = MAX_DATA + 4096;
/// Largest relay<->engine message the kernel causes: MAXPHYS of data, the
/// longer trailer and the imsg header.
pub const MAX_KERNEL_MSG: usize = MAXPHYS + max(CMD_TRAILER, DONE_TRAILER) + HEADER_SIZE;
/// SO_SNDBUF and SO_RCVBUF of both ends of the relay<->engine channel.
/// OpenBSD's unix-stream default (32 KiB) holds half a MAXPHYS command, so
/// every large command would take several wake-ups on each side; this
/// holds a burst of RELAY_BURST full-size ones. It is SB_MAX of OpenBSD's
/// socketvar.h (256 KiB in the releases we read), the most setsockopt
/// accepts there without ENOBUFS. MAX_RELAY_MSG itself is no candidate:
/// 16 MiB is far above that limit and above what Linux grants without
/// SO_SNDBUFFORCE, and a stream socket need not hold a message whole, as
/// the imsg reader reassembles it.
pub const RELAY_SOCKBUF: usize = 256 << 10;
/// Full-size kernel commands the relay can hand over without waiting.
pub const RELAY_BURST: usize = 3;

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

// The imsg limit takes any message the relay forwards.
const _: () = assert!(MAX_DATA + max(CMD_TRAILER, DONE_TRAILER) + HEADER_SIZE <= MAX_RELAY_MSG);
// The socket buffers take the burst they are sized for.
const _: () = assert!(RELAY_SOCKBUF >= RELAY_BURST * MAX_KERNEL_MSG);

/// A kernel command and, for writes, all of its data: in its arena slot
/// if it has one, inline otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    pub i2t: I2t,
    pub slot: Option<Slot>,
    pub data: Vec<u8>,
}

/// A completion and, for reads, the data to hand to the kernel: the first
/// `in_slot` bytes of the command's slot, or inline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub tag: u32,
    pub status: Status,
    pub sense: Vec<u8>,
    pub in_slot: u32,
    pub data: Vec<u8>,
}

/// The slot field of a command that has none.
const NO_SLOT: u32 = u32::MAX;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MsgError {
    Wire(WireError),
    BadDir(u8),
    BadStatus(u8),
    BadSlot(u32),
    CdbTooLong(u8),
    SenseTooLong(usize),
}

impl fmt::Display for MsgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MsgError::Wire(e) => write!(f, "{e}"),
            MsgError::BadDir(d) => write!(f, "bad direction {d}"),
            MsgError::BadStatus(s) => write!(f, "bad status {s}"),
            MsgError::BadSlot(s) => write!(f, "bad arena slot {s}"),
            MsgError::CdbTooLong(n) => write!(f, "CDB of {n} bytes"),
            MsgError::SenseTooLong(n) => write!(f, "sense of {n} bytes"),
        }
    }
}

impl std::error::Error for MsgError {}

impl From<WireError> for MsgError {
    fn from(e: WireError) -> Self {
        MsgError::Wire(e)
    }
}

/// Bytes of the fixed part after a command's data.
pub const CMD_TRAILER: usize = 4 + 4 + 4 + 1 + 1 + CDB_MAX + 4 + 4;
/// Bytes of the fixed part after a completion's data.
pub const DONE_TRAILER: usize = 4 + 1 + 1 + SENSE_LEN + 4;

/// Splits a message into data and its fixed-size trailer. The fixed part
/// goes last so that the data is the front of the buffer the message came
/// in: truncating it off costs nothing, where a header would cost a copy
/// of every byte of data.
fn split_trailer(mut v: Vec<u8>, n: usize) -> Result<(Vec<u8>, Vec<u8>), MsgError> {
    let at = v
        .len()
        .checked_sub(n)
        .ok_or(MsgError::Wire(WireError::Short {
            want: n,
            have: v.len(),
        }))?;
    let t = v[at..].to_vec();
    v.truncate(at);
    Ok((v, t))
}

impl Cmd {
    pub fn trailer(i2t: &I2t, slot: Option<Slot>) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(i2t.tag)
            .u32(i2t.target)
            .u32(i2t.lun)
            .u8(u8::try_from(i2t.dir.raw()).unwrap_or(0))
            .u8(i2t.cdblen)
            .raw(&i2t.cdb)
            .u32(i2t.datalen)
            .u32(slot.map_or(NO_SLOT, u32::from));
        w.into_inner()
    }

    pub fn decode(v: Vec<u8>) -> Result<Cmd, MsgError> {
        let (data, t) = split_trailer(v, CMD_TRAILER)?;
        let mut r = Reader::new(&t);
        let tag = r.u32()?;
        let target = r.u32()?;
        let lun = r.u32()?;
        let d = r.u8()?;
        let dir = Dir::from_raw(i32::from(d)).ok_or(MsgError::BadDir(d))?;
        let cdblen = r.u8()?;
        if usize::from(cdblen) > CDB_MAX {
            return Err(MsgError::CdbTooLong(cdblen));
        }
        let mut cdb = [0u8; CDB_MAX];
        cdb.copy_from_slice(r.take(CDB_MAX)?);
        let datalen = r.u32()?;
        let slot = match r.u32()? {
            NO_SLOT => None,
            s => Some(Slot::try_from(s).map_err(|_| MsgError::BadSlot(s))?),
        };
        Ok(Cmd {
            i2t: I2t {
                tag,
                target,
                lun,
                cdb,
                cdblen,
                datalen,
                dir,
            },
            slot,
            data,
        })
    }
}

impl Done {
    pub fn trailer(tag: u32, status: Status, sense: &[u8], in_slot: u32) -> Vec<u8> {
        let sense = &sense[..sense.len().min(SENSE_LEN)];
        let mut padded = [0u8; SENSE_LEN];
        padded[..sense.len()].copy_from_slice(sense);
        let mut w = Writer::new();
        w.u32(tag)
            .u8(u8::try_from(status.raw()).unwrap_or(3))
            .u8(sense.len() as u8)
            .raw(&padded)
            .u32(in_slot);
        w.into_inner()
    }

    pub fn decode(v: Vec<u8>) -> Result<Done, MsgError> {
        let (data, t) = split_trailer(v, DONE_TRAILER)?;
        let mut r = Reader::new(&t);
        let tag = r.u32()?;
        let s = r.u8()?;
        let status = Status::from_raw(i32::from(s)).ok_or(MsgError::BadStatus(s))?;
        let n = usize::from(r.u8()?);
        if n > SENSE_LEN {
            return Err(MsgError::SenseTooLong(n));
        }
        let sense = r.take(SENSE_LEN)?[..n].to_vec();
        let in_slot = r.u32()?;
        Ok(Done {
            tag,
            status,
            sense,
            in_slot,
            data,
        })
    }
}

/// PROBE and DETACH payloads.
pub fn encode_devevent(target: i32, lun: i32) -> Vec<u8> {
    let mut w = Writer::new();
    w.i32(target).i32(lun);
    w.into_inner()
}

pub fn decode_devevent(b: &[u8]) -> Result<(i32, i32), MsgError> {
    let mut r = Reader::new(b);
    let v = (r.i32()?, r.i32()?);
    r.end()?;
    Ok(v)
}

/// Registers the relay<->engine channel for writable events only while
/// messages wait for room: otherwise the peer reading each batch would wake
/// the loop for nothing. `registered` says what it is registered for now.
pub fn want_writable(
    reg: &mio::Registry,
    ch: &common::imsg::ImsgBuf,
    token: mio::Token,
    registered: &mut bool,
) -> std::io::Result<()> {
    use mio::Interest;
    use std::os::fd::AsRawFd;
    let waiting = ch.queued() > 0;
    if waiting != *registered {
        let interest = if waiting {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let fd = ch.as_fd().as_raw_fd();
        reg.reregister(&mut mio::unix::SourceFd(&fd), token, interest)?;
        *registered = waiting;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn i2t() -> I2t {
        let mut cdb = [0u8; CDB_MAX];
        cdb[0] = 0x2a;
        I2t {
            tag: 7,
            target: 3,
            lun: 1,
            cdb,
            cdblen: 10,
            datalen: 4,
            dir: Dir::Write,
        }
    }

    #[test]
    fn kinds_are_distinct() {
        let kinds = [
            CONTROL_SOCKET,
            RELAY_CHANNEL,
            DEVICE,
            GO,
            ARENA,
            CMD,
            DONE,
            PROBE,
            DETACH,
        ];
        for (i, a) in kinds.iter().enumerate() {
            assert!(!kinds[i + 1..].contains(a), "kind {a} twice");
        }
    }

    #[test]
    fn cmd_round_trip() {
        let mut b = vec![1, 2, 3, 4];
        b.extend_from_slice(&Cmd::trailer(&i2t(), None));
        assert_eq!(Cmd::trailer(&i2t(), None).len(), CMD_TRAILER);
        let c = Cmd::decode(b).unwrap();
        assert_eq!((&c.i2t, c.slot), (&i2t(), None));
        assert_eq!(c.data, [1, 2, 3, 4]);
        let c = Cmd::decode(Cmd::trailer(&i2t(), Some(255))).unwrap();
        assert_eq!((c.slot, c.data.len()), (Some(255), 0));
        let mut bad = Cmd::trailer(&i2t(), None);
        bad[CMD_TRAILER - 4..].copy_from_slice(&0x1_0000u32.to_be_bytes());
        assert_eq!(Cmd::decode(bad), Err(MsgError::BadSlot(0x1_0000)));
    }

    #[test]
    fn done_round_trip_and_garbage() {
        let mut b = vec![0xaa];
        b.extend_from_slice(&Done::trailer(9, Status::Sense, &[0x70, 0, 5], 77));
        let d = Done::decode(b).unwrap();
        assert_eq!((d.tag, d.status, d.in_slot), (9, Status::Sense, 77));
        assert_eq!(d.sense, [0x70, 0, 5]);
        assert_eq!(d.data, [0xaa]);
        let mut bad = Done::trailer(1, Status::Done, &[], 0);
        bad[4] = 9;
        assert_eq!(Done::decode(bad), Err(MsgError::BadStatus(9)));
        let mut bad = Done::trailer(1, Status::Done, &[], 0);
        bad[5] = 19;
        assert_eq!(Done::decode(bad), Err(MsgError::SenseTooLong(19)));
        assert!(Done::decode(vec![0, 0]).is_err());
        assert!(Cmd::decode(vec![0; CMD_TRAILER - 1]).is_err());
        let mut bad = Cmd::trailer(&i2t(), None);
        bad[13] = 17;
        assert_eq!(Cmd::decode(bad), Err(MsgError::CdbTooLong(17)));
        let mut bad = Cmd::trailer(&i2t(), None);
        bad[12] = 5;
        assert_eq!(Cmd::decode(bad), Err(MsgError::BadDir(5)));
    }
}
