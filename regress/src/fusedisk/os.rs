//! The real programs around a disk file: losetup, mount, mkfs.ext4 and
//! e2fsck, each with a guard that undoes it on drop (also when a test
//! panics), so a failed run leaves no loop device or mount behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::wait_for;

/// Runs `cmd`, and returns its stdout or a message with its stderr.
pub fn run(cmd: &mut Command) -> Result<String, String> {
    let o = cmd
        .output()
        .map_err(|e| format!("{:?}: {e}", cmd.get_program()))?;
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    if o.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{:?} {:?}: {}\n{out}{}",
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            o.status,
            String::from_utf8_lossy(&o.stderr)
        ))
    }
}

/// `mkfs.ext4` on `target` (a disk file or a block device). Inode tables
/// and the journal are written now rather than by the kernel's lazy-init
/// thread after mounting, so that all of it goes over iSCSI before the
/// first check; no discard, which a disk file cannot do.
pub fn mkfs_ext4(target: &Path) -> Result<String, String> {
    run(Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-E",
            "lazy_itable_init=0,lazy_journal_init=0,nodiscard",
        ])
        .arg(target))
}

/// `e2fsck -fn`: a full check that changes nothing; fails unless clean.
pub fn e2fsck(target: &Path) -> Result<String, String> {
    run(Command::new("e2fsck").arg("-fn").arg(target))
}

/// A loop device over a file; detached on drop.
pub struct LoopDev {
    pub dev: PathBuf,
}

impl LoopDev {
    /// `losetup --find --show FILE`. With `direct_io` the loop driver
    /// submits its requests as asynchronous direct I/O, several at once,
    /// instead of one by one through the page cache.
    pub fn attach(file: &Path, direct_io: bool) -> Result<LoopDev, String> {
        let mut c = Command::new("losetup");
        c.args(["--find", "--show"]);
        if direct_io {
            c.arg("--direct-io=on");
        }
        let out = run(c.arg(file))?;
        let dev = PathBuf::from(out.trim());
        if !dev.starts_with("/dev") {
            return Err(format!("losetup printed {out:?}"));
        }
        Ok(LoopDev { dev })
    }
}

/// How long a detached loop device may keep its file: the kernel lets go
/// of it only when the last opener (udev's probe, say) closes the device.
const LOOP_RELEASE_LIMIT: Duration = Duration::from_secs(10);

impl LoopDev {
    /// Whether the kernel still holds the backing file.
    fn bound(&self) -> bool {
        let name = self.dev.file_name().unwrap_or_default();
        Path::new("/sys/block")
            .join(name)
            .join("loop/backing_file")
            .exists()
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = run(Command::new("losetup").arg("-d").arg(&self.dev));
        // Until it is released the file below (a FUSE disk file) is busy
        // and its file system cannot be unmounted.
        let _ = wait_for(LOOP_RELEASE_LIMIT, || (!self.bound()).then_some(()));
    }
}

/// A mounted file system; unmounted on drop.
pub struct FsMount {
    pub dir: PathBuf,
    mounted: bool,
}

impl FsMount {
    pub fn mount(dev: &Path, dir: &Path, fstype: &str) -> Result<FsMount, String> {
        run(Command::new("mount").args(["-t", fstype]).arg(dev).arg(dir))?;
        Ok(FsMount {
            dir: dir.to_path_buf(),
            mounted: true,
        })
    }

    /// Unmounts now, reporting failure (after which drop still detaches it).
    pub fn unmount(mut self) -> Result<(), String> {
        run(Command::new("umount").arg(&self.dir))?;
        self.mounted = false;
        Ok(())
    }
}

impl Drop for FsMount {
    fn drop(&mut self) {
        if self.mounted && run(Command::new("umount").arg(&self.dir)).is_err() {
            // Busy after a failed test: detach it so the loop device and
            // the FUSE mount below can go.
            let _ = run(Command::new("umount").arg("-l").arg(&self.dir));
        }
    }
}
