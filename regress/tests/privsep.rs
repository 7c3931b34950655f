//! The daemon's process model: privilege separation, the control socket's
//! permissions, shutdown, a dying child, and bad input on the control
//! socket and in iscsi.conf.

use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::ctl::{self, kind};
use common::imsg::ImsgBuf;
use nix::sys::signal::{kill, Signal};
use nix::unistd::{Pid, User};
use regress::emulator::Emulator;
use regress::harness::{bin, wait_for, Daemon, Rig, Scratch, TargetKind};

const TEST_USER: &str = "_iscsitest";

fn status_field(pid: u32, field: &str) -> String {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    s.lines()
        .find_map(|l| l.strip_prefix(field).map(|v| v.trim().to_owned()))
        .unwrap_or_default()
}

/// A signal mask line of /proc/PID/status (SigBlk:, SigIgn:, SigCgt:), or
/// None once the process is gone.
fn sigmask(pid: u32, field: &str) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let v = s.lines().find_map(|l| l.strip_prefix(field))?;
    u64::from_str_radix(v.trim(), 16).ok()
}

fn sigbit(sig: Signal) -> u64 {
    1 << (sig as i32 - 1)
}

/// The command line of a process, split at its NULs.
fn cmdline(pid: u32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// The direct children of `pid`, from the kernel's own list.
fn kids(pid: u32) -> Vec<u32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// A child is through its start-up once it runs the re-exec'd binary with
/// its role's flag and has unblocked SIGTERM, which it does only after
/// dropping privileges and setting up its own handling of the signal.
fn started(pid: u32) -> bool {
    let role = cmdline(pid).get(1).is_some_and(|a| a == "-R" || a == "-E");
    let term = sigbit(Signal::SIGTERM);
    let unblocked = sigmask(pid, "SigBlk:").is_some_and(|b| b & term == 0);
    let handled = sigmask(pid, "SigIgn:").unwrap_or(0) | sigmask(pid, "SigCgt:").unwrap_or(0);
    role && unblocked && handled & term != 0
}

/// iscsid started directly rather than through `Daemon`, so that a test
/// sees it from its first instant (`Daemon::start` returns only once the
/// control socket exists, when the children are often through their
/// start-up) and decides what it inherits.
struct Early {
    child: Child,
    log: std::path::PathBuf,
}

impl Early {
    fn start(dir: &Scratch, dev: &Path) -> Early {
        regress::harness::require_root();
        let log = dir.join("iscsid.log");
        let logf = fs::File::create(&log).unwrap();
        let child = Command::new(bin("iscsid"))
            .arg("-dv")
            .arg("-n")
            .arg(dev)
            .arg("-s")
            .arg(dir.join("iscsid.sock"))
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .expect("spawn iscsid (build it first: cargo build --workspace --bins)");
        Early { child, log }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Both children, once both are `started`.
    fn wait_started(&self) -> Vec<u32> {
        wait_for(Duration::from_secs(10), || {
            let k = kids(self.pid());
            (k.len() == 2 && k.iter().all(|&p| started(p))).then_some(k)
        })
        .unwrap_or_else(|| panic!("children did not start:\n{}", self.log_text()))
    }

    fn wait_exit(&mut self) -> Option<i32> {
        wait_for(Duration::from_secs(15), || {
            self.child.try_wait().ok().flatten()
        })
        .unwrap_or_else(|| panic!("iscsid did not exit:\n{}", self.log_text()))
        .code()
    }
}

impl Drop for Early {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        if wait_for(Duration::from_secs(10), || {
            self.child.try_wait().ok().flatten()
        })
        .is_none()
        {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- iscsid log ----\n{}", self.log_text());
        }
    }
}

/// Runs `cmd args` as the unprivileged test user.
fn as_user(cmd: &std::path::Path, args: &[&str]) -> std::process::Output {
    let u = User::from_name(TEST_USER)
        .expect("getpwnam")
        .expect("test user (regress/setup.sh)");
    Command::new("setpriv")
        .arg(format!("--reuid={}", u.uid))
        .arg(format!("--regid={}", u.gid))
        .arg("--clear-groups")
        .arg(cmd)
        .args(args)
        .output()
        .expect("setpriv")
}

#[test]
fn children_are_unprivileged_and_chrooted() {
    let dir = Scratch::new("privsep");
    let dev = dir.join("vscsi0.sock");
    let _emu = Emulator::listen(&dev).expect("emulator");
    let d = Daemon::start(&dev);
    // Checked once they have dropped privileges: `started` comes after.
    let kids = wait_for(Duration::from_secs(5), || {
        let k = d.children();
        (k.len() == 2 && k.iter().all(|&p| started(p))).then_some(k)
    })
    .expect("relay and engine");
    let user = User::from_name("_iscsid").unwrap().unwrap();
    let uid = user.uid.to_string();
    for pid in kids {
        let uids: Vec<String> = status_field(pid, "Uid:")
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        assert_eq!(uids, vec![uid.clone(); 4], "pid {pid} uids");
        let gids: Vec<String> = status_field(pid, "Gid:")
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        assert_eq!(gids, vec![user.gid.to_string(); 4], "pid {pid} gids");
        assert_eq!(
            status_field(pid, "Groups:"),
            user.gid.to_string(),
            "pid {pid} groups"
        );
        let root = fs::read_link(format!("/proc/{pid}/root")).expect("root link");
        assert_eq!(
            root,
            std::path::PathBuf::from("/var/empty"),
            "pid {pid} chroot"
        );
    }
    // The parent keeps root, and nothing else.
    assert_eq!(
        status_field(d.pid(), "Uid:").split_whitespace().next(),
        Some("0")
    );
    let mode = fs::metadata(&d.socket)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "control socket mode");
}

