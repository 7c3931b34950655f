//! The children's side of the process plumbing: what the relay and the
//! engine do between the parent's exec (`parent::start_child`) and their
//! own event loops. In order:
//!
//! 1. `take_channel`: claim the channel to the parent at `CHANNEL_FD`;
//! 2. `init_before_pledge`: every lazy initialisation that may make a
//!    system call or open a file, while neither chroot nor pledge is in
//!    the way;
//! 3. chroot and drop to the unprivileged user (`privdrop`);
//! 4. `Startup::receive`: the descriptors, until GO;
//! 5. the role's own start (`relay::main`, `engine::main`), which installs
//!    its signal dispositions and only then calls `unblock_signals`.
//!
//! The signals the parent waits for stay blocked from before the fork
//! until step 5 (the mask survives fork and exec), so a SIGTERM that comes
//! early stays pending instead of killing a child by its default action,
//! and reaches the child's handler once there is one.

use std::fmt;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use common::imsg::{self, ImsgBuf};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::stat::{fstat, SFlag};

use crate::privdrop::{self, PrivError};
use crate::procmsg;

/// Where `parent::start_child` puts the channel to the parent before it
/// execs the child (as bgpd does): the first descriptor after stdio.
pub const CHANNEL_FD: RawFd = 3;

/// The signals the parent waits for with sigwait(2). It blocks them before
/// it starts any child; the children inherit the mask and unblock them in
/// `unblock_signals`.
pub const PARENT_SIGNALS: [Signal; 5] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGCHLD,
    Signal::SIGALRM,
];

pub fn parent_sigset() -> SigSet {
    let mut s = SigSet::empty();
    for sig in PARENT_SIGNALS {
        s.add(sig);
    }
    s
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Relay,
    Engine,
}

impl Role {
    pub const ALL: [Role; 2] = [Role::Relay, Role::Engine];

    /// The name in log lines and diagnostics.
    pub fn name(self) -> &'static str {
        match self {
            Role::Relay => "relay",
            Role::Engine => "engine",
        }
    }

    /// The option the parent execs the child with. It is not in the usage
    /// message: only the parent starts children.
    pub fn flag(self) -> &'static str {
        match self {
            Role::Relay => "R",
            Role::Engine => "E",
        }
    }

    /// The descriptors the parent sends this child, by message kind.
    pub fn wants(self) -> &'static [u32] {
        match self {
            Role::Relay => &[procmsg::DEVICE, procmsg::RELAY_CHANNEL, procmsg::ARENA],
            Role::Engine => &[
                procmsg::CONTROL_SOCKET,
                procmsg::RELAY_CHANNEL,
                procmsg::ARENA,
            ],
        }
    }
}

#[derive(Debug)]
pub enum StartupError {
    /// Nothing usable at CHANNEL_FD: started by hand, not by the parent.
    NoChannel,
    Init(getrandom::Error),
    Priv(PrivError),
    Imsg(imsg::Error),
    ParentClosed,
    /// A message the child does not expect, or a descriptor it has.
    Unexpected(u32),
    Missing(u32),
    Sigmask(nix::Error),
}

impl fmt::Display for StartupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartupError::NoChannel => write!(
                f,
                "no channel to the parent on descriptor {CHANNEL_FD}: only iscsid starts its children"
            ),
            StartupError::Init(e) => write!(f, "getrandom: {e}"),
            StartupError::Priv(e) => write!(f, "{e}"),
            StartupError::Imsg(e) => write!(f, "startup: {e}"),
            StartupError::ParentClosed => write!(f, "startup: parent closed the channel"),
            StartupError::Unexpected(k) => write!(f, "startup: unexpected message {k} from parent"),
            StartupError::Missing(k) => write!(f, "startup: no descriptor of kind {k}"),
            StartupError::Sigmask(e) => write!(f, "sigprocmask: {e}"),
        }
    }
}

impl std::error::Error for StartupError {}

/// Claims the channel the parent left at CHANNEL_FD. Called first thing in
/// a child's main, before anything else (syslog) could open a descriptor
/// and land on that number itself.
pub fn take_channel() -> Result<OwnedFd, StartupError> {
    // SAFETY: F_GETFD only reads the flags of a descriptor number; on a
    // number that is not open it fails with EBADF and changes nothing.
    if unsafe { libc::fcntl(CHANNEL_FD, libc::F_GETFD) } == -1 {
        return Err(StartupError::NoChannel);
    }
    // SAFETY: the descriptor is open (checked above) and nothing in this
    // process owns it: the parent dup2'd the channel there before exec,
    // every other inherited descriptor is close-on-exec, and this runs
    // once, before the child opens anything.
    let fd = unsafe { OwnedFd::from_raw_fd(CHANNEL_FD) };
    match fstat(&fd) {
        Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFSOCK => {}
        // Not ours: leave it to whoever passed it in.
        _ => {
            std::mem::forget(fd);
            return Err(StartupError::NoChannel);
        }
    }
    Ok(fd)
}

