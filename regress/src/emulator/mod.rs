//! The vscsi(4) emulator: plays OpenBSD's kernel side of `/dev/vscsi0`
//! (vscsi, scsibus and sd) on a unix socket, for tests and benchmarks.
//!
//! `iscsid -n PATH` (or an `EmuDev` in-process) connects where
//! `Emulator::listen` listens, exactly as the parent opens the device: one
//! open at a time, and closing it resets every outstanding command and
//! detaches every disk. The relay's REQPROBE makes the emulator discover
//! LUNs as scsiconf does; tests then drive the disks with `read`, `write`
//! and `flush` from as many threads as they like, send raw CDBs with
//! `command`, or keep many commands in flight from one thread with a
//! `Submitter` (benchmarks).

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

pub use iscsid::vscsi::{Dir, Status};

mod disk;
mod link;
mod probe;
pub mod scsi;
mod sem;
mod shared;
mod topo;
mod writer;

use link::{Conn, Req};
use shared::Shared;

/// `saa_openings` of vscsi(4) (vscsi.c 1.64, vscsi_attach): what the
/// midlayer gives each link, its queue depth.
pub const VSCSI_OPENINGS: usize = 16;

/// Tunables; the defaults are vscsi(4)'s and sd(4)'s.
#[derive(Debug, Clone)]
pub struct EmuConfig {
    /// Commands outstanding per (target, lun): vscsi's `saa_openings`
    /// (`VSCSI_OPENINGS`). A LUN without tagged queueing gets one.
    pub openings: usize,
    /// Limit for each probe command (scsiconf uses 10 s).
    pub probe_timeout: Duration,
    /// Limit for each read/write/flush attempt (sd uses 60 s).
    pub io_timeout: Duration,
    /// Reissues after XS_RESET or UNIT ATTENTION (sd's SDRETRIES).
    pub retries: u32,
}

impl Default for EmuConfig {
    fn default() -> Self {
        EmuConfig {
            openings: VSCSI_OPENINGS,
            probe_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(60),
            retries: 4,
        }
    }
}

/// An attached sd(4) disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskInfo {
    pub name: String,
    pub target: u32,
    pub lun: u32,
    pub vendor: String,
    pub product: String,
    pub revision: String,
    /// 0 with `blocks` 0 when READ CAPACITY failed ("drive offline").
    pub block_size: u32,
    pub blocks: u64,
    /// Commands the midlayer lets the link have outstanding:
    /// `EmuConfig::openings`, or 1 when its INQUIRY lacks CmdQue.
    pub openings: usize,
}

/// An attached device that is not a disk (a controller LUN, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevInfo {
    pub target: u32,
    pub lun: u32,
    pub device_type: u8,
    pub vendor: String,
    pub product: String,
    /// As `DiskInfo::openings`.
    pub openings: usize,
}

/// A REQDETACH that named an attached link while the relay had taken
/// commands of it and not completed them. vscsi's detach task would sleep
/// in `scsi_link_shutdown` until the device closes, holding up every later
/// probe and detach; the daemon must not ask for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetachViolation {
    /// What the REQDETACH named (-1 is a wildcard).
    pub target: i32,
    pub lun: i32,
    /// The link, and the tags of its commands the relay had outstanding.
    pub link: (u32, u32),
    pub outstanding: Vec<u32>,
}

/// How a command ended, as the kernel's `scsi_xfer` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdResult {
    pub status: Status,
    /// Valid with `Status::Sense` only; zero otherwise.
    pub sense: [u8; 18],
    /// The read data that arrived (`datalen - resid` bytes).
    pub data: Vec<u8>,
    /// `datalen` minus the bytes moved, whatever the direction.
    pub resid: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmuStats {
    /// Opens accepted, and opens refused because the device was busy.
    pub connections: u64,
    pub refused: u64,
    /// Commands sent (I2T) and completed by the relay (T2I).
    pub commands: u64,
    pub completed: u64,
    /// Commands that ended in XS_RESET, by the relay or by a close.
    pub resets: u64,
    /// Bytes accepted from DATA_READ, and handed out in WRITE_DATA.
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Probe and detach tasks run.
    pub tasks: u64,
    pub in_flight: u64,
}

