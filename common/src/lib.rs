//! Code shared by iscsid(8) and iscsictl(8).

pub mod config;
pub mod imsg;
