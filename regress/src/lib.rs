//! Test support for iscsid: the vscsi(4) emulator and target harness.