#[derive(Debug)]
pub enum EmuError {
    /// The device is not open (or closed under the command).
    NotConnected,
    /// The command did not complete in time; it stays outstanding.
    Timeout,
    /// The disk is not (or no longer) attached.
    NoSuchDisk,
    /// CHECK CONDITION that was not retried.
    Check {
        sense: [u8; 18],
    },
    /// XS_DRIVER_STUFFUP, or XS_RESET after the retries ran out.
    Failed(Status),
    /// The I/O goes past the end of the disk.
    OutOfRange,
    /// The command moved fewer bytes than asked.
    Short {
        resid: u32,
    },
    /// A request the emulator cannot express.
    Invalid(&'static str),
    Io(io::Error),
}

impl fmt::Display for EmuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmuError::NotConnected => f.write_str("vscsi device not open"),
            EmuError::Timeout => f.write_str("command timed out"),
            EmuError::NoSuchDisk => f.write_str("no such disk"),
            EmuError::Check { sense } => match scsi::Sense::parse(sense) {
                Some(s) => write!(
                    f,
                    "check condition: key {:#x} asc {:#04x} ascq {:#04x}",
                    s.key, s.asc, s.ascq
                ),
                None => f.write_str("check condition with unparseable sense"),
            },
            EmuError::Failed(s) => write!(f, "command failed: {s:?}"),
            EmuError::OutOfRange => f.write_str("I/O past the end of the disk"),
            EmuError::Short { resid } => write!(f, "short transfer: {resid} bytes not moved"),
            EmuError::Invalid(m) => write!(f, "invalid request: {m}"),
            EmuError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for EmuError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EmuError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for EmuError {
    fn from(e: io::Error) -> Self {
        EmuError::Io(e)
    }
}

/// The emulated kernel. Dropping it closes the device and stops every
/// thread it started.
pub struct Emulator {
    sh: Arc<Shared>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    path: PathBuf,
}

impl Emulator {
    /// Listens at `path` with the default configuration.
    pub fn listen(path: &Path) -> io::Result<Emulator> {
        Emulator::listen_with(path, EmuConfig::default())
    }

