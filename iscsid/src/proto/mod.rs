//! The iSCSI protocol core (RFC 7143), sans-IO: pure state machines that
//! take bytes, events and the time, and return bytes and actions.

pub mod chap;
pub mod digest;
pub mod discovery;
pub mod framing;
pub mod login;
pub mod lun;
pub mod negotiate;
pub mod pdu;
pub mod serial;
pub mod session;
pub mod task;
pub mod text;

#[cfg(test)]
mod login_tests;
#[cfg(test)]
mod session_tests;
