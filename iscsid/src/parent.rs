//! The privileged parent: opens the control socket and the vscsi device as
//! root, starts the relay and the engine (`start_child`: fork and exec;
//! each then chroots and drops to the unprivileged user), hands them their
//! descriptors over imsg, then only reaps and signals.

use std::ffi::CString;
use std::fmt;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process;

use common::imsg::ImsgBuf;
use log::{error, info, warn};
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{setsockopt, socketpair, sockopt, AddressFamily, SockFlag, SockType};
use nix::sys::stat::{umask, Mode};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{execvp, fork, ForkResult, Pid};

use crate::arena;
use crate::child::{self, Role, CHANNEL_FD};
use crate::privdrop;
use crate::procmsg;
use crate::vscsi;

pub struct Options {
    pub debug: bool,
    pub verbose: bool,
    pub device: PathBuf,
    pub socket: PathBuf,
    pub user: String,
}

#[derive(Debug)]
pub enum StartError {
    NotRoot,
    Priv(privdrop::PrivError),
    SocketInUse(PathBuf),
    Socket(PathBuf, io::Error),
    Device(PathBuf, io::Error),
    /// The device is open in another process (EBUSY): another iscsid runs.
    DeviceBusy(PathBuf),
    /// The emulator socket would not open.
    Emulator(PathBuf, vscsi::emu::OpenError),
    NotADevice(PathBuf),
    Sys(&'static str, nix::Error),
    Imsg(common::imsg::Error),
    /// The path of the running binary, which the children are exec'd from.
    Exe(io::Error),
    /// A child's argument that cannot be passed to exec.
    NulInArgument(String),
    Arena(arena::ArenaError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::NotRoot => write!(f, "need root privileges"),
            StartError::Arena(e) => write!(f, "{e}"),
            StartError::Priv(e) => write!(f, "{e}"),
            StartError::SocketInUse(p) => {
                write!(f, "{}: in use by another iscsid", p.display())
            }
            StartError::Socket(p, e) => write!(f, "control socket {}: {e}", p.display()),
            StartError::Device(p, e) => write!(f, "{}: {e}", p.display()),
            StartError::DeviceBusy(p) => {
                write!(
                    f,
                    "{}: device busy (another iscsid has it open)",
                    p.display()
                )
            }
            StartError::Emulator(p, e) => write!(f, "{}: {e}", p.display()),
            StartError::NotADevice(p) => write!(
                f,
                "{}: not a vscsi emulator socket (vscsi(4) exists only on OpenBSD)",
                p.display()
            ),
            StartError::Sys(what, e) => write!(f, "{what}: {e}"),
            StartError::Imsg(e) => write!(f, "imsg: {e}"),
            StartError::Exe(e) => write!(
                f,
                "cannot find the iscsid binary to start the children: {e}"
            ),
            StartError::NulInArgument(a) => write!(f, "NUL in argument {a:?}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Creates the control socket, mode 0600: only root may connect unless the
/// administrator widens it. State changes need root regardless (the engine
/// checks the peer's credentials).
fn control_open(path: &Path) -> Result<UnixListener, StartError> {
    // Only a socket nobody answers on may be replaced. Base iscsid's socket
    // is SOCK_SEQPACKET, which a stream connect fails on differently.
    match UnixStream::connect(path) {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound
            ) => {}
        _ => return Err(StartError::SocketInUse(path.to_owned())),
    }
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(StartError::Socket(path.to_owned(), e)),
    }
    let old = umask(Mode::from_bits_truncate(0o177));
    let l = UnixListener::bind(path);
    umask(old);
    let l = l.map_err(|e| StartError::Socket(path.to_owned(), e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(|e| StartError::Socket(path.to_owned(), e))?;
    l.set_nonblocking(true)
        .map_err(|e| StartError::Socket(path.to_owned(), e))?;
    Ok(l)
}

/// Opens vscsi(4), or connects to the emulator when the path is a socket.
fn device_open(path: &Path) -> Result<OwnedFd, StartError> {
    let err = |e| StartError::Device(path.to_owned(), e);
    let meta = fs::metadata(path).map_err(err)?;
    if meta.file_type().is_socket() {
        return vscsi::emu::open(path).map_err(|e| match e {
            vscsi::emu::OpenError::Busy => StartError::DeviceBusy(path.to_owned()),
            e => StartError::Emulator(path.to_owned(), e),
        });
    }
    if cfg!(target_os = "openbsd") {
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                // vscsiopen: the device is not CLOSED.
                Some(libc::EBUSY) => StartError::DeviceBusy(path.to_owned()),
                _ => err(e),
            })?;
        return Ok(f.into());
    }
    Err(StartError::NotADevice(path.to_owned()))
}

fn pair() -> Result<(OwnedFd, OwnedFd), StartError> {
    socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| StartError::Sys("socketpair", e))
}

/// The relay<->engine channel: a pair with buffers of RELAY_SOCKBUF each
/// way on both ends (see there for the size).
fn relay_pair() -> Result<(OwnedFd, OwnedFd), StartError> {
    let (a, b) = pair()?;
    for end in [&a, &b] {
        setsockopt(end, sockopt::SndBuf, &procmsg::RELAY_SOCKBUF)
            .map_err(|e| StartError::Sys("setsockopt SO_SNDBUF", e))?;
        setsockopt(end, sockopt::RcvBuf, &procmsg::RELAY_SOCKBUF)
            .map_err(|e| StartError::Sys("setsockopt SO_RCVBUF", e))?;
    }
    Ok((a, b))
}

/// What every child is exec'd with: the binary and the options it shares
/// with the parent. Built before any fork.
struct ChildCommand {
    exe: CString,
    common: Vec<CString>,
}

impl ChildCommand {
    fn new(opts: &Options) -> Result<ChildCommand, StartError> {
        // Linux: /proc/self/exe. OpenBSD: argv[0], made absolute if it
        // names a path; a bare name is looked up in PATH by execvp, as
        // bgpd's start_child does.
        let exe = std::env::current_exe().map_err(StartError::Exe)?;
        let mut common = Vec::new();
        if opts.debug {
            common.push(c"-d".to_owned());
        }
        if opts.verbose {
            common.push(c"-v".to_owned());
        }
        common.push(c"-u".to_owned());
        common.push(c_arg(opts.user.as_bytes())?);
        Ok(ChildCommand {
            exe: c_arg(exe.as_os_str().as_bytes())?,
            common,
        })
    }

