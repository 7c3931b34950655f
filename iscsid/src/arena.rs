//! The data arena: one shared memory region, mapped by the relay and the
//! engine, that command data crosses between them in. Only a slot number
//! travels on their socket; the data stays where the device put it (write)
//! or where the engine put it (read).
//!
//! Copies of a command's data, counting every copy of every byte
//! (user-space memcpy and kernel copyin/copyout alike); keep this true:
//!
//! READ, any number of Data-In PDUs:
//!   1. kernel: TCP receive buffer -> the engine's receive buffer (read(2))
//!   2. engine: receive buffer -> the command's slot, each Data-In's data
//!      where it belongs (`Framer::hold_data_in`, `Task::data_in`,
//!      `SlotPlacement`)
//!   3. kernel: the slot -> the kernel's buffer (VSCSI_DATA_READ; the
//!      emulator's socket write when it stands in for the kernel)
//!
//! The core gathers the data itself, and the engine copies it into the
//! slot at completion (one copy more), for the few commands whose answer
//! it reads: READ CAPACITY (it learns LUN sizes) and its own.
//!
//! WRITE:
//!   1. kernel: the kernel's buffer -> the slot (VSCSI_DATA_WRITE)
//!   2. engine: the slot -> the task's buffer (`Engine::command`), kept
//!      for Data-Out after R2Ts and for reissue on a new connection, and
//!      safe from the relay's reuse of the slot after the completion
//!   3. kernel: the task's buffer -> TCP (writev(2) of the headers and the
//!      data where it is: `proto::tx`)
//!
//! Through the socket instead, each way cost one user copy and two kernel
//! copies more (compose into the imsg buffer, write(2), read(2)) and a
//! 64 KiB command took several wake-ups on each side. A command finds no
//! slot when more than SLOT_SIZE (only the emulator asks that much) or
//! when every slot is taken; its data then goes inline in the message.

use std::fmt;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;

use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

use crate::procmsg::MAXPHYS;

/// One slot holds the most data one vscsi(4) command moves.
pub const SLOT_SIZE: usize = MAXPHYS;
/// Commands whose data can be in the arena at once: 16 LUNs busy at the
/// kernel's 16 openings each. Pages are touched only as slots are used,
/// and the free list hands out the last slot given back first, so a
/// steady load keeps using the same few pages.
pub const SLOTS: usize = 256;
/// The region's size: 16 MiB of address space.
pub const ARENA_SIZE: usize = SLOT_SIZE * SLOTS;

/// A slot's number; travels in the relay<->engine messages.
pub type Slot = u16;

const _: () = assert!(SLOTS <= Slot::MAX as usize + 1);

#[derive(Debug)]
pub enum ArenaError {
    Sys(&'static str, nix::Error),
    /// No random bytes for the region's name.
    Random,
    /// The descriptor is not a region of ARENA_SIZE bytes.
    Size(u64),
}

impl fmt::Display for ArenaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArenaError::Sys(what, e) => write!(f, "data arena: {what}: {e}"),
            ArenaError::Random => f.write_str("data arena: getrandom failed"),
            ArenaError::Size(n) => {
                write!(f, "data arena: {n} bytes, expected {ARENA_SIZE}")
            }
        }
    }
}

impl std::error::Error for ArenaError {}