/// Lazy initialisation that may make a system call, done while the child
/// may still make any: before chroot, which hides the files it might read,
/// and before pledge(2), which kills the process for a forbidden call
/// (abort, not an error return). Each child calls this before it drops
/// privileges. What is here and why:
///
/// * CPU feature detection, which the crc32c crate runs on its first use
///   (data digests, only after login). On OpenBSD/arm64 std_detect reads
///   machdep sysctls that "stdio inet unix" does not allow. The result is
///   cached for the life of the process.
/// * The random number generator: getrandom(2) on Linux (with a fallback to
///   /dev/urandom, which the chroot hides), getentropy(2) on OpenBSD; and
///   std's per-thread hash keys, which HashMap::new takes from it.
/// * The time zone: syslog(3) stamps lines in local time, and tzset(3)
///   reads /etc/localtime, which is not in the chroot (base log.c calls
///   tzset() in log_init for the same reason).
pub fn init_before_pledge() -> Result<(), StartupError> {
    #[cfg(target_arch = "x86_64")]
    let _ = std::arch::is_x86_feature_detected!("sse4.2");
    #[cfg(target_arch = "aarch64")]
    let _ = std::arch::is_aarch64_feature_detected!("crc");
    let _ = crc32c::crc32c(b"");
    // CHAP's hashes: sha2 looks for CPU features on first use too.
    {
        use sha2::Digest;
        let _ = sha2::Sha256::digest(b"");
        let _ = md5::Md5::digest(b"");
    }
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).map_err(StartupError::Init)?;
    let _ = std::collections::hash_map::RandomState::new();
    tzset();
    Ok(())
}

fn tzset() {
    extern "C" {
        // POSIX, in every libc; the libc crate declares it for Windows only.
        fn tzset();
    }
    // SAFETY: tzset takes no arguments and only sets libc's time zone
    // state; the process is single-threaded, so no localtime_r runs
    // concurrently.
    unsafe { tzset() }
}

/// Names the process in ps(1) as bgpd's children do, so that the three
/// processes can be told apart (and `pkill -f` on the binary's path finds
/// only the parent).
#[cfg(target_os = "openbsd")]
fn set_proctitle(role: Role) {
    let name = match role {
        Role::Relay => c"relay",
        Role::Engine => c"engine",
    };
    // SAFETY: a "%s" format with one NUL-terminated string that lives for
    // the whole program, as setproctitle(3) requires of its arguments.
    unsafe { libc::setproctitle(c"%s".as_ptr(), name.as_ptr()) }
}

/// Linux keeps the command line, which shows the role's flag.
#[cfg(not(target_os = "openbsd"))]
fn set_proctitle(_role: Role) {}

/// Unblocks the signals the parent blocked before the fork. A child calls
/// it once its own dispositions are in place (handlers or SIG_IGN), so
/// that a signal pending since the fork goes to them.
pub fn unblock_signals() -> Result<(), StartupError> {
    parent_sigset()
        .thread_unblock()
        .map_err(StartupError::Sigmask)
}

/// What the parent sent a child at start-up.
pub struct Startup {
    /// The channel to the parent: the parent never writes after GO, so it
    /// turns readable only when the parent dies.
    pub parent: ImsgBuf,
    fds: Vec<(u32, OwnedFd)>,
}

impl Startup {
    /// Receives descriptors until GO (blocking). Each of the role's kinds
    /// must come exactly once; anything else is refused.
    pub fn receive(chan: OwnedFd, role: Role) -> Result<Startup, StartupError> {
        let mut parent = ImsgBuf::new(chan);
        let mut fds: Vec<(u32, OwnedFd)> = Vec::new();
        loop {
            let m = parent
                .recv_blocking()
                .map_err(StartupError::Imsg)?
                .ok_or(StartupError::ParentClosed)?;
            match (m.kind, m.fd) {
                (procmsg::GO, None) => break,
                (k, Some(fd)) if role.wants().contains(&k) && !fds.iter().any(|(h, _)| *h == k) => {
                    fds.push((k, fd))
                }
                (k, _) => return Err(StartupError::Unexpected(k)),
            }
        }
        if let Some(k) = role
            .wants()
            .iter()
            .find(|k| !fds.iter().any(|(h, _)| h == *k))
        {
            return Err(StartupError::Missing(*k));
        }
        Ok(Startup { parent, fds })
    }