    /// The whole command line of one child: the role's flag comes first.
    fn argv(&self, role: Role) -> Result<Vec<CString>, StartError> {
        let mut argv = vec![self.exe.clone(), c_arg(format!("-{}", role.flag()))?];
        argv.extend(self.common.iter().cloned());
        Ok(argv)
    }
}

fn c_arg(s: impl Into<Vec<u8>>) -> Result<CString, StartError> {
    CString::new(s)
        .map_err(|e| StartError::NulInArgument(String::from_utf8_lossy(&e.into_vec()).into_owned()))
}

/// Starts one child, the way bgpd's start_child does: fork, put `chan` at
/// CHANNEL_FD, exec this binary again with the role's flag first, then
/// -d, -v and -u as the parent has them (`main` reads the flag). Both children
/// start here, and nowhere else.
///
/// Why exec and not fork alone:
/// * A fresh address space. Each exec gets its own ASLR layout (PIE base,
///   libraries, stack, heap), its own stack-protector cookie and, on
///   OpenBSD, fresh malloc and arc4random state. After a bare fork the
///   root parent and both children share one layout, so an information
///   leak in the engine, which parses hostile network input, would tell
///   an attacker where everything is in the relay it feeds, which holds
///   the device and is unpledged.
/// * Nothing is inherited by accident: no heap (the parent holds no
///   secrets at this point, as CHAP secrets reach only the engine, later,
///   over the control socket; with exec that stays true whatever the
///   parent learns in future) and no descriptor other than the channel
///   and stdio (`close_above_channel`).
/// * It costs two execs at start-up; children are never restarted.
/// * The exec comes before any chroot: the parent never chroots, and the
///   child chroots itself after exec (`child::main`). The parent pledges
///   only after both children have started, so it needs no "exec".
/// * A child stays a child of the parent with the same pid, so
///   supervision and the tests that look at the children through /proc
///   see what they saw before; the command line now shows the role.
///
/// The signal mask, with the parent's signals blocked, survives fork and
/// exec; `child` explains why that matters.
fn start_child(role: Role, cmd: &ChildCommand, chan: OwnedFd) -> Result<Pid, StartError> {
    let argv = cmd.argv(role)?;
    // SAFETY: the parent is single-threaded (it starts no thread), so the
    // child may allocate; it only moves a descriptor and execs, or exits.
    match unsafe { fork() }.map_err(|e| StartError::Sys("fork", e))? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => {
            let e = exec_child(&chan, &cmd.exe, &argv);
            error!("{}: exec {}: {e}", role.name(), cmd.exe.to_string_lossy());
            // SAFETY: _exit(2) ends this forked copy at once, without the
            // parent's atexit handlers or buffers.
            unsafe { libc::_exit(1) }
        }
    }
}