    pub fn listen_with(path: &Path, cfg: EmuConfig) -> io::Result<Emulator> {
        // A socket left by an earlier run would make bind fail; anything
        // else at the path is not ours to remove.
        if let Ok(m) = fs::symlink_metadata(path) {
            if m.file_type().is_socket() {
                fs::remove_file(path)?;
            }
        }
        let l = UnixListener::bind(path)?;
        l.set_nonblocking(true)?;
        let sh = Arc::new(Shared::new(cfg));
        let stop = Arc::new(AtomicBool::new(false));
        let (sh2, stop2) = (Arc::clone(&sh), Arc::clone(&stop));
        let accept = thread::Builder::new()
            .name("vscsi-emu-accept".into())
            .spawn(move || link::accept_loop(sh2, l, stop2))?;
        Ok(Emulator {
            sh,
            stop,
            accept: Some(accept),
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn config(&self) -> &EmuConfig {
        &self.sh.cfg
    }

    /// Whether the device is open.
    pub fn connected(&self) -> bool {
        self.sh.current().is_some()
    }

    pub fn wait_connected(&self, timeout: Duration) -> Result<(), EmuError> {
        self.sh.wait_for(timeout, |_| self.sh.current().map(|_| ()))
    }

    pub fn disks(&self) -> Vec<DiskInfo> {
        self.sh.topo().disks.clone()
    }

    /// Attached devices that are not disks.
    pub fn devices(&self) -> Vec<DevInfo> {
        self.sh.topo().devices.clone()
    }

    /// Waits until `pred` holds for the attached disks and returns them.
    pub fn wait_disks(
        &self,
        pred: impl Fn(&[DiskInfo]) -> bool,
        timeout: Duration,
    ) -> Result<Vec<DiskInfo>, EmuError> {
        self.sh
            .wait_for(timeout, |t| pred(&t.disks).then(|| t.disks.clone()))
    }

    pub fn wait_devices(
        &self,
        pred: impl Fn(&[DevInfo]) -> bool,
        timeout: Duration,
    ) -> Result<Vec<DevInfo>, EmuError> {
        self.sh
            .wait_for(timeout, |t| pred(&t.devices).then(|| t.devices.clone()))
    }

    /// Waits until `n` probe/detach tasks have run since `listen`.
    pub fn wait_tasks(&self, n: u64, timeout: Duration) -> Result<(), EmuError> {
        self.sh
            .wait_for(timeout, |t| (t.tasks_done >= n).then_some(()))
    }

    fn conn(&self) -> Result<Arc<Conn>, EmuError> {
        self.sh.current().ok_or(EmuError::NotConnected)
    }

    /// Sends one CDB to (target, lun) and waits for its completion, with no
    /// retries. `out` is the write data (`datalen` bytes) for `Dir::Write`
    /// and ignored otherwise.
    #[allow(clippy::too_many_arguments)]
    pub fn command(
        &self,
        target: u32,
        lun: u32,
        cdb: &[u8],
        dir: Dir,
        datalen: u32,
        out: &[u8],
        timeout: Duration,
    ) -> Result<CmdResult, EmuError> {
        let out: Arc<[u8]> = if dir == Dir::Write {
            Arc::from(out)
        } else {
            Arc::from(&[][..])
        };
        let req = Req {
            target,
            lun,
            cdb,
            dir,
            datalen,
            out,
        };
        self.conn()?.exec(&self.sh, req, timeout)
    }

    /// The attached disk `d` names, with its current geometry.
    fn attached(&self, d: &DiskInfo) -> Result<DiskInfo, EmuError> {
        self.sh
            .topo()
            .disks
            .iter()
            .find(|x| x.name == d.name && x.target == d.target && x.lun == d.lun)
            .cloned()
            .ok_or(EmuError::NoSuchDisk)
    }

    /// Reads `blocks` blocks at `lba` as sd(4) would.
    pub fn read(&self, disk: &DiskInfo, lba: u64, blocks: u32) -> Result<Vec<u8>, EmuError> {
        let conn = self.conn()?;
        disk::read(&self.sh, &conn, &self.attached(disk)?, lba, blocks)
    }

    /// Writes `data` (whole blocks) at `lba` as sd(4) would.
    pub fn write(&self, disk: &DiskInfo, lba: u64, data: &[u8]) -> Result<(), EmuError> {
        let conn = self.conn()?;
        disk::write(&self.sh, &conn, &self.attached(disk)?, lba, data)
    }

    /// SYNCHRONIZE CACHE(10) of the whole disk.
    pub fn flush(&self, disk: &DiskInfo) -> Result<(), EmuError> {
        let conn = self.conn()?;
        disk::flush(&self.sh, &conn, &self.attached(disk)?)
    }

    /// A handle that starts reads and writes without waiting (see
    /// `Submitter`).
    pub fn submitter(&self) -> Submitter {
        Submitter {
            sh: Arc::clone(&self.sh),
        }
    }

    pub fn stats(&self) -> EmuStats {
        let c = &self.sh.ctr;
        let tasks = self.sh.topo().tasks_done;
        let get = |a| self.sh.load(a);
        EmuStats {
            connections: get(&c.connections),
            refused: get(&c.refused),
            commands: get(&c.commands),
            completed: get(&c.completed),
            resets: get(&c.resets),
            bytes_read: get(&c.bytes_read),
            bytes_written: get(&c.bytes_written),
            tasks,
            in_flight: self.sh.current().map_or(0, |c| c.in_flight() as u64),
        }
    }

    /// Violations of the device protocol by the relay (what the kernel
    /// would answer with EFAULT, ENOMEM or EINVAL, and malformed frames).
    pub fn protocol_errors(&self) -> u64 {
        self.sh.ctr.protocol_errors.load(Ordering::Relaxed)
    }

    /// Every REQDETACH so far that named a link with commands outstanding
    /// to the relay.
    pub fn detach_violations(&self) -> Vec<DetachViolation> {
        self.sh.detach_violations()
    }

    /// The most commands (target, lun) had outstanding at once since the
    /// device was opened: never more than the link's openings.
    pub fn peak_outstanding(&self, target: u32, lun: u32) -> usize {
        self.sh.current().map_or(0, |c| c.peak((target, lun)))
    }

    /// The latest protocol errors and notes, oldest first.
    pub fn protocol_log(&self) -> Vec<String> {
        self.sh.log_lines()
    }
}

/// Starts reads and writes without waiting for them, so that one thread
/// can keep a queue depth (as an application doing asynchronous I/O does);
/// each completion runs a callback. Cheap to clone; it outlives nothing:
/// once the emulator is dropped every submit fails with `NotConnected`.
#[derive(Clone)]
pub struct Submitter {
    sh: Arc<Shared>,
}

impl Submitter {
    /// Starts a read (`out` None) or a write of `out` (exactly `blocks`
    /// blocks) at `lba`. There are no retries, and no waiting for an
    /// opening: with all of the LUN's openings in use this fails at once
    /// with `Timeout`. `done` gets what `read`/`write` would return (the
    /// data in `CmdResult::data`); it runs on the emulator's reader
    /// thread, so it must not block, and it may submit again.
    pub fn submit(
        &self,
        disk: &DiskInfo,
        lba: u64,
        blocks: u32,
        out: Option<Arc<[u8]>>,
        done: impl FnOnce(Result<CmdResult, EmuError>) + Send + 'static,
    ) -> Result<(), EmuError> {
        let conn = self.sh.current().ok_or(EmuError::NotConnected)?;
        if !self.sh.has_link(disk.target, disk.lun) {
            return Err(EmuError::NoSuchDisk);
        }
        let cb: link::Callback = Box::new(move |r| done(disk::judge_rw(r)));
        disk::start_rw(&self.sh, &conn, disk, lba, blocks, out, cb)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        if let Some(c) = self.sh.current() {
            c.shutdown();
        }
        // No thread starts once the accept loop is gone.
        for h in self.sh.take_threads() {
            let _ = h.join();
        }
        let _ = fs::remove_file(&self.path);
    }
}