    /// Takes the descriptor of `kind` (each can be taken once).
    pub fn take(&mut self, kind: u32) -> Result<OwnedFd, StartupError> {
        let i = self
            .fds
            .iter()
            .position(|(k, _)| *k == kind)
            .ok_or(StartupError::Missing(kind))?;
        Ok(self.fds.swap_remove(i).1)
    }
}

/// A child's life after exec, up to its own main: `chan` from
/// `take_channel`, logging already set up. Returns the exit status.
pub fn main(role: Role, chan: OwnedFd, user: &str) -> i32 {
    common::log::set_procname(role.name());
    set_proctitle(role);
    let startup = init_before_pledge()
        .and_then(|()| privdrop::lookup(user).map_err(StartupError::Priv))
        .and_then(|u| privdrop::drop_to(&u).map_err(StartupError::Priv))
        .and_then(|()| {
            crate::malloc::tune();
            Startup::receive(chan, role)
        });
    let startup = match startup {
        Ok(s) => s,
        Err(e) => {
            log::error!("{e}");
            return 1;
        }
    };
    match role {
        Role::Relay => crate::relay::main(startup),
        Role::Engine => crate::engine::main(startup),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    /// What a child does before it drops privileges runs, and leaves what
    /// it initialised working.
    #[test]
    fn init_before_pledge_runs() {
        init_before_pledge().expect("init");
        // The CRC-32C check value (RFC 3720 B.4 uses the same polynomial).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        let mut b = [0u8; 16];
        getrandom::getrandom(&mut b).unwrap();
    }

    fn parent_sends(msgs: &[(u32, bool)]) -> (UnixStream, OwnedFd) {
        let (p, c) = UnixStream::pair().unwrap();
        let mut ib = ImsgBuf::new(p.try_clone().unwrap().into());
        for &(kind, with_fd) in msgs {
            let fd = with_fd.then(|| OwnedFd::from(UnixStream::pair().unwrap().0));
            ib.compose(kind, 0, 0, &[], fd).unwrap();
        }
        ib.write_all().unwrap();
        (p, c.into())
    }

    #[test]
    fn startup_takes_the_roles_descriptors() {
        let (_p, c) = parent_sends(&[
            (procmsg::DEVICE, true),
            (procmsg::RELAY_CHANNEL, true),
            (procmsg::ARENA, true),
            (procmsg::GO, false),
        ]);
        let mut s = Startup::receive(c, Role::Relay).unwrap();
        assert!(s.take(procmsg::ARENA).is_ok());
        assert!(s.take(procmsg::RELAY_CHANNEL).is_ok());
        assert!(s.take(procmsg::DEVICE).is_ok());
        assert!(matches!(
            s.take(procmsg::DEVICE),
            Err(StartupError::Missing(procmsg::DEVICE))
        ));
    }

    #[test]
    fn startup_refuses_what_the_role_must_not_have() {
        // The engine never gets the device.
        let (_p, c) = parent_sends(&[(procmsg::DEVICE, true), (procmsg::GO, false)]);
        assert!(matches!(
            Startup::receive(c, Role::Engine),
            Err(StartupError::Unexpected(procmsg::DEVICE))
        ));
        let (_p, c) = parent_sends(&[
            (procmsg::RELAY_CHANNEL, true),
            (procmsg::RELAY_CHANNEL, true),
        ]);
        assert!(matches!(
            Startup::receive(c, Role::Engine),
            Err(StartupError::Unexpected(procmsg::RELAY_CHANNEL))
        ));
        let (_p, c) = parent_sends(&[(procmsg::RELAY_CHANNEL, true), (procmsg::GO, false)]);
        assert!(matches!(
            Startup::receive(c, Role::Engine),
            Err(StartupError::Missing(procmsg::CONTROL_SOCKET))
        ));
        // A kind without its descriptor is as wrong as an unknown one.
        let (_p, c) = parent_sends(&[(procmsg::CONTROL_SOCKET, false)]);
        assert!(matches!(
            Startup::receive(c, Role::Engine),
            Err(StartupError::Unexpected(procmsg::CONTROL_SOCKET))
        ));
        let (p, c) = parent_sends(&[(procmsg::CONTROL_SOCKET, true)]);
        drop(p);
        assert!(matches!(
            Startup::receive(c, Role::Engine),
            Err(StartupError::ParentClosed)
        ));
    }

    #[test]
    fn roles_have_distinct_flags() {
        assert_ne!(Role::Relay.flag(), Role::Engine.flag());
        for r in Role::ALL {
            assert!(r.wants().contains(&procmsg::RELAY_CHANNEL));
            assert!(r.wants().contains(&procmsg::ARENA));
        }
    }
}
