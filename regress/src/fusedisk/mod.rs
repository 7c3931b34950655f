//! The emulator's attached disks as files, through FUSE, so that real
//! programs (fio, mkfs, e2fsck, the kernel's loop driver and ext4) judge
//! them: every read and write of `DIR/t<target>l<lun>` goes kernel FUSE ->
//! this file system -> `Emulator` (playing sd(4)) -> iscsid's relay ->
//! engine -> the target.
//!
//! * One regular file per attached disk, `blocks * block_size` bytes long,
//!   listed from the emulator's current topology on every lookup, so disks
//!   that attach or detach later come and go.
//! * Files are opened with `FOPEN_DIRECT_IO`: there is no page cache in
//!   this layer, every read and write reaches the emulator (caches above,
//!   such as ext4's on a loop device, belong to the programs being tested).
//!   `FOPEN_PARALLEL_DIRECT_WRITES` keeps the kernel from serialising
//!   writes under the inode lock, and the session runs `FUSE_THREADS`
//!   threads, so a queue depth above one reaches the emulator as that many
//!   commands in flight.
//! * Reads and writes go to the emulator at block granularity, in pieces
//!   of at most `MAXPHYS` (what sd(4) gets from physio on OpenBSD); the
//!   partial blocks at either end of an unaligned write are read, merged
//!   and written back (read-modify-write) while claimed, so that two
//!   unaligned writes to disjoint bytes of one block both survive.
//! * fsync is SYNCHRONIZE CACHE; close (FUSE FLUSH) issues it only when
//!   the disk was written since the last one, as sdclose does for a dirty
//!   disk.

mod os;
mod rig;

pub use os::{e2fsck, mkfs_ext4, run, FsMount, LoopDev};
pub use rig::{disk_conf, FuseRig};

use std::collections::{HashSet, VecDeque};
use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, MountOption, OpenFlags, ReplyAttr,
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, Request, SessionACL,
    WriteFlags,
};

use crate::emulator::{DiskInfo, EmuError, Emulator};

/// OpenBSD's MAXPHYS: the largest transfer sd(4) sends as one command.
pub const MAXPHYS: usize = 64 * 1024;

/// Threads reading requests from /dev/fuse: vscsi's openings per LUN
/// (`EmuConfig::openings`), so one disk can be kept full.
pub const FUSE_THREADS: usize = 16;

/// The largest FUSE write we accept in one request; the kernel caps it at
/// its own max_pages (256 pages, 1 MiB, on Linux).
const MAX_WRITE: u32 = 1 << 20;

/// Requests the kernel may have outstanding in the background (async
/// reads and async direct I/O from io_uring, libaio and the loop driver),
/// well above `FUSE_THREADS` so the threads never starve.
const MAX_BACKGROUND: u16 = 64;

/// How long the kernel may cache names and attributes. Short: geometry
/// can change (a disk detaches, another attaches under the same name).
const TTL: Duration = Duration::from_secs(1);

/// Failed requests kept for `FuseMount::error_log`, the latest.
const ERROR_LOG_LEN: usize = 32;

/// Mode of the directory and of the disk files (root only, like /dev/rsd*).
const DIR_MODE: u16 = 0o700;
const DISK_MODE: u16 = 0o600;

/// The name of a disk's file: by (target, lun), which stay the same across
/// a detach and re-attach, unlike sd names.
pub fn file_name(d: &DiskInfo) -> String {
    format!("t{}l{}", d.target, d.lun)
}

fn parse_name(name: &OsStr) -> Option<(u32, u32)> {
    let s = name.to_str()?.strip_prefix('t')?;
    let (t, l) = s.split_once('l')?;
    // Only the canonical spelling, so each disk has exactly one name.
    let (t, l): (u32, u32) = (t.parse().ok()?, l.parse().ok()?);
    (format!("t{t}l{l}") == name.to_str()?).then_some((t, l))
}

/// Inode numbers: 1 is the directory; a disk's is (target + 1) << 32 | lun,
/// which never collides with it and is the same every time.
fn disk_ino(target: u32, lun: u32) -> INodeNo {
    INodeNo((u64::from(target) + 1) << 32 | u64::from(lun))
}

fn ino_disk(ino: INodeNo) -> Option<(u32, u32)> {
    let t = (ino.0 >> 32).checked_sub(1)?;
    Some((u32::try_from(t).ok()?, ino.0 as u32))
}

