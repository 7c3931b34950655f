//! The daemon's process model: privilege separation, the control socket's
//! permissions, shutdown, a dying child, and bad input on the control
//! socket and in iscsi.conf.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

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
    let kids = wait_for(Duration::from_secs(5), || {
        let k = d.children();
        (k.len() == 2).then_some(k)
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