/// In the forked child: the channel to CHANNEL_FD, without close-on-exec,
/// nothing above it, then exec. Returns only on failure.
fn exec_child(chan: &OwnedFd, exe: &CString, argv: &[CString]) -> nix::Error {
    if chan.as_raw_fd() == CHANNEL_FD {
        if let Err(e) = fcntl(chan.as_fd(), FcntlArg::F_SETFD(FdFlag::empty())) {
            return e;
        }
    } else {
        // SAFETY: dup2(2) on two descriptor numbers. Whatever this forked
        // copy had at CHANNEL_FD it never uses again: it execs next or
        // exits.
        if unsafe { libc::dup2(chan.as_raw_fd(), CHANNEL_FD) } == -1 {
            return nix::Error::last();
        }
    }
    close_above_channel();
    match execvp(exe, argv) {
        Err(e) => e,
        Ok(never) => match never {},
    }
}

/// Sends a child its descriptors, then GO. The channel stays open so a
/// child sees EOF if the parent dies.
fn send(chan: OwnedFd, fds: Vec<(u32, OwnedFd)>) -> Result<ImsgBuf, StartError> {
    let mut ib = ImsgBuf::new(chan);
    for (kind, fd) in fds {
        ib.compose(kind, 0, process::id(), &[], Some(fd))
            .map_err(StartError::Imsg)?;
    }
    ib.compose(procmsg::GO, 0, process::id(), &[], None)
        .map_err(StartError::Imsg)?;
    ib.write_all().map_err(StartError::Imsg)?;
    Ok(ib)
}

/// Runs the daemon; returns the exit status.
pub fn run(opts: &Options) -> Result<i32, StartError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(StartError::NotRoot);
    }
    // The children look the user up themselves; this is to fail before
    // touching the device and the socket.
    privdrop::lookup(&opts.user).map_err(StartError::Priv)?;
    let cmd = ChildCommand::new(opts)?;
    // The device first: its open is exclusive, so a busy device means
    // another initiator runs and its control socket must stay.
    let device = device_open(&opts.device)?;
    let listener = control_open(&opts.socket)?;
    if !opts.debug {
        nix::unistd::daemon(true, false).map_err(|e| StartError::Sys("daemon", e))?;
    }
    // Block the signals the parent waits for before any child exists, so
    // none is lost. The children inherit the mask and unblock them once
    // their own handling is in place (see `child`).
    child::parent_sigset()
        .thread_block()
        .map_err(|e| StartError::Sys("sigprocmask", e))?;

    let (p_relay, c_relay) = pair()?;
    let relay = start_child(Role::Relay, &cmd, c_relay)?;
    let (p_engine, c_engine) = pair()?;
    let engine = start_child(Role::Engine, &cmd, c_engine)?;
    for pid in [Pid::this(), relay, engine] {
        no_broadcast_kill(pid);
    }

    let (r_end, e_end) = relay_pair()?;
    let arena = arena::create().map_err(StartError::Arena)?;
    let arena2 = nix::unistd::dup(&arena).map_err(|e| StartError::Sys("dup", e))?;
    let _p_relay = send(
        p_relay,
        vec![
            (procmsg::DEVICE, device),
            (procmsg::RELAY_CHANNEL, r_end),
            (procmsg::ARENA, arena),
        ],
    )?;
    let _p_engine = send(
        p_engine,
        vec![
            (procmsg::CONTROL_SOCKET, listener.into()),
            (procmsg::RELAY_CHANNEL, e_end),
            (procmsg::ARENA, arena2),
        ],
    )?;
    sandbox_parent(&opts.socket);
    info!("started (relay {relay}, engine {engine})");
    Ok(supervise(relay, engine, &opts.socket))
}