#[test]
fn control_socket_refuses_state_changes_from_non_root() {
    let dir = Scratch::new("ctlperm");
    let dev = dir.join("vscsi0.sock");
    let _emu = Emulator::listen(&dev).expect("emulator");
    let d = Daemon::start(&dev);
    // Let the test user reach the socket at all; the daemon still checks.
    fs::set_permissions(&d.socket, fs::Permissions::from_mode(0o666)).unwrap();
    fs::set_permissions(&d.dir.path, fs::Permissions::from_mode(0o755)).unwrap();
    let ctl = d.ctl();
    ctl.write_config("target x {\n\ttargetaddr 127.0.0.1 port 1\n\ttargetname \"iqn.2026-11.org.example:y\"\n}\n");
    fs::set_permissions(&ctl.config, fs::Permissions::from_mode(0o644)).unwrap();
    let s = d.socket.to_string_lossy().into_owned();
    let c = ctl.config.to_string_lossy().into_owned();
    let o = as_user(&bin("iscsictl"), &["-s", &s, "-f", &c, "reload"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "non-root reload succeeded");
    assert!(err.contains("permission denied"), "{err}");
    let o = as_user(&bin("iscsictl"), &["-s", &s, "log", "verbose"]);
    assert!(!o.status.success());
    // Read-only requests are fine, and nothing was configured.
    let o = as_user(&bin("iscsictl"), &["-s", &s, "show"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("Session"));
    // Root may.
    assert!(ctl.ok(&["reload"]).contains("command successful"));
}

#[test]
fn iscsid_needs_root() {
    let o = as_user(
        &bin("iscsid"),
        &["-d", "-n", "/nonexistent", "-s", "/tmp/x.sock"],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("need root privileges"), "{err}");
    let o = Command::new(bin("iscsid")).arg("-x").output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("usage: iscsid [-dv] [-n device] [-s socket]")
    );
}

#[test]
fn sigterm_logs_out_and_closes_the_device() {
    let mut rig = Rig::new(TargetKind::Tgt, &[]);
    rig.reload(&rig.disk_block("disk", ""));
    rig.wait_disks(2);
    let code = rig.daemon.stop();
    assert_eq!(code, Some(0), "exit status\n{}", rig.daemon.log_text());
    let log = rig.daemon.log_text();
    assert!(log.contains("disk: logged out"), "{log}");
    assert!(!rig.daemon.socket.exists(), "control socket left behind");
    // The device closed: the emulated kernel detached the disks.
    rig.emu
        .wait_disks(|d| d.is_empty(), Duration::from_secs(5))
        .expect("disks detached on close");
    // The target saw the session end (no I_T nexus left).
    let p = rig.target.port.to_string();
    let out = Command::new("tgtadm")
        .args([
            "-C", &p, "--lld", "iscsi", "--op", "show", "--mode", "target",
        ])
        .output()
        .unwrap();
    let txt = String::from_utf8_lossy(&out.stdout);
    assert!(!txt.contains("I_T nexus: "), "{txt}");
}

#[test]
fn a_dead_child_takes_the_daemon_down() {
    let dir = Scratch::new("deadchild");
    let dev = dir.join("vscsi0.sock");
    let _emu = Emulator::listen(&dev).expect("emulator");
    let mut d = Daemon::start(&dev);
    let kids = wait_for(Duration::from_secs(5), || {
        let k = d.children();
        (k.len() == 2).then_some(k)
    })
    .expect("children");
    kill(Pid::from_raw(kids[1] as i32), Signal::SIGKILL).unwrap();
    let gone = wait_for(Duration::from_secs(15), || (!d.running()).then_some(()));
    assert!(gone.is_some(), "daemon still running");
    let log = d.log_text();
    assert!(log.contains("exited unexpectedly"), "{log}");
}

#[test]
fn broken_config_is_reported_and_nothing_is_sent() {
    let dir = Scratch::new("badconf");
    let dev = dir.join("vscsi0.sock");
    let _emu = Emulator::listen(&dev).expect("emulator");
    let d = Daemon::start(&dev);
    let ctl = d.ctl();
    ctl.write_config("target ok {\n\ttargetaddr 127.0.0.1\n\ttargetname \"iqn.2026-11.org.example:b\"\n}\ntarget bad {\n\tfrobnicate yes\n\tmaxburstlength 12\n}\n");
    let o = ctl.run(&["reload"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    let f = ctl.config.to_string_lossy();
    assert!(err.contains(&format!("{f}:6:")), "{err}");
    assert!(err.contains(&format!("{f}:7:")), "{err}");
    assert!(
        err.contains("errors while loading configuration file"),
        "{err}"
    );
    assert!(
        !ctl.ok(&["show"]).contains("Session"),
        "a broken config changed the daemon"
    );
    // Secrets in a file others can read are refused, as ssh does.
    ctl.write_config("target a {\n\ttargetaddr 127.0.0.1\n\ttargetname \"iqn.2026-11.org.example:b\"\n\tchap name u secret \"secretsecret12\"\n}\n");
    fs::set_permissions(&ctl.config, fs::Permissions::from_mode(0o644)).unwrap();
    let o = ctl.run(&["reload"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("chmod 600"), "{err}");
    assert!(!ctl.ok(&["show"]).contains("Session"));
}

#[test]
fn garbage_on_the_control_socket_is_survived() {
    let dir = Scratch::new("garbage");
    let dev = dir.join("vscsi0.sock");
    let _emu = Emulator::listen(&dev).expect("emulator");
    let mut d = Daemon::start(&dev);
    // Not imsg at all: a header with an impossible length.
    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.write_all(&[0xff; 64]).unwrap();
    drop(s);
    // Well framed, but nonsense: unknown type, truncated reload.
    let mut ib = ImsgBuf::new(UnixStream::connect(&d.socket).unwrap().into());
    ib.set_max_size(ctl::MAX_MSG);
    ib.compose(9999, 0, 0, b"hello", None).unwrap();
    ib.compose(kind::RELOAD, 0, 0, &[1, 2, 3], None).unwrap();
    ib.compose(kind::LOG_VERBOSE, 0, 0, &[7], None).unwrap();
    ib.write_all().unwrap();
    for _ in 0..3 {
        let m = ib.recv_blocking().unwrap().expect("reply");
        assert_eq!(m.kind, kind::FAIL, "{}", ctl::decode_text(&m.data));
    }
    // A client that sends half a message and hangs up.
    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.write_all(&[1, 0, 0, 0, 100, 0]).unwrap();
    drop(s);
    std::thread::sleep(Duration::from_millis(200));
    assert!(d.running());
    assert!(d.ctl().ok(&["show", "vscsi", "stats"]).contains("VSCSI"));
}

#[test]
fn discover_of_a_dead_portal_fails_clearly() {
    let dir = Scratch::new("deadportal");
    let dev = dir.join("vscsi0.sock");
    let _emu = Emulator::listen(&dev).expect("emulator");
    let d = Daemon::start(&dev);
    let port = regress::harness::free_port();
    let o = d.ctl().run(&["discover", &format!("127.0.0.1:{port}")]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("discovery failed: connect to 127.0.0.1:"),
        "{err}"
    );
    assert!(err.contains("refused"), "{err}");
    // The one-off session is gone again.
    assert!(!d.ctl().ok(&["show"]).contains("Session"));
}

/// The data arena: both children map the one shared region the parent
/// made (the same object in their /proc/PID/maps), and no process keeps a
/// descriptor of it once it is mapped.
#[test]
fn both_children_map_one_arena_and_no_one_keeps_its_descriptor() {
    let dir = Scratch::new("shm");
    let dev = dir.join("vscsi0.sock");
    let _emu = Emulator::listen(&dev).expect("emulator");
    let d = Early::start(&dir, &dev);
    let kids = d.wait_started();
    const NAME: &str = "memfd:iscsid-arena";
    // The inode of the shared mapping of the arena, once mapped.
    let mapped = |pid: u32| -> Option<String> {
        fs::read_to_string(format!("/proc/{pid}/maps"))
            .ok()?
            .lines()
            .find(|l| l.contains(NAME))
            .and_then(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                // address, perms (shared: "rw-s"), offset, dev, inode.
                (f.get(1) == Some(&"rw-s")).then(|| f.get(4).map(|s| s.to_string()))?
            })
    };
    let inodes = wait_for(Duration::from_secs(10), || {
        kids.iter().map(|&k| mapped(k)).collect::<Option<Vec<_>>>()
    })
    .unwrap_or_else(|| panic!("the children did not map the arena:\n{}", d.log_text()));
    assert_eq!(inodes[0], inodes[1], "two regions");
    assert!(mapped(d.pid()).is_none(), "the parent maps it too");
    for p in [d.pid(), kids[0], kids[1]] {
        let fds: Vec<String> = fs::read_dir(format!("/proc/{p}/fd"))
            .unwrap()
            .flatten()
            .filter_map(|e| fs::read_link(e.path()).ok())
            .map(|l| l.to_string_lossy().into_owned())
            .collect();
        assert!(
            !fds.iter().any(|l| l.contains(NAME)),
            "{p} keeps it: {fds:?}"
        );
    }
}

/// The children are exec'd (bgpd's start_child), not just forked: each
/// runs the binary afresh with its role's flag, in an address space of its
/// own, and has no descriptor the parent inherited from its starter.
#[test]
fn children_are_exec_d_afresh_and_inherit_no_descriptors() {
    let dir = Scratch::new("exec");
    let dev = dir.join("vscsi0.sock");
    let _emu = Emulator::listen(&dev).expect("emulator");
    // A descriptor without close-on-exec, as a careless starter leaves one.
    let (r, _w) = nix::unistd::pipe().unwrap();
    let ino = fs::read_link(format!("/proc/self/fd/{}", r.as_raw_fd())).unwrap();
    let d = Early::start(&dir, &dev);
    let kids = d.wait_started();
    drop(r);
    let parent_fds = |pid: u32| -> Vec<std::path::PathBuf> {
        fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
            .filter_map(|e| fs::read_link(e.path()).ok())
            .collect()
    };
    assert!(
        parent_fds(d.pid()).contains(&ino),
        "the parent should have inherited {ino:?}"
    );
    let exe = fs::read_link(format!("/proc/{}/exe", d.pid())).unwrap();
    let mut roles = Vec::new();
    for &k in &kids {
        assert!(!parent_fds(k).contains(&ino), "child {k} inherited {ino:?}");
        assert_eq!(fs::read_link(format!("/proc/{k}/exe")).unwrap(), exe);
        let args = cmdline(k);
        assert_eq!(Path::new(&args[0]), exe, "child {k}: {args:?}");
        roles.push(args[1].clone());
    }
    roles.sort();
    assert_eq!(roles, ["-E", "-R"]);
    // With ASLR on, fresh address spaces put the stack somewhere else each
    // time; a forked child would have its parent's.
    let aslr = fs::read_to_string("/proc/sys/kernel/randomize_va_space").unwrap_or_default();
    if aslr.trim() != "0" {
        let stack = |pid: u32| {
            fs::read_to_string(format!("/proc/{pid}/maps"))
                .unwrap()
                .lines()
                .find(|l| l.ends_with("[stack]"))
                .map(str::to_owned)
        };
        let p = stack(d.pid());
        assert!(p.is_some());
        for &k in &kids {
            assert_ne!(stack(k), p, "child {k} has the parent's stack");
        }
        assert_ne!(stack(kids[0]), stack(kids[1]));
    }
}

/// From the fork until its own handling is in place, a child keeps the
/// parent's signals blocked; it never runs with SIGTERM at its default
/// action (which would kill it). Sampled from the daemon's first instant
/// until both children have started: a sample can miss a bad moment, but
/// cannot fail when there is none.
#[test]
fn children_never_leave_sigterm_at_its_default_action() {
    let dir = Scratch::new("sigwindow");
    let dev = dir.join("vscsi0.sock");
    let _emu = Emulator::listen(&dev).expect("emulator");
    let d = Early::start(&dir, &dev);
    let term = sigbit(Signal::SIGTERM);
    let end = Instant::now() + Duration::from_secs(10);
    let mut samples = 0u64;
    loop {
        let k = kids(d.pid());
        for &p in &k {
            let (Some(b), Some(i), Some(c)) = (
                sigmask(p, "SigBlk:"),
                sigmask(p, "SigIgn:"),
                sigmask(p, "SigCgt:"),
            ) else {
                continue;
            };
            samples += 1;
            assert_ne!(
                (b | i | c) & term,
                0,
                "child {p} ({:?}) has SIGTERM unblocked at its default action",
                cmdline(p)
            );
        }
        if k.len() == 2 && k.iter().all(|&p| started(p)) {
            break;
        }
        assert!(
            Instant::now() < end,
            "children did not start:\n{}",
            d.log_text()
        );
        std::thread::yield_now();
    }
    assert!(samples > 0);
}

/// A SIGTERM that reaches the daemon while its children are still starting
/// is a shutdown like any other: the parent passes it on, the engine
/// handles it once its handler is there (it was pending until then), the
/// relay follows, and the status is 0. A child killed by the signal would
/// make the parent report it and exit 1.
#[test]
fn sigterm_during_start_up_is_a_clean_shutdown() {
    let dir = Scratch::new("earlyterm");
    let dev = dir.join("vscsi0.sock");
    let _emu = Emulator::listen(&dev).expect("emulator");
    let mut d = Early::start(&dir, &dev);
    // Not before the parent blocks it: until then SIGTERM kills the parent
    // itself, by design, with no children to speak of. It blocks it before
    // the first fork, so a child is the sign. (SigBlk of the parent is no
    // sign: sigwait(2) unblocks the signals it waits for while it sleeps.)
    let end = Instant::now() + Duration::from_secs(10);
    while kids(d.pid()).is_empty() {
        assert!(Instant::now() < end, "no child:\n{}", d.log_text());
        std::thread::yield_now();
    }
    kill(Pid::from_raw(d.pid() as i32), Signal::SIGTERM).unwrap();
    let code = d.wait_exit();
    let log = d.log_text();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("engine: shutting down"), "{log}");
    assert!(!log.contains("terminated"), "{log}");
    assert!(!log.contains("unexpectedly"), "{log}");
}