/// The parent's part: a new region of ARENA_SIZE bytes that no file name
/// reaches, for both children to map. Linux: memfd_create(2). OpenBSD:
/// shm_open(3) under a random name, unlinked at once, as shm_mkstemp(3)
/// does; before any chroot or pledge.
pub fn create() -> Result<OwnedFd, ArenaError> {
    let fd = anonymous_shm()?;
    nix::unistd::ftruncate(&fd, ARENA_SIZE as i64).map_err(|e| ArenaError::Sys("ftruncate", e))?;
    Ok(fd)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn anonymous_shm() -> Result<OwnedFd, ArenaError> {
    use nix::sys::memfd::{memfd_create, MFdFlags};
    memfd_create(c"iscsid-arena", MFdFlags::MFD_CLOEXEC)
        .map_err(|e| ArenaError::Sys("memfd_create", e))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn anonymous_shm() -> Result<OwnedFd, ArenaError> {
    use nix::fcntl::OFlag;
    use nix::sys::mman::{shm_open, shm_unlink};
    use nix::sys::stat::Mode;
    let mut r = [0u8; 8];
    getrandom::getrandom(&mut r).map_err(|_| ArenaError::Random)?;
    let name = format!("/iscsid.{:016x}", u64::from_ne_bytes(r));
    let fd = shm_open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
        Mode::S_IRUSR | Mode::S_IWUSR,
    )
    .map_err(|e| ArenaError::Sys("shm_open", e))?;
    shm_unlink(name.as_str()).map_err(|e| ArenaError::Sys("shm_unlink", e))?;
    Ok(fd)
}

/// The region as one process maps it.
///
/// Who may touch a slot: the relay, until it sends the command naming it;
/// then the engine, until it sends that command's completion; then the
/// relay again, which frees it. Each process reads and writes only the
/// slots it holds, so within that rule no slot is written by one process
/// while the other reads it. The relay never takes a slot number from the
/// engine (it keeps its own record per tag). An engine that broke the rule
/// (a compromised one) could write a slot while the relay hands it to the
/// device: a data race in Rust's terms, but the relay never interprets
/// those bytes, it only passes them to the kernel (VSCSI_DATA_READ copies
/// them in) or to the emulator's socket; the worst outcome is wrong data
/// for the engine's own commands, which it could send anyway.
pub struct Arena {
    base: NonNull<u8>,
}

// SAFETY: an Arena owns its mapping as a Vec owns its buffer; moving it to
// another thread moves that ownership, and `get`/`get_mut` borrow it as
// usual. (Only the tests move one: each process uses its arena on one
// thread.)
unsafe impl Send for Arena {}

impl Arena {
    /// Maps the region `fd` refers to, after checking its size. The
    /// mapping does not need the descriptor: given by value, it is closed
    /// on return.
    pub fn map(fd: impl AsFd) -> Result<Arena, ArenaError> {
        let st = nix::sys::stat::fstat(&fd).map_err(|e| ArenaError::Sys("fstat", e))?;
        let size = u64::try_from(st.st_size).unwrap_or(0);
        if size != ARENA_SIZE as u64 {
            return Err(ArenaError::Size(size));
        }
        let len = NonZeroUsize::new(ARENA_SIZE).ok_or(ArenaError::Size(0))?;
        // SAFETY: a new mapping at an address the kernel picks, so it
        // overlaps nothing of ours; the size was checked against the
        // object's. It lives until `drop` unmaps it.
        let p = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd,
                0,
            )
        }
        .map_err(|e| ArenaError::Sys("mmap", e))?;
        Ok(Arena { base: p.cast() })
    }

    /// The first `len` bytes of slot `s`, or None if there is no such
    /// slot or it is shorter.
    pub fn get(&self, s: Slot, len: usize) -> Option<&[u8]> {
        let off = offset(s, len)?;
        // SAFETY: `offset` keeps [off, off + len) inside the mapping, which
        // lives as long as `self`; see the struct for why no other process
        // writes these bytes meanwhile.
        Some(unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(off), len) })
    }

    /// As `get`, to write.
    pub fn get_mut(&mut self, s: Slot, len: usize) -> Option<&mut [u8]> {
        let off = offset(s, len)?;
        // SAFETY: as in `get`; `&mut self` makes this the only reference
        // into the mapping in this process.
        Some(unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().add(off), len) })
    }
}

fn offset(s: Slot, len: usize) -> Option<usize> {
    (usize::from(s) < SLOTS && len <= SLOT_SIZE).then_some(usize::from(s) * SLOT_SIZE)
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: the mapping `map` made, of that length; no reference into
        // it outlives `self`.
        let _ = unsafe { munmap(self.base.cast(), ARENA_SIZE) };
    }
}

/// The relay's record of free slots: the most recently freed first.
pub struct FreeSlots {
    free: Vec<Slot>,
}

impl Default for FreeSlots {
    fn default() -> Self {
        FreeSlots {
            free: (0..SLOTS)
                .rev()
                .filter_map(|s| Slot::try_from(s).ok())
                .collect(),
        }
    }
}

impl FreeSlots {
    pub fn take(&mut self) -> Option<Slot> {
        self.free.pop()
    }

    pub fn give(&mut self, s: Slot) {
        self.free.push(s);
    }

    pub fn free(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_mappings_see_one_region() {
        let fd = create().expect("create");
        let mut a = Arena::map(&fd).expect("map a");
        let b = Arena::map(&fd).expect("map b");
        let last = (SLOTS - 1) as Slot;
        a.get_mut(last, SLOT_SIZE).unwrap()[SLOT_SIZE - 1] = 0x5a;
        a.get_mut(3, 4).unwrap().copy_from_slice(b"abcd");
        assert_eq!(b.get(last, SLOT_SIZE).unwrap()[SLOT_SIZE - 1], 0x5a);
        assert_eq!(b.get(3, 4).unwrap(), b"abcd");
        // Out of the region: no slice.
        assert!(b.get(SLOTS as Slot, 1).is_none());
        assert!(b.get(0, SLOT_SIZE + 1).is_none());
    }

    #[test]
    fn refuses_a_region_of_another_size() {
        let f = tempfile_of(4096);
        assert!(matches!(Arena::map(&f), Err(ArenaError::Size(4096))));
    }

    fn tempfile_of(n: i64) -> OwnedFd {
        let fd = anonymous_shm().expect("shm");
        nix::unistd::ftruncate(&fd, n).expect("ftruncate");
        fd
    }

    #[test]
    fn free_slots_last_in_first_out() {
        let mut f = FreeSlots::default();
        assert_eq!(f.free(), SLOTS);
        let a = f.take().unwrap();
        let b = f.take().unwrap();
        assert_eq!((a, b), (0, 1));
        f.give(a);
        assert_eq!(f.take(), Some(a));
        while f.take().is_some() {}
        assert_eq!(f.free(), 0);
    }
}
