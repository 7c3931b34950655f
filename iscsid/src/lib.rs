//! iscsid: the OpenBSD iSCSI initiator daemon.
//!
//! `proto` is the sans-IO protocol core; `vscsi` is the device seen by the
//! relay. The processes (`parent`, `relay`, `engine`) are thin shells
//! around them.

pub mod arena;
pub mod child;
pub mod engine;
pub mod malloc;
pub mod parent;
pub mod privdrop;
pub mod procmsg;
pub use proto;
pub mod relay;
pub mod vscsi;

/// The vscsi(4) device, as in base.
pub const DEVICE: &str = "/dev/vscsi0";
