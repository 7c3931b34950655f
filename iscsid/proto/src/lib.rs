//! The iSCSI protocol core (RFC 7143), sans-IO: pure state machines that
//! take bytes, events and the time, and return bytes and actions.
//!
//! No I/O lives here: no sockets, clocks, random sources or syscalls, and
//! no unsafe code. The daemon's processes are thin shells around it.

#![forbid(unsafe_code)]

pub mod chap;
pub mod digest;
pub mod discovery;
pub mod framing;
pub mod initiator;
pub mod login;
pub mod lun;
pub mod names;
pub mod negotiate;
pub mod pdu;
pub mod scsi;
pub mod serial;
pub mod session;
pub mod task;
pub mod text;
pub mod tx;

#[cfg(test)]
mod login_tests;
#[cfg(test)]
mod session_tests;