/// What went through the file system since it was mounted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsStats {
    pub reads: u64,
    pub writes: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Writes that needed a read-modify-write of a partial block.
    pub rmw: u64,
    /// SYNCHRONIZE CACHE commands sent (fsync, and close of a dirty disk).
    pub syncs: u64,
    /// Requests answered with an error from the emulator.
    pub errors: u64,
    /// Most reads and writes that were ever being served at once.
    pub peak_concurrent: u64,
}

#[derive(Default)]
struct Counters {
    reads: AtomicU64,
    writes: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    rmw: AtomicU64,
    syncs: AtomicU64,
    errors: AtomicU64,
    concurrent: AtomicU64,
    peak_concurrent: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> FsStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FsStats {
            reads: g(&self.reads),
            writes: g(&self.writes),
            bytes_read: g(&self.bytes_read),
            bytes_written: g(&self.bytes_written),
            rmw: g(&self.rmw),
            syncs: g(&self.syncs),
            errors: g(&self.errors),
            peak_concurrent: g(&self.peak_concurrent),
        }
    }
}

/// Counts one read or write as being served until dropped.
struct Busy<'a>(&'a Counters);

impl<'a> Busy<'a> {
    fn new(c: &'a Counters) -> Busy<'a> {
        let now = c.concurrent.fetch_add(1, Ordering::AcqRel) + 1;
        c.peak_concurrent.fetch_max(now, Ordering::AcqRel);
        Busy(c)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.concurrent.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Blocks claimed by a read-modify-write: (target, lun, lba).
type BlockId = (u32, u32, u64);

#[derive(Default)]
struct EdgeClaims {
    held: Mutex<HashSet<BlockId>>,
    freed: Condvar,
}

/// The partial blocks of one unaligned write, held until dropped.
struct Claim<'a> {
    c: &'a EdgeClaims,
    blocks: Vec<BlockId>,
}

impl EdgeClaims {
    /// Waits until none of `blocks` is claimed, then claims them all at
    /// once (never one by one, so two writers cannot deadlock).
    fn claim(&self, blocks: Vec<BlockId>) -> Claim<'_> {
        let mut held = self.held.lock().expect("claims");
        while blocks.iter().any(|b| held.contains(b)) {
            held = self.freed.wait(held).expect("claims");
        }
        held.extend(blocks.iter().copied());
        Claim { c: self, blocks }
    }
}

#[cfg(test)]
impl EdgeClaims {
    fn try_claim(&self, blocks: &[BlockId]) -> Option<Claim<'_>> {
        let mut held = self.held.lock().expect("claims");
        if blocks.iter().any(|b| held.contains(b)) {
            return None;
        }
        held.extend(blocks.iter().copied());
        Some(Claim {
            c: self,
            blocks: blocks.to_vec(),
        })
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut held = self.c.held.lock().expect("claims");
        for b in &self.blocks {
            held.remove(b);
        }
        self.c.freed.notify_all();
    }
}

/// The FUSE file system over an emulator's disks.
pub struct DiskFs {
    emu: Arc<Emulator>,
    ctr: Arc<Counters>,
    claims: EdgeClaims,
    /// The latest failures, for the report of a failed test.
    errlog: Arc<Mutex<VecDeque<String>>>,
    /// Disks written since their last SYNCHRONIZE CACHE (sd's SDF_DIRTY).
    dirty: Mutex<HashSet<(u32, u32)>>,
    uid: u32,
    gid: u32,
    mounted_at: SystemTime,
}

fn errno(e: &EmuError) -> Errno {
    match e {
        // What a read of a detached sd(4) gets.
        EmuError::NotConnected | EmuError::NoSuchDisk => Errno::ENXIO,
        EmuError::OutOfRange => Errno::ENOSPC,
        EmuError::Invalid(_) => Errno::EINVAL,
        _ => Errno::EIO,
    }
}

impl DiskFs {
    pub fn new(emu: Arc<Emulator>) -> DiskFs {
        DiskFs {
            emu,
            ctr: Arc::default(),
            claims: EdgeClaims::default(),
            errlog: Arc::default(),
            dirty: Mutex::default(),
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            mounted_at: SystemTime::now(),
        }
    }

    /// The attached disk at (target, lun) with its current geometry; a disk
    /// whose READ CAPACITY failed has no file.
    fn disk(&self, target: u32, lun: u32) -> Option<DiskInfo> {
        self.emu
            .disks()
            .into_iter()
            .find(|d| d.target == target && d.lun == lun && d.block_size > 0)
    }

