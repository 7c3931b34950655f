//! A whole test setup in one value: a real target, the emulator, iscsid
//! and a control client, torn down in the right order on drop.

use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

use crate::emulator::{DiskInfo, Emulator};

use super::{Ctl, Daemon, Scratch, Target, TargetKind, IQN_DISK};

pub struct Rig {
    // Field order is drop order: the daemon logs out before the target goes.
    pub ctl: Ctl,
    pub daemon: Daemon,
    pub emu: Emulator,
    pub target: Target,
    _dir: Scratch,
}

impl Rig {
    /// A target of `kind` (with target-side `params`), the emulator and iscsid.
    pub fn new(kind: TargetKind, params: &[(&str, &str)]) -> Rig {
        let target = Target::start_with(kind, params, super::Backend::RamFile);
        Self::with_target(target)
    }

    pub fn with_target(target: Target) -> Rig {
        let dir = Scratch::new("rig");
        let dev = dir.join("vscsi0.sock");
        let emu = Emulator::listen(&dev).expect("emulator");
        let daemon = Daemon::start(&dev);
        let ctl = daemon.ctl();
        Rig {
            ctl,
            daemon,
            emu,
            target,
            _dir: dir,
        }
    }

    /// A `target NAME { ... }` block for the disk target with extra lines.
    pub fn disk_block(&self, name: &str, extra: &str) -> String {
        format!(
            "target {name} {{\n\ttargetaddr 127.0.0.1 port {}\n\ttargetname \"{IQN_DISK}\"\n{extra}}}\n",
            self.target.port
        )
    }

    /// Writes the config, reloads, and waits for `n` disks.
    pub fn reload(&self, conf: &str) -> String {
        self.ctl.write_config(conf);
        self.ctl.ok(&["reload"])
    }

    pub fn wait_disks(&self, n: usize) -> Vec<DiskInfo> {
        match self
            .emu
            .wait_disks(|d| d.len() >= n, Duration::from_secs(20))
        {
            Ok(d) => d,
            Err(e) => panic!(
                "expected {n} disks: {e:?}\nshow:\n{}\nlog:\n{}",
                self.ctl.ok(&["show"]),
                self.daemon.log_text()
            ),
        }
    }

    /// `iscsictl show` of one session.
    pub fn show(&self, name: &str) -> String {
        self.ctl.ok(&["show", "session", name])
    }

    /// Waits until `show session NAME` contains `what`.
    pub fn wait_show(&self, name: &str, what: &str, limit: Duration) -> String {
        let mut last = String::new();
        let got = super::wait_for(limit, || {
            let o = self.ctl.run(&["show", "session", name]);
            last = String::from_utf8_lossy(&o.stdout).into_owned();
            last.contains(what).then(|| last.clone())
        });
        got.unwrap_or_else(|| {
            panic!(
                "session {name} never showed {what:?}:\n{last}\nlog:\n{}",
                self.daemon.log_text()
            )
        })
    }

    /// Bytes at `offset` in the backing file of the target's LUN.
    pub fn backing(&self, lun: u32, offset: u64, len: usize) -> Vec<u8> {
        let mut f = std::fs::File::open(self.target.disk_file(lun)).expect("backing file");
        let mut b = vec![0u8; len];
        f.seek(SeekFrom::Start(offset)).expect("seek");
        f.read_exact(&mut b).expect("read backing");
        b
    }
}

/// Deterministic pseudo-random bytes (xorshift), different per seed.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Writes `data` at `lba`, reads it back through iSCSI, and checks it
/// against the target's own backing file.
pub fn roundtrip(rig: &Rig, disk: &DiskInfo, lba: u64, data: &[u8]) {
    rig.emu
        .write(disk, lba, data)
        .unwrap_or_else(|e| panic!("write {} at {lba}: {e:?}", data.len()));
    let blocks = (data.len() / disk.block_size as usize) as u32;
    let back = rig
        .emu
        .read(disk, lba, blocks)
        .unwrap_or_else(|e| panic!("read at {lba}: {e:?}"));
    assert!(
        back == data,
        "read back differs at lba {lba} ({} bytes)",
        data.len()
    );
    let on_target = rig.backing(disk.lun, lba * u64::from(disk.block_size), data.len());
    assert!(
        on_target == data,
        "target backing file differs at lba {lba}"
    );
}

impl TargetKind {
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Tgt => "tgt",
            TargetKind::Istgt => "istgt",
        }
    }
}
