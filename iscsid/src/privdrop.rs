//! Dropping root: chroot(2) to the unprivileged user's home and switch to
//! that user, as base iscsid does for its one process.

use std::ffi::CString;
use std::fmt;

use nix::unistd::{chdir, chroot, setgroups, setresgid, setresuid, Gid, Uid, User};

/// The user the children run as; its home is the chroot (`/var/empty`).
/// A package that must not share base's user sets ISCSID_USER at build time.
pub const DEFAULT_USER: &str = match option_env!("ISCSID_USER") {
    Some(u) => u,
    None => "_iscsid",
};

#[derive(Debug)]
pub enum PrivError {
    NoUser(String),
    Lookup(nix::Error),
    Chroot(String, nix::Error),
    Setid(nix::Error),
}

impl fmt::Display for PrivError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrivError::NoUser(u) => write!(f, "unknown user {u}"),
            PrivError::Lookup(e) => write!(f, "getpwnam: {e}"),
            PrivError::Chroot(d, e) => write!(f, "chroot {d}: {e}"),
            PrivError::Setid(e) => write!(f, "can't drop privileges: {e}"),
        }
    }
}

impl std::error::Error for PrivError {}

/// Looks the user up while /etc/passwd is still reachable.
pub fn lookup(name: &str) -> Result<User, PrivError> {
    User::from_name(name)
        .map_err(PrivError::Lookup)?
        .ok_or_else(|| PrivError::NoUser(name.to_owned()))
}

/// chroot to the user's home, then become the user for good.
pub fn drop_to(user: &User) -> Result<(), PrivError> {
    let dir = user.dir.to_string_lossy().into_owned();
    let cdir = CString::new(dir.clone())
        .map_err(|_| PrivError::Chroot(dir.clone(), nix::Error::EINVAL))?;
    chroot(cdir.as_c_str()).map_err(|e| PrivError::Chroot(dir.clone(), e))?;
    chdir("/").map_err(|e| PrivError::Chroot(dir, e))?;
    setgroups(&[user.gid]).map_err(PrivError::Setid)?;
    setresgid(user.gid, user.gid, user.gid).map_err(PrivError::Setid)?;
    setresuid(user.uid, user.uid, user.uid).map_err(PrivError::Setid)?;
    // Belt and braces: there must be no way back.
    if Uid::effective().is_root() || Gid::effective() != user.gid {
        return Err(PrivError::Setid(nix::Error::EPERM));
    }
    Ok(())
}
