//! Why a connection ended, as the I/O shell reports it: typed, so that
//! the lifecycle decides on kinds, never on the text of an error.

use std::fmt;
use std::io::ErrorKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCause {
    /// The target closed its end (read returned 0).
    Eof,
    /// The target reset the connection.
    Reset,
    /// Nothing listens at the portal.
    Refused,
    /// No route to the portal.
    Unreachable,
    /// The connect or a write timed out in the kernel.
    TimedOut,
    /// Any other socket error.
    Other(ErrorKind),
}

impl CloseCause {
    /// Sorts an error of the socket layer.
    pub fn from_kind(k: ErrorKind) -> CloseCause {
        match k {
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
                CloseCause::Reset
            }
            ErrorKind::ConnectionRefused => CloseCause::Refused,
            ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => CloseCause::Unreachable,
            ErrorKind::TimedOut => CloseCause::TimedOut,
            ErrorKind::UnexpectedEof => CloseCause::Eof,
            k => CloseCause::Other(k),
        }
    }

    /// The target hung up on us (rather than the network failing).
    pub fn is_hangup(self) -> bool {
        matches!(self, CloseCause::Eof | CloseCause::Reset)
    }
}

impl fmt::Display for CloseCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseCause::Eof => write!(f, "connection closed by target"),
            CloseCause::Reset => write!(f, "connection reset by target"),
            CloseCause::Refused => write!(f, "connection refused"),
            CloseCause::Unreachable => write!(f, "portal unreachable"),
            CloseCause::TimedOut => write!(f, "connection timed out"),
            CloseCause::Other(k) => write!(f, "{k}"),
        }
    }
}
