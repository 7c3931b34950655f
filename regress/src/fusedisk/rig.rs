//! The emulator, iscsid and the FUSE mount of the attached disks in one
//! value, for tests, the demo and `iscsi-fuse`. Unlike `harness::Rig` the
//! emulator is shared (`Arc`): the FUSE session's threads hold it too.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::emulator::{DiskInfo, Emulator};
use crate::harness::{Ctl, Daemon, Scratch, Target, IQN_DISK};

use super::FuseMount;

/// How long the disks of a fresh session may take to attach (login and
/// the probe; the harness waits as long).
pub const ATTACH_TIMEOUT: Duration = Duration::from_secs(20);

pub struct FuseRig {
    // Field order is drop order: the mount goes before the daemon that
    // serves it, the daemon logs out before the emulator closes.
    pub fuse: FuseMount,
    pub ctl: Ctl,
    pub daemon: Daemon,
    pub emu: Arc<Emulator>,
    dir: Scratch,
}

/// An iscsi.conf with one session, `disk`, to the harness target's disk
/// target.
pub fn disk_conf(target: &Target) -> String {
    format!(
        "target disk {{\n\ttargetaddr 127.0.0.1 port {}\n\ttargetname \"{IQN_DISK}\"\n}}\n",
        target.port
    )
}

impl FuseRig {
    /// Starts the emulator and iscsid, reloads `conf`, waits for `disks`
    /// disks and mounts them in the rig's scratch directory.
    pub fn start(conf: &str, disks: usize) -> Result<FuseRig, String> {
        Self::start_at(conf, disks, None)
    }

    /// `start`, mounting at `at` (an existing directory) when given.
    pub fn start_at(conf: &str, disks: usize, at: Option<&Path>) -> Result<FuseRig, String> {
        let dir = Scratch::new("fuse");
        let dev = dir.join("vscsi0.sock");
        let emu = Arc::new(Emulator::listen(&dev).map_err(|e| format!("emulator: {e}"))?);
        let daemon = Daemon::start(&dev);
        let ctl = daemon.ctl();
        ctl.write_config(conf);
        let o = ctl.run(&["reload"]);
        if !o.status.success() {
            return Err(format!(
                "iscsictl reload: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ));
        }
        emu.wait_disks(|d| d.len() >= disks, ATTACH_TIMEOUT)
            .map_err(|e| {
                format!(
                    "{disks} disks did not attach: {e}\n{}",
                    String::from_utf8_lossy(&ctl.run(&["show"]).stdout)
                )
            })?;
        let mnt = match at {
            Some(p) => p.to_path_buf(),
            None => {
                let p = dir.join("disks");
                std::fs::create_dir(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                p
            }
        };
        let fuse = FuseMount::mount(Arc::clone(&emu), &mnt)
            .map_err(|e| format!("FUSE mount at {}: {e}", mnt.display()))?;
        Ok(FuseRig {
            fuse,
            ctl,
            daemon,
            emu,
            dir,
        })
    }

    /// The attached disk with LUN `lun`.
    pub fn disk(&self, lun: u32) -> DiskInfo {
        self.emu
            .disks()
            .into_iter()
            .find(|d| d.lun == lun)
            .unwrap_or_else(|| panic!("no disk with LUN {lun}: {:?}", self.emu.disks()))
    }

    /// The file of the disk with LUN `lun`.
    pub fn file(&self, lun: u32) -> PathBuf {
        self.fuse.file(&self.disk(lun))
    }

    /// A directory of this rig's scratch space for the caller.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let p = self.dir.join(name);
        let _ = std::fs::create_dir_all(&p);
        p
    }
}
