//! imsg types between iscsid's processes.

/// parent -> engine: the control listening socket (fd).
pub const CONTROL_SOCKET: u32 = 1;
/// parent -> relay, parent -> engine: one end of the relay<->engine channel (fd).
pub const RELAY_CHANNEL: u32 = 2;
/// parent -> relay: the vscsi device or emulator socket (fd).
pub const DEVICE: u32 = 3;
/// parent -> child: every descriptor has been sent; start working.
pub const GO: u32 = 4;

/// relay -> engine: a command from the kernel (`Cmd`).
pub const CMD: u32 = 10;
/// engine -> relay: a completion (`Done`).
pub const DONE: u32 = 11;
/// engine -> relay: VSCSI_REQPROBE (target, lun).
pub const PROBE: u32 = 12;
/// engine -> relay: VSCSI_REQDETACH (target, lun).
pub const DETACH: u32 = 13;

/// Largest relay<->engine message: a command's data plus its header.
/// OpenBSD's MAXPHYS is 64 KiB; the emulator may send more, up to this.
pub const MAX_DATA: usize = 16 << 20;
pub const MAX_RELAY_MSG: usize = MAX_DATA + 4096;
