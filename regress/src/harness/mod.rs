//! Starting the real pieces for a test: tgtd and istgt on loopback, iscsid
//! with the emulator, iscsictl. Everything started is stopped on drop.

pub mod daemon;
pub mod rig;
pub mod targets;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use daemon::{Ctl, Daemon};
pub use rig::{pattern, roundtrip, Rig};
pub use targets::{Backend, Target, TargetKind, ISTGT_USE_DIGEST};

/// The IQNs every harness target serves.
pub const IQN_DISK: &str = "iqn.2026-11.org.example:disk";
pub const IQN_AUTH: &str = "iqn.2026-11.org.example:auth";
pub const CHAP_USER: &str = "alice";
pub const CHAP_SECRET: &str = "secretsecret12";
pub const MUTUAL_USER: &str = "tgt";
pub const MUTUAL_SECRET: &str = "tgtsecret1234";

/// A TCP port nobody listens on right now, below 32768: tgtd's `-C`
/// (which we set to the port, to keep instances apart) refuses larger
/// values. Ephemeral ports start above that range on Linux.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 20000 + (std::process::id() % 500) * 20;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (base + n % 10000) as u16;
        if Path::new(&format!("/run/tgtd/socket.{port}")).exists() {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A private scratch directory, removed on drop.
pub struct Scratch {
    pub path: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("iscsid-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("scratch dir");
        Scratch { path }
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Where cargo put the workspace binaries (`target/<profile>/`), found from
/// the running test executable (`target/<profile>/deps/x-hash`).
pub fn bin(name: &str) -> PathBuf {
    if let Ok(d) = std::env::var("ISCSID_BIN_DIR") {
        return Path::new(&d).join(name);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(name)
}

/// Polls `f` until it returns Some or `limit` passes.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Tests that need root and the targets say so plainly instead of passing.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "integration tests need root (privilege separation, tgtd); run regress/test.sh as root"
    );
}
