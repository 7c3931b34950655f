//! iscsid: the OpenBSD iSCSI initiator daemon.
//!
//! `proto` is the sans-IO protocol core; `vscsi` is the device seen by the
//! relay. The processes (`parent`, `relay`, `engine`) are thin shells
//! around them.

pub mod proto;
pub mod vscsi;