    fn disks(&self) -> Vec<DiskInfo> {
        let mut v: Vec<DiskInfo> = self
            .emu
            .disks()
            .into_iter()
            .filter(|d| d.block_size > 0)
            .collect();
        v.sort_by_key(|d| (d.target, d.lun));
        v
    }

    fn attr(&self, ino: INodeNo, kind: FileType, perm: u16, size: u64, blksize: u32) -> FileAttr {
        let t = self.mounted_at;
        FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            kind,
            perm,
            nlink: if kind == FileType::Directory { 2 } else { 1 },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize,
            flags: 0,
        }
    }

    fn root_attr(&self) -> FileAttr {
        self.attr(INodeNo::ROOT, FileType::Directory, DIR_MODE, 0, 4096)
    }

    fn disk_attr(&self, d: &DiskInfo) -> FileAttr {
        self.attr(
            disk_ino(d.target, d.lun),
            FileType::RegularFile,
            DISK_MODE,
            d.blocks * u64::from(d.block_size),
            d.block_size,
        )
    }

    fn disk_of(&self, ino: INodeNo) -> Result<DiskInfo, Errno> {
        let (t, l) = ino_disk(ino).ok_or(Errno::ENOENT)?;
        self.disk(t, l).ok_or(Errno::ENXIO)
    }

    /// Blocks per command: MAXPHYS worth, at least one.
    fn chunk_blocks(d: &DiskInfo) -> u64 {
        (MAXPHYS as u64 / u64::from(d.block_size)).max(1)
    }

    fn read_blocks(&self, d: &DiskInfo, lba: u64, blocks: u64) -> Result<Vec<u8>, EmuError> {
        let mut out = Vec::with_capacity((blocks * u64::from(d.block_size)) as usize);
        let step = Self::chunk_blocks(d);
        let mut at = lba;
        while at < lba + blocks {
            let n = step.min(lba + blocks - at);
            out.extend_from_slice(&self.emu.read(d, at, n as u32)?);
            at += n;
        }
        Ok(out)
    }

    fn write_blocks(&self, d: &DiskInfo, lba: u64, data: &[u8]) -> Result<(), EmuError> {
        let bs = d.block_size as usize;
        let step = Self::chunk_blocks(d) as usize * bs;
        for (i, piece) in data.chunks(step).enumerate() {
            self.emu.write(d, lba + (i * step / bs) as u64, piece)?;
        }
        Ok(())
    }

    /// `len` bytes at `off` (already within the disk).
    fn read_at(&self, d: &DiskInfo, off: u64, len: usize) -> Result<Vec<u8>, EmuError> {
        let bs = u64::from(d.block_size);
        let first = off / bs;
        let end = (off + len as u64).div_ceil(bs);
        let data = self.read_blocks(d, first, end - first)?;
        let head = (off % bs) as usize;
        Ok(data[head..head + len].to_vec())
    }

    /// Writes `data` (not empty) at `off` (already within the disk).
    fn write_at(&self, d: &DiskInfo, off: u64, data: &[u8]) -> Result<(), EmuError> {
        let bs = u64::from(d.block_size);
        let first = off / bs;
        let end_byte = off + data.len() as u64;
        let last = end_byte.div_ceil(bs) - 1;
        let head = (off % bs) as usize;
        let tail = (end_byte % bs) as usize;
        if head == 0 && tail == 0 {
            return self.write_blocks(d, first, data);
        }
        self.ctr.rmw.fetch_add(1, Ordering::Relaxed);
        let mut edges = Vec::with_capacity(2);
        if head != 0 {
            edges.push((d.target, d.lun, first));
        }
        if tail != 0 && !edges.contains(&(d.target, d.lun, last)) {
            edges.push((d.target, d.lun, last));
        }
        let _claim = self.claims.claim(edges);
        let nblocks = (last - first + 1) as usize;
        let bsz = bs as usize;
        let mut buf = vec![0u8; nblocks * bsz];
        if head != 0 {
            buf[..bsz].copy_from_slice(&self.emu.read(d, first, 1)?);
        }
        if tail != 0 && (last != first || head == 0) {
            buf[(nblocks - 1) * bsz..].copy_from_slice(&self.emu.read(d, last, 1)?);
        }
        buf[head..head + data.len()].copy_from_slice(data);
        self.write_blocks(d, first, &buf)
    }

    fn sync(&self, d: &DiskInfo) -> Result<(), EmuError> {
        // Cleared before the command: a write that lands meanwhile marks
        // the disk dirty again and the next close syncs it.
        self.dirty.lock().expect("dirty").remove(&(d.target, d.lun));
        self.ctr.syncs.fetch_add(1, Ordering::Relaxed);
        self.emu.flush(d).inspect_err(|_| {
            self.dirty.lock().expect("dirty").insert((d.target, d.lun));
        })
    }

    /// Counts and logs a failed request; `what` says which.
    fn failed(&self, what: std::fmt::Arguments<'_>, e: &EmuError) -> Errno {
        self.ctr.errors.fetch_add(1, Ordering::Relaxed);
        let mut log = self.errlog.lock().expect("errlog");
        if log.len() == ERROR_LOG_LEN {
            log.pop_front();
        }
        log.push_back(format!("{what}: {e}"));
        errno(e)
    }
}

