//! iscsi-fuse: the iSCSI disks iscsid attaches, as files, for any program.
//!
//! The emulated kernel lives in the process that listens on the device
//! socket, so this command is that process: it runs the vscsi emulator,
//! starts `iscsid -n` on it, reloads an iscsi.conf with iscsictl, waits for
//! the disks and mounts them with FUSE (see `regress::fusedisk`). It stays
//! in the foreground until SIGINT, SIGTERM or SIGHUP, then unmounts and
//! stops iscsid (and the target it started, if any).

use std::process::ExitCode;

// FUSE and loop devices as used here are Linux's, where the emulator
// stands in for vscsi(4).
#[cfg(target_os = "linux")]
mod linux;

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    linux::main()
}

#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    eprintln!("iscsi-fuse: Linux only (on OpenBSD the disks are sd(4) devices already)");
    ExitCode::from(1)
}