/// After setup the parent only signals children, reaps them and removes the
/// socket at exit.
fn sandbox_parent(socket: &Path) {
    let s = socket.to_string_lossy();
    let r = common::sandbox::unveil(&s, "c")
        .and_then(|()| common::sandbox::unveil_lock())
        .and_then(|()| common::sandbox::pledge("stdio cpath proc"));
    if let Err(e) = r {
        warn!("sandbox: {e}");
    }
}

/// Waits for signals. SIGTERM, SIGINT and SIGHUP shut down gracefully: the
/// engine logs the sessions out and exits, the relay follows when its
/// channel closes. A child that dies on its own takes the daemon down.
/// The status is 0 only if both children exited with 0.
fn supervise(relay: Pid, engine: Pid, socket: &Path) -> i32 {
    let set = child::parent_sigset();
    let mut alive = [Some((relay, Role::Relay)), Some((engine, Role::Engine))];
    let mut stopping = false;
    let mut status = 0;
    while alive.iter().any(Option::is_some) {
        let sig = match set.wait() {
            Ok(s) => s,
            Err(e) => {
                error!("sigwait: {e}");
                status = 1;
                break;
            }
        };
        match sig {
            Signal::SIGCHLD => {
                while let Ok(ws) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                    let Some(pid) = ws.pid() else { break };
                    let Some(slot) = alive.iter_mut().find(|a| a.is_some_and(|(p, _)| p == pid))
                    else {
                        continue;
                    };
                    let role = slot.map_or(Role::Relay, |(_, r)| r);
                    *slot = None;
                    if stopping {
                        // A child killed during shutdown (by the alarm's
                        // SIGKILL, or by a signal it did not handle) did not
                        // finish its logouts or its last completions.
                        if !matches!(ws, WaitStatus::Exited(_, 0)) {
                            warn!("{} terminated ({})", role.name(), describe(ws));
                            status = 1;
                        }
                    } else {
                        error!(
                            "{} exited unexpectedly ({}), shutting down",
                            role.name(),
                            describe(ws)
                        );
                        status = 1;
                        stopping = true;
                        signal_all(&alive, Signal::SIGTERM);
                        nix::unistd::alarm::set(10);
                    }
                }
            }
            Signal::SIGALRM => {
                warn!("children did not exit in time, killing them");
                signal_all(&alive, Signal::SIGKILL);
            }
            _ if !stopping => {
                info!("received {}, shutting down", sig.as_str());
                stopping = true;
                signal_all(&alive, Signal::SIGTERM);
                nix::unistd::alarm::set(10);
            }
            _ => {}
        }
    }
    let _ = fs::remove_file(socket);
    info!("exiting");
    status
}

/// As base does: the kill(-1) of a system shutdown must not take the
/// disks away before the file systems on them are unmounted.
#[cfg(target_os = "openbsd")]
fn no_broadcast_kill(pid: Pid) {
    let mib = [
        libc::CTL_KERN,
        libc::KERN_PROC_NOBROADCASTKILL,
        pid.as_raw(),
    ];
    let on: libc::c_int = 1;
    // SAFETY: a three-element MIB and a pointer to one int, as sysctl(2)
    // documents for KERN_PROC_NOBROADCASTKILL; no old value is read.
    let r = unsafe {
        libc::sysctl(
            mib.as_ptr(),
            3,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            (&on as *const libc::c_int).cast_mut().cast(),
            std::mem::size_of::<libc::c_int>(),
        )
    };
    if r == -1 {
        warn!(
            "sysctl KERN_PROC_NOBROADCASTKILL: {}",
            io::Error::last_os_error()
        );
    }
}

