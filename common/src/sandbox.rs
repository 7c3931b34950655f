//! pledge(2) and unveil(2) on OpenBSD; no-ops elsewhere.
//!
//! Linux has no equivalent the daemon relies on: there the separation is
//! chroot and an unprivileged uid only (see iscsid(8)). The promise strings
//! are still checked against the set pledge(2) accepts, so a typo shows up
//! in the Linux test suite rather than as an abort on OpenBSD.

use std::fmt;
use std::io;

/// Every promise pledge(2) accepts (OpenBSD 7.x).
pub const PROMISES: &[&str] = &[
    "stdio",
    "rpath",
    "wpath",
    "cpath",
    "dpath",
    "tmppath",
    "inet",
    "mcast",
    "fattr",
    "chown",
    "flock",
    "unix",
    "dns",
    "getpw",
    "sendfd",
    "recvfd",
    "tape",
    "tty",
    "proc",
    "exec",
    "prot_exec",
    "settime",
    "ps",
    "vminfo",
    "id",
    "pf",
    "route",
    "wroute",
    "audio",
    "video",
    "bpf",
    "unveil",
    "error",
    "vmm",
    "drm",
    "disklabel",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxError {
    UnknownPromise(String),
    Nul,
    Os(i32),
}

impl fmt::Display for SandboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SandboxError::UnknownPromise(p) => write!(f, "unknown pledge promise \"{p}\""),
            SandboxError::Nul => write!(f, "NUL in pledge/unveil argument"),
            SandboxError::Os(e) => write!(f, "{}", io::Error::from_raw_os_error(*e)),
        }
    }
}

impl std::error::Error for SandboxError {}

/// Checks that every word of `promises` is one pledge(2) knows.
pub fn check_promises(promises: &str) -> Result<(), SandboxError> {
    match promises.split_whitespace().find(|p| !PROMISES.contains(p)) {
        Some(p) => Err(SandboxError::UnknownPromise(p.to_owned())),
        None => Ok(()),
    }
}

/// Restricts the process to `promises` (OpenBSD); checks them elsewhere.
pub fn pledge(promises: &str) -> Result<(), SandboxError> {
    check_promises(promises)?;
    os::pledge(promises)
}

/// unveil(path, perms); `unveil_lock()` forbids further calls.
pub fn unveil(path: &str, perms: &str) -> Result<(), SandboxError> {
    os::unveil(Some(path), Some(perms))
}

pub fn unveil_lock() -> Result<(), SandboxError> {
    os::unveil(None, None)
}

#[cfg(target_os = "openbsd")]
mod os {
    use super::SandboxError;
    use std::ffi::CString;

    fn cstr(s: &str) -> Result<CString, SandboxError> {
        CString::new(s).map_err(|_| SandboxError::Nul)
    }

    pub fn pledge(promises: &str) -> Result<(), SandboxError> {
        let p = cstr(promises)?;
        // SAFETY: p is NUL-terminated; a NULL execpromises leaves them unchanged.
        let r = unsafe { libc::pledge(p.as_ptr(), std::ptr::null()) };
        if r == -1 {
            return Err(SandboxError::Os(
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
            ));
        }
        Ok(())
    }

    pub fn unveil(path: Option<&str>, perms: Option<&str>) -> Result<(), SandboxError> {
        let path = path.map(cstr).transpose()?;
        let perms = perms.map(cstr).transpose()?;
        let pp = path.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
        let pm = perms.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
        // SAFETY: both pointers are NULL or NUL-terminated strings that outlive the call.
        let r = unsafe { libc::unveil(pp, pm) };
        if r == -1 {
            return Err(SandboxError::Os(
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
            ));
        }
        Ok(())
    }
}

#[cfg(not(target_os = "openbsd"))]
mod os {
    use super::SandboxError;

    pub fn pledge(_promises: &str) -> Result<(), SandboxError> {
        Ok(())
    }

    pub fn unveil(_path: Option<&str>, _perms: Option<&str>) -> Result<(), SandboxError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promises_are_checked() {
        assert_eq!(check_promises("stdio inet unix recvfd"), Ok(()));
        assert_eq!(
            check_promises("stdio inet vscsi"),
            Err(SandboxError::UnknownPromise("vscsi".into()))
        );
        assert!(pledge("stdio rpath bogus").is_err());
    }
}
