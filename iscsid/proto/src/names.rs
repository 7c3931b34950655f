//! Placeholder, replaced by the names module.
use std::fmt;
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError;
impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad name")
    }
}
pub fn check(_n: &str) -> Result<(), NameError> {
    Ok(())
}
pub fn check_block_name(_n: &str) -> Result<(), NameError> {
    Ok(())
}
