//! Recovery against a real target that dies and comes back: commands are
//! held and reissued on the new session, acknowledged writes are never
//! lost, and nothing hangs.

use std::sync::Mutex;
use std::time::Duration;

use regress::harness::{pattern, Rig, TargetKind};

fn target_restart_under_load(k: TargetKind) {
    let mut rig = Rig::new(k, &[]);
    rig.reload(&rig.disk_block("disk", ""));
    let n = if k == TargetKind::Tgt { 2 } else { 3 };
    let disk = rig
        .wait_disks(n)
        .into_iter()
        .find(|d| d.lun == 1)
        .expect("LUN 1");
    // What the "kernel" was told is on disk.
    let acked: Mutex<Vec<(u64, u64)>> = Mutex::default();
    let (emu, target) = (&rig.emu, &mut rig.target);
    std::thread::scope(|sc| {
        for t in 0..4u64 {
            let (acked, disk) = (&acked, &disk);
            sc.spawn(move || {
                for j in 0..60u64 {
                    let lba = t * 10_000 + j * 16;
                    let seed = t << 32 | j;
                    if emu.write(disk, lba, &pattern(seed, 8192)).is_ok() {
                        acked.lock().expect("acked").push((lba, seed));
                    }
                    std::thread::sleep(Duration::from_millis(25));
                }
            });
        }
        std::thread::sleep(Duration::from_millis(400));
        target.restart(Duration::from_secs(2));
    });
    let acked = acked.into_inner().expect("acked");
    // Held commands came back: nearly everything was acknowledged.
    assert!(
        acked.len() >= 200,
        "only {} of 240 writes acknowledged\n{}",
        acked.len(),
        rig.daemon.log_text()
    );
    for &(lba, seed) in &acked {
        assert!(
            rig.backing(1, lba * 512, 8192) == pattern(seed, 8192),
            "acknowledged write at lba {lba} is not on the target"
        );
    }
    let s = rig.wait_show("disk", "logged in", Duration::from_secs(10));
    assert!(!s.contains("; 1 logins"), "no second login:\n{s}");
}

#[test]
fn tgt_restart_under_load() {
    target_restart_under_load(TargetKind::Tgt);
}

#[test]
fn istgt_restart_under_load() {
    target_restart_under_load(TargetKind::Istgt);
}
