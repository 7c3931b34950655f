//! tgtd (tgt) and istgt instances on loopback, each with the same targets:
//! `IQN_DISK` with LUN 1 (64 MiB) and LUN 2 (16 MiB), and `IQN_AUTH` with
//! LUN 1 (16 MiB) behind CHAP (and mutual CHAP). Backing files live in
//! /dev/shm so tests can check the bytes that reached the target.

use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{
    free_port, wait_for, Scratch, CHAP_SECRET, CHAP_USER, IQN_AUTH, IQN_DISK, MUTUAL_SECRET,
    MUTUAL_USER,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Tgt,
    Istgt,
}

/// How the disk LUNs are backed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Sparse files in /dev/shm (data is checked).
    RamFile,
    /// tgt's bstype null: reads return nothing real, writes vanish (benchmarks).
    Null,
}

pub struct Target {
    pub kind: TargetKind,
    pub port: u16,
    child: Child,
    files: Vec<PathBuf>,
    params: Vec<(String, String)>,
    backend: Backend,
    dir: Scratch,
}

pub const DISK_LUN1_MB: u64 = 64;
pub const DISK_LUN2_MB: u64 = 16;
pub const AUTH_LUN1_MB: u64 = 16;

fn sparse(path: &PathBuf, mb: u64) {
    let f = fs::File::create(path).expect("backing file");
    f.set_len(mb << 20).expect("truncate");
}

