//! The privileged parent: opens the control socket and the vscsi device as
//! root, forks the relay and the engine (each chrooted and unprivileged),
//! hands them their descriptors over imsg, then only reaps and signals.

use std::fmt;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process;

use common::imsg::ImsgBuf;
use log::{error, info, warn};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::stat::{umask, Mode};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid, User};

use crate::privdrop;
use crate::procmsg;

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
    NotADevice(PathBuf),
    Sys(&'static str, nix::Error),
    Imsg(common::imsg::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::NotRoot => write!(f, "need root privileges"),
            StartError::Priv(e) => write!(f, "{e}"),
            StartError::SocketInUse(p) => {
                write!(f, "{}: in use by another iscsid", p.display())
            }
            StartError::Socket(p, e) => write!(f, "control socket {}: {e}", p.display()),
            StartError::Device(p, e) => write!(f, "{}: {e}", p.display()),
            StartError::NotADevice(p) => write!(
                f,
                "{}: not a vscsi emulator socket (vscsi(4) exists only on OpenBSD)",
                p.display()
            ),
            StartError::Sys(what, e) => write!(f, "{what}: {e}"),
            StartError::Imsg(e) => write!(f, "imsg: {e}"),
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
        let s = UnixStream::connect(path).map_err(err)?;
        return Ok(s.into());
    }
    if cfg!(target_os = "openbsd") {
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(err)?;
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Relay,
    Engine,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Relay => "relay",
            Role::Engine => "engine",
        }
    }
}

fn signals() -> SigSet {
    let mut s = SigSet::empty();
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGCHLD,
        Signal::SIGALRM,
    ] {
        s.add(sig);
    }
    s
}

/// The child's life after fork: drop root, then run its loop.
fn child_main(role: Role, chan: OwnedFd, user: &User) -> ! {
    common::log::set_procname(role.name());
    if let Err(e) = signals().thread_unblock() {
        error!("sigprocmask: {e}");
        process::exit(1);
    }
    if let Err(e) = privdrop::drop_to(user) {
        error!("{e}");
        process::exit(1);
    }
    crate::malloc::tune();
    let code = match role {
        Role::Relay => crate::relay::main(chan),
        Role::Engine => crate::engine::main(chan),
    };
    process::exit(code)
}

/// Sends descriptors; the channel stays open so a child sees EOF if the
/// parent dies.
fn send(chan: OwnedFd, msgs: Vec<(u32, Option<OwnedFd>)>) -> Result<ImsgBuf, StartError> {
    let mut ib = ImsgBuf::new(chan);
    for (kind, fd) in msgs {
        ib.compose(kind, 0, process::id(), &[], fd)
            .map_err(StartError::Imsg)?;
    }
    ib.write_all().map_err(StartError::Imsg)?;
    Ok(ib)
}

/// Runs the daemon; returns the exit status.
pub fn run(opts: &Options) -> Result<i32, StartError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(StartError::NotRoot);
    }
    let user = privdrop::lookup(&opts.user).map_err(StartError::Priv)?;
    // The device first: its open is exclusive, so a busy device means
    // another initiator runs and its control socket must stay.
    let device = device_open(&opts.device)?;
    let listener = control_open(&opts.socket)?;
    if !opts.debug {
        nix::unistd::daemon(true, false).map_err(|e| StartError::Sys("daemon", e))?;
    }
    // Block the signals the parent waits for before any child exists, so
    // none is lost; children unblock them.
    signals()
        .thread_block()
        .map_err(|e| StartError::Sys("sigprocmask", e))?;

    let (p_relay, c_relay) = pair()?;
    // SAFETY: the parent is single-threaded here; the child only drops
    // descriptors, drops privileges and runs its own loop.
    let relay = match unsafe { fork() }.map_err(|e| StartError::Sys("fork", e))? {
        ForkResult::Child => {
            drop(p_relay);
            drop(listener);
            drop(device);
            child_main(Role::Relay, c_relay, &user)
        }
        ForkResult::Parent { child } => child,
    };
    drop(c_relay);
    let (p_engine, c_engine) = pair()?;
    // SAFETY: as above.
    let engine = match unsafe { fork() }.map_err(|e| StartError::Sys("fork", e))? {
        ForkResult::Child => {
            drop(p_relay);
            drop(p_engine);
            drop(listener);
            drop(device);
            child_main(Role::Engine, c_engine, &user)
        }
        ForkResult::Parent { child } => child,
    };
    drop(c_engine);
    for pid in [Pid::this(), relay, engine] {
        no_broadcast_kill(pid);
    }

    let (r_end, e_end) = pair()?;
    let _p_relay = send(
        p_relay,
        vec![
            (procmsg::DEVICE, Some(device)),
            (procmsg::RELAY_CHANNEL, Some(r_end)),
            (procmsg::GO, None),
        ],
    )?;
    let _p_engine = send(
        p_engine,
        vec![
            (procmsg::CONTROL_SOCKET, Some(listener.into())),
            (procmsg::RELAY_CHANNEL, Some(e_end)),
            (procmsg::GO, None),
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
fn supervise(relay: Pid, engine: Pid, socket: &Path) -> i32 {
    let set = signals();
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
                    if !stopping {
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
