//! Code shared by iscsid(8) and iscsictl(8).

pub mod config;
pub mod ctl;
pub mod imsg;
pub mod log;
pub mod sandbox;
pub mod wire;
