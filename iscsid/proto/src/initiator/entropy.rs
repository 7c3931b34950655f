//! Random bytes come from outside: the daemon passes getrandom(2), tests
//! a seeded sequence. A source that fails is fatal, never a zero CHAP
//! challenge or a predictable ISID.

use std::fmt;

pub trait Entropy {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyError>;
}

/// The random source failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntropyError;

impl fmt::Display for EntropyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "random number source failed")
    }
}

impl std::error::Error for EntropyError {}