impl Filesystem for DiskFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Each is a request to the kernel; an older one that refuses keeps
        // its own value, which only costs concurrency.
        let _ = config.set_max_write(MAX_WRITE);
        let _ = config.set_max_background(MAX_BACKGROUND);
        // Async direct I/O: an io_submit/io_uring batch, or the loop
        // driver's requests, become that many FUSE requests at once.
        let _ = config.add_capabilities(InitFlags::FUSE_ASYNC_DIO);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent != INodeNo::ROOT {
            return reply.error(Errno::ENOENT);
        }
        match parse_name(name).and_then(|(t, l)| self.disk(t, l)) {
            Some(d) => reply.entry(&TTL, &self.disk_attr(&d), Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if ino == INodeNo::ROOT {
            return reply.attr(&TTL, &self.root_attr());
        }
        match self.disk_of(ino) {
            Ok(d) => reply.attr(&TTL, &self.disk_attr(&d)),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        if ino == INodeNo::ROOT {
            return reply.attr(&TTL, &self.root_attr());
        }
        let d = match self.disk_of(ino) {
            Ok(d) => d,
            Err(e) => return reply.error(e),
        };
        let a = self.disk_attr(&d);
        // A disk's size is its capacity: truncating it to what it already
        // is (as some programs do on open) is fine, anything else is not.
        // Owner, mode and times are not kept; accepting them keeps tools
        // that touch them working.
        match size {
            Some(s) if s != a.size => reply.error(Errno::EPERM),
            _ => reply.attr(&TTL, &a),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.disk_of(ino) {
            Ok(_) => reply.opened(
                FileHandle(0),
                FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_PARALLEL_DIRECT_WRITES,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let _busy = Busy::new(&self.ctr);
        let d = match self.disk_of(ino) {
            Ok(d) => d,
            Err(e) => return reply.error(e),
        };
        let disk_size = d.blocks * u64::from(d.block_size);
        if offset >= disk_size {
            return reply.data(&[]);
        }
        let len = u64::from(size).min(disk_size - offset) as usize;
        self.ctr.reads.fetch_add(1, Ordering::Relaxed);
        match self.read_at(&d, offset, len) {
            Ok(data) => {
                self.ctr
                    .bytes_read
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                reply.data(&data)
            }
            Err(e) => {
                reply.error(self.failed(format_args!("read {} at {offset}+{len}", d.name), &e))
            }
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let _busy = Busy::new(&self.ctr);
        let d = match self.disk_of(ino) {
            Ok(d) => d,
            Err(e) => return reply.error(e),
        };
        let disk_size = d.blocks * u64::from(d.block_size);
        // Like a block device: no room past the end, a short write at it.
        if offset >= disk_size && !data.is_empty() {
            return reply.error(Errno::ENOSPC);
        }
        let len = (data.len() as u64).min(disk_size.saturating_sub(offset)) as usize;
        if len == 0 {
            return reply.written(0);
        }
        self.ctr.writes.fetch_add(1, Ordering::Relaxed);
        self.dirty.lock().expect("dirty").insert((d.target, d.lun));
        match self.write_at(&d, offset, &data[..len]) {
            Ok(()) => {
                self.ctr
                    .bytes_written
                    .fetch_add(len as u64, Ordering::Relaxed);
                reply.written(len as u32)
            }
            Err(e) => {
                reply.error(self.failed(format_args!("write {} at {offset}+{len}", d.name), &e))
            }
        }
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let Ok(d) = self.disk_of(ino) else {
            // Gone since it was opened: nothing left to sync.
            return reply.ok();
        };
        if !self
            .dirty
            .lock()
            .expect("dirty")
            .contains(&(d.target, d.lun))
        {
            return reply.ok();
        }
        match self.sync(&d) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.failed(format_args!("sync {} on close", d.name), &e)),
        }
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let d = match self.disk_of(ino) {
            Ok(d) => d,
            Err(e) => return reply.error(e),
        };
        match self.sync(&d) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.failed(format_args!("fsync {}", d.name), &e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino != INodeNo::ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        let mut entries = vec![
            (INodeNo::ROOT, FileType::Directory, ".".to_string()),
            (INodeNo::ROOT, FileType::Directory, "..".to_string()),
        ];
        entries.extend(self.disks().iter().map(|d| {
            (
                disk_ino(d.target, d.lun),
                FileType::RegularFile,
                file_name(d),
            )
        }));
        // The offset is the index of the next entry.
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(*ino, i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok()
    }
}

/// A mounted `DiskFs`; dropping it unmounts.
pub struct FuseMount {
    session: Option<BackgroundSession>,
    dir: PathBuf,
    ctr: Arc<Counters>,
    errlog: Arc<Mutex<VecDeque<String>>>,
}

impl FuseMount {
    /// Mounts the disks of `emu` at `dir` (an existing directory).
    pub fn mount(emu: Arc<Emulator>, dir: &Path) -> io::Result<FuseMount> {
        let fs = DiskFs::new(emu);
        let ctr = Arc::clone(&fs.ctr);
        let errlog = Arc::clone(&fs.errlog);
        let mut cfg = Config::default();
        cfg.mount_options = vec![
            MountOption::FSName("iscsid-emu".into()),
            MountOption::Subtype("iscsi-disks".into()),
            MountOption::NoExec,
            MountOption::NoSuid,
            MountOption::NoDev,
        ];
        cfg.acl = SessionACL::Owner;
        cfg.n_threads = Some(FUSE_THREADS);
        // One /dev/fuse descriptor per thread: requests are not funnelled
        // through one queue read.
        cfg.clone_fd = true;
        let session = fuser::spawn_mount(fs, dir, &cfg)?;
        Ok(FuseMount {
            session: Some(session),
            dir: dir.to_path_buf(),
            ctr,
            errlog,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of disk `d`.
    pub fn file(&self, d: &DiskInfo) -> PathBuf {
        self.dir.join(file_name(d))
    }

    pub fn stats(&self) -> FsStats {
        self.ctr.snapshot()
    }

    /// The latest failed requests (what, and the emulator's error), oldest
    /// first.
    pub fn error_log(&self) -> Vec<String> {
        self.errlog
            .lock()
            .expect("errlog")
            .iter()
            .cloned()
            .collect()
    }

    /// Unmounts and waits for the session threads.
    pub fn unmount(mut self) -> io::Result<()> {
        match self.session.take() {
            Some(s) => s.umount_and_join(),
            None => Ok(()),
        }
    }
}

impl Drop for FuseMount {
    fn drop(&mut self) {
        let Some(s) = self.session.take() else {
            return;
        };
        if s.umount_and_join().is_err() {
            // Still busy (a loop device or an open file left behind by a
            // failed test): detach it lazily so the test run is not stuck;
            // the session ends when the last user lets go.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(parse_name(OsStr::new("t0l1")), Some((0, 1)));
        assert_eq!(parse_name(OsStr::new("t12l300")), Some((12, 300)));
        for bad in ["t01l1", "t0l", "tl1", "x0l1", "t0l1x", "t-1l1", "t0l+1"] {
            assert_eq!(parse_name(OsStr::new(bad)), None, "{bad}");
        }
    }

    #[test]
    fn inodes_round_trip_and_miss_the_root() {
        for (t, l) in [(0, 0), (0, 1), (7, 65535), (u32::MAX - 1, u32::MAX)] {
            let ino = disk_ino(t, l);
            assert_ne!(ino, INodeNo::ROOT);
            assert_eq!(ino_disk(ino), Some((t, l)));
        }
        assert_eq!(ino_disk(INodeNo::ROOT), None);
    }

    #[test]
    fn claims_exclude_each_other_only_on_shared_blocks() {
        let c = EdgeClaims::default();
        let a = c.claim(vec![(0, 1, 5), (0, 1, 9)]);
        assert!(c.try_claim(&[(0, 1, 9)]).is_none(), "shared block granted");
        assert!(c.try_claim(&[(0, 2, 9)]).is_some(), "other disk refused");
        let b = c.claim(vec![(0, 1, 6)]);
        drop(a);
        assert!(c.try_claim(&[(0, 1, 9), (0, 1, 5)]).is_some());
        assert!(c.try_claim(&[(0, 1, 6)]).is_none(), "still held by b");
        drop(b);
        assert!(c.try_claim(&[(0, 1, 6)]).is_some());
    }
}