/// Closes every descriptor above CHANNEL_FD in the forked child. The
/// parent's own are close-on-exec already; this is for those it inherited
/// from whoever started it without that flag, which would otherwise reach
/// the children.
#[cfg(target_os = "openbsd")]
fn close_above_channel() {
    // SAFETY: closefrom(2) closes descriptor numbers only; this forked
    // child execs or exits next and never uses what it owned there.
    unsafe { libc::closefrom(CHANNEL_FD + 1) };
}

#[cfg(target_os = "linux")]
fn close_above_channel() {
    // SAFETY: close_range(2) closes descriptor numbers only, as above.
    // Before Linux 5.9 it fails with ENOSYS and the descriptors stay, as
    // they did before this existed; there is no one to tell but the log.
    let r = unsafe { libc::syscall(libc::SYS_close_range, CHANNEL_FD + 1, libc::c_uint::MAX, 0) };
    if r == -1 {
        warn!("close_range: {}", io::Error::last_os_error());
    }
}

#[cfg(not(any(target_os = "openbsd", target_os = "linux")))]
fn close_above_channel() {}

/// Linux has no such protection; nothing to do.
#[cfg(not(target_os = "openbsd"))]
fn no_broadcast_kill(_pid: Pid) {}

fn signal_all(alive: &[Option<(Pid, Role)>], sig: Signal) {
    for (pid, _) in alive.iter().flatten() {
        let _ = kill(*pid, sig);
    }
}

fn describe(ws: WaitStatus) -> String {
    match ws {
        WaitStatus::Exited(_, c) => format!("status {c}"),
        WaitStatus::Signaled(_, s, _) => format!("signal {}", s.as_str()),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::getsockopt;

    /// A child's command line: the running binary, the role's flag first
    /// (where `main` looks for it), then what the parent was told.
    #[test]
    fn child_command_lines() {
        let mut opts = Options {
            debug: false,
            verbose: true,
            device: PathBuf::from("/dev/null"),
            socket: PathBuf::from("/nonexistent"),
            user: "_someone".into(),
        };
        let cmd = ChildCommand::new(&opts).unwrap();
        let argv = cmd.argv(Role::Engine).unwrap();
        let exe = std::env::current_exe().unwrap();
        assert_eq!(argv[0].as_bytes(), exe.as_os_str().as_bytes());
        let rest: Vec<_> = argv[1..].iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(rest, ["-E", "-v", "-u", "_someone"]);
        opts.debug = true;
        let argv = ChildCommand::new(&opts).unwrap().argv(Role::Relay).unwrap();
        assert_eq!(argv[1].to_str().unwrap(), "-R");
        assert_eq!(argv[2].to_str().unwrap(), "-d");
        opts.user = "a\0b".into();
        assert!(matches!(
            ChildCommand::new(&opts),
            Err(StartError::NulInArgument(_))
        ));
    }

    /// Both ends of the relay<->engine channel get the buffers asked for.
    /// Linux doubles the value for its bookkeeping (and caps the request at
    /// net.core.[rw]mem_max first), hence at least, not equal.
    #[test]
    fn relay_pair_has_its_buffer_sizes() {
        let (a, b) = relay_pair().unwrap();
        for end in [&a, &b] {
            let snd = getsockopt(end, sockopt::SndBuf).unwrap();
            let rcv = getsockopt(end, sockopt::RcvBuf).unwrap();
            assert!(snd >= procmsg::RELAY_SOCKBUF, "SO_SNDBUF {snd}");
            assert!(rcv >= procmsg::RELAY_SOCKBUF, "SO_RCVBUF {rcv}");
        }
    }
}
