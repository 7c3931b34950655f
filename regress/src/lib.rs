//! Test support for iscsid: the vscsi(4) emulator and target harness.
pub mod badtarget;
pub mod emulator;
#[cfg(target_os = "linux")]
pub mod fusedisk;
pub mod harness;