fn run(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Target {
    pub fn start(kind: TargetKind) -> Target {
        Self::start_with(kind, &[], Backend::RamFile)
    }

    /// `params` are target-side iSCSI parameters for the disk target
    /// ("MaxRecvDataSegmentLength=512", ...).
    pub fn start_with(kind: TargetKind, params: &[(&str, &str)], backend: Backend) -> Target {
        super::require_root();
        let dir = Scratch::new(match kind {
            TargetKind::Tgt => "tgt",
            TargetKind::Istgt => "istgt",
        });
        // Retry with a new port if another process grabbed ours.
        for _ in 0..5 {
            let port = free_port();
            let tag = format!("iscsid-test-{}-{port}", std::process::id());
            let files: Vec<PathBuf> = ["lun0", "lun1", "lun2", "auth0", "auth1"]
                .iter()
                .map(|n| PathBuf::from(format!("/dev/shm/{tag}-{n}.img")))
                .collect();
            sparse(&files[0], 16);
            sparse(&files[1], DISK_LUN1_MB);
            sparse(&files[2], DISK_LUN2_MB);
            sparse(&files[3], 16);
            sparse(&files[4], AUTH_LUN1_MB);
            let child = match kind {
                TargetKind::Tgt => start_tgt(port, &files, params, backend),
                TargetKind::Istgt => start_istgt(port, &files, params, &dir),
            };
            match child {
                Some(child) => {
                    return Target {
                        kind,
                        port,
                        child,
                        files,
                        params: params
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect(),
                        backend,
                        dir,
                    }
                }
                None => {
                    for f in &files {
                        let _ = fs::remove_file(f);
                    }
                }
            }
        }
        panic!("could not start {kind:?}");
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The backing file of the disk target's LUN `lun` (1 or 2), as the
    /// target sees it. LUN numbers are the target's.
    pub fn disk_file(&self, lun: u32) -> PathBuf {
        self.files[lun as usize].clone()
    }

    pub fn auth_file(&self) -> PathBuf {
        self.files[4].clone()
    }

    /// The LUN numbers the disk target exposes as disks.
    pub fn disk_luns(&self) -> Vec<u32> {
        match self.kind {
            // LUN 0 is tgt's controller; the null backend has one disk.
            TargetKind::Tgt if self.backend == Backend::Null => vec![1],
            TargetKind::Tgt => vec![1, 2],
            // istgt needs a LUN 0 and it is a disk.
            TargetKind::Istgt => vec![0, 1, 2],
        }
    }

    /// tgt only: adds LUN `lun` (a new RAM file of `mb` MiB) to the disk
    /// target while it runs; returns its backing file.
    pub fn add_lun(&mut self, lun: u32, mb: u64) -> PathBuf {
        assert_eq!(
            self.kind,
            TargetKind::Tgt,
            "LUNs are added at run time on tgt only"
        );
        let path = PathBuf::from(format!(
            "/dev/shm/iscsid-test-{}-{}-extra{lun}.img",
            std::process::id(),
            self.port
        ));
        sparse(&path, mb);
        let l = lun.to_string();
        let f = path.to_string_lossy().into_owned();
        assert!(
            self.tgtadm(&[
                "--op",
                "new",
                "--mode",
                "logicalunit",
                "--tid",
                "1",
                "--lun",
                &l,
                "-b",
                &f
            ]),
            "tgtadm add lun"
        );
        self.files.push(path.clone());
        path
    }

    /// Kills the target daemon outright (no logout, no FIN from it), waits
    /// `down`, and starts it again on the same port with the same data.
    pub fn restart(&mut self, down: Duration) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(down);
        let params: Vec<(&str, &str)> = self
            .params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        // Extra LUNs added at run time are not restored.
        let files = self.files[..5].to_vec();
        let child = match self.kind {
            TargetKind::Tgt => {
                let _ = fs::remove_file(format!("/run/tgtd/socket.{}", self.port));
                let _ = fs::remove_file(format!("/run/tgtd/socket.{}.lock", self.port));
                start_tgt(self.port, &files, &params, self.backend)
            }
            TargetKind::Istgt => start_istgt(self.port, &files, &params, &self.dir),
        };
        self.child = child.expect("target restart");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// tgtadm for this instance.
    pub fn tgtadm(&self, args: &[&str]) -> bool {
        let p = self.port.to_string();
        let mut c = Command::new("tgtadm");
        c.args(["-C", &p, "--lld", "iscsi"]).args(args);
        run(&mut c)
    }
}

fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn start_tgt(
    port: u16,
    files: &[PathBuf],
    params: &[(&str, &str)],
    backend: Backend,
) -> Option<Child> {
    let p = port.to_string();
    let _ = fs::remove_file(format!("/run/tgtd/socket.{port}"));
    let _ = fs::remove_file(format!("/run/tgtd/socket.{port}.lock"));
    let mut child = Command::new("tgtd")
        .args([
            "-f",
            "-C",
            &p,
            "--iscsi",
            &format!("portal=127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    if wait_for(Duration::from_secs(10), || listening(port).then_some(())).is_none() {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    }
    let adm = |args: &[&str]| {
        let mut c = Command::new("tgtadm");
        c.args(["-C", &p, "--lld", "iscsi"]).args(args);
        assert!(run(&mut c), "tgtadm {args:?} failed");
    };
    let f = |i: usize| files[i].to_string_lossy().into_owned();
    adm(&[
        "--op", "new", "--mode", "target", "--tid", "1", "-T", IQN_DISK,
    ]);
    let lun = |tid: &str, lun: &str, backing: &[&str]| {
        let mut a = vec![
            "--op",
            "new",
            "--mode",
            "logicalunit",
            "--tid",
            tid,
            "--lun",
            lun,
        ];
        a.extend_from_slice(backing);
        adm(&a);
    };
    match backend {
        Backend::RamFile => {
            lun("1", "1", &["-b", &f(1)]);
            lun("1", "2", &["-b", &f(2)]);
        }
        Backend::Null => lun("1", "1", &["--bstype", "null", "-b", "/dev/null/nullbs"]),
    }
    adm(&[
        "--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL",
    ]);
    for (k, v) in params {
        adm(&[
            "--op", "update", "--mode", "target", "--tid", "1", "--name", k, "--value", v,
        ]);
    }
    adm(&[
        "--op", "new", "--mode", "target", "--tid", "2", "-T", IQN_AUTH,
    ]);
    lun("2", "1", &["-b", &f(4)]);
    adm(&[
        "--op", "bind", "--mode", "target", "--tid", "2", "-I", "ALL",
    ]);
    adm(&[
        "--op",
        "new",
        "--mode",
        "account",
        "--user",
        CHAP_USER,
        "--password",
        CHAP_SECRET,
    ]);
    adm(&[
        "--op",
        "new",
        "--mode",
        "account",
        "--user",
        MUTUAL_USER,
        "--password",
        MUTUAL_SECRET,
    ]);
    adm(&[
        "--op", "bind", "--mode", "account", "--tid", "2", "--user", CHAP_USER,
    ]);
    adm(&[
        "--op",
        "bind",
        "--mode",
        "account",
        "--tid",
        "2",
        "--user",
        MUTUAL_USER,
        "--outgoing",
    ]);
    Some(child)
}

/// A target parameter for istgt that goes into its LogicalUnit sections
/// (e.g. `"Header Data"`: both digests required).
pub const ISTGT_USE_DIGEST: &str = "UseDigest";

fn start_istgt(
    port: u16,
    files: &[PathBuf],
    params: &[(&str, &str)],
    dir: &Scratch,
) -> Option<Child> {
    let f = |i: usize| files[i].to_string_lossy().into_owned();
    // UseDigest belongs to the LogicalUnit sections; the rest is global.
    let use_digest = params
        .iter()
        .find(|(k, _)| *k == ISTGT_USE_DIGEST)
        .map_or("Auto", |(_, v)| *v);
    let extra: String = params
        .iter()
        .filter(|(k, _)| *k != ISTGT_USE_DIGEST)
        .map(|(k, v)| format!("  {k} {v}\n"))
        .collect();
    let conf = format!(
        "[Global]\n  NodeBase \"iqn.2026-11.org.example\"\n  PidFile {d}/istgt.pid\n  AuthFile {d}/auth.conf\n\
         MediaDirectory {d}\n  LogFacility \"local7\"\n  Timeout 30\n  NopInInterval 20\n\
         DiscoveryAuthMethod Auto\n  DiscoveryAuthGroup AuthGroup1\n  MaxSessions 16\n  MaxConnections 4\n\
         MaxR2T 32\n  MaxOutstandingR2T 16\n  DefaultTime2Wait 2\n  DefaultTime2Retain 60\n\
         FirstBurstLength 262144\n  MaxBurstLength 1048576\n  MaxRecvDataSegmentLength 262144\n\
         InitialR2T Yes\n  ImmediateData Yes\n  DataPDUInOrder Yes\n  DataSequenceInOrder Yes\n\
         ErrorRecoveryLevel 0\n{extra}\n\
         [UnitControl]\n  AuthMethod CHAP Mutual\n  AuthGroup AuthGroup10000\n\n\
         [PortalGroup1]\n  Portal DA1 127.0.0.1:{port}\n\n\
         [InitiatorGroup1]\n  InitiatorName \"ALL\"\n  Netmask ALL\n\n\
         [LogicalUnit1]\n  TargetName {IQN_DISK}\n  Mapping PortalGroup1 InitiatorGroup1\n  AuthMethod Auto\n\
         AuthGroup AuthGroup1\n  UseDigest {use_digest}\n  UnitType Disk\n  QueueDepth 64\n\
         LUN0 Storage {l0} Auto\n  LUN1 Storage {l1} Auto\n  LUN2 Storage {l2} Auto\n\n\
         [LogicalUnit2]\n  TargetName {IQN_AUTH}\n  Mapping PortalGroup1 InitiatorGroup1\n  AuthMethod CHAP\n\
         AuthGroup AuthGroup1\n  UseDigest Auto\n  UnitType Disk\n  QueueDepth 64\n\
         LUN0 Storage {a0} Auto\n  LUN1 Storage {a1} Auto\n",
        d = dir.path.display(),
        l0 = f(0),
        l1 = f(1),
        l2 = f(2),
        a0 = f(3),
        a1 = f(4),
    );
    let cpath = dir.join("istgt.conf");
    fs::write(&cpath, conf).ok()?;
    let auth = format!(
        "[AuthGroup1]\n  Auth \"{CHAP_USER}\" \"{CHAP_SECRET}\" \"{MUTUAL_USER}\" \"{MUTUAL_SECRET}\"\n\n\
         [AuthGroup10000]\n  Auth \"ctluser\" \"ctlsecret1234\" \"mutualuser\" \"mutualsecret12\"\n"
    );
    let apath = dir.join("auth.conf");
    let mut af = fs::File::create(&apath).ok()?;
    af.write_all(auth.as_bytes()).ok()?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&apath, fs::Permissions::from_mode(0o600)).ok()?;
    let mut child = Command::new("istgt")
        .args(["-D", "-c"])
        .arg(&cpath)
        .arg("-p")
        .arg(dir.join("istgt.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    if wait_for(Duration::from_secs(10), || listening(port).then_some(())).is_none() {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    }
    Some(child)
}

impl Drop for Target {
    fn drop(&mut self) {
        match self.kind {
            // tgtd ignores SIGTERM and its "delete system" refuses while
            // targets exist; it keeps nothing worth a clean exit.
            TargetKind::Tgt => {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
            TargetKind::Istgt => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(self.child.id() as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
                if wait_for(Duration::from_secs(3), || {
                    self.child.try_wait().ok().flatten()
                })
                .is_none()
                {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                }
            }
        }
        for f in &self.files {
            let _ = fs::remove_file(f);
        }
        if self.kind == TargetKind::Tgt {
            let _ = fs::remove_file(format!("/run/tgtd/socket.{}", self.port));
            let _ = fs::remove_file(format!("/run/tgtd/socket.{}.lock", self.port));
        }
    }
}
