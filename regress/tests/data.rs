//! The data path end to end: the emulated kernel's reads and writes go
//! through iscsid to real targets, and the bytes are checked against the
//! targets' backing files in /dev/shm.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use regress::emulator::{Dir, EmuError};
use regress::harness::{pattern, roundtrip, Rig, TargetKind, CHAP_SECRET, CHAP_USER, IQN_AUTH};

fn disk_count(k: TargetKind) -> usize {
    match k {
        TargetKind::Tgt => 2,
        TargetKind::Istgt => 3,
    }
}

/// Random data at many offsets and sizes on every LUN.
fn random_data(k: TargetKind) {
    let rig = Rig::new(k, &[]);
    rig.reload(&rig.disk_block("disk", ""));
    let disks = rig.wait_disks(disk_count(k));
    for (n, d) in disks.iter().enumerate() {
        let mut seed = 100 * n as u64;
        for blocks in [1u64, 7, 8, 64, 129, 512, 2049] {
            seed += 1;
            let lba = (seed * 7919) % (d.blocks - blocks);
            let mut data = vec![0u8; (blocks * u64::from(d.block_size)) as usize];
            getrandom::getrandom(&mut data).expect("random");
            roundtrip(&rig, d, lba, &data);
        }
    }
}

/// Transfers that cross FirstBurstLength, MaxBurstLength and the target's
/// MaxRecvDataSegmentLength many times, with unsolicited data on.
fn large(k: TargetKind) {
    let rig = Rig::new(k, &[]);
    rig.reload(&rig.disk_block(
        "disk",
        "\tmaxburstlength 65536\n\tfirstburstlength 16384\n\tinitialr2t no\n\tmaxrecvdatasegmentlength 8192\n",
    ));
    let disks = rig.wait_disks(disk_count(k));
    for (i, len) in [(1 << 20) + 512, 4 << 20, 3 * 65536 + 1536]
        .into_iter()
        .enumerate()
    {
        roundtrip(
            &rig,
            &disks[0],
            1000 + 9000 * i as u64,
            &pattern(20 + i as u64, len),
        );
    }
}

/// Many commands in flight at once from many "kernel" threads.
fn many_in_flight(k: TargetKind) {
    let rig = Arc::new(Rig::new(k, &[]));
    rig.reload(&rig.disk_block("disk", ""));
    let disk = rig
        .wait_disks(disk_count(k))
        .into_iter()
        .find(|d| d.lun == 1)
        .expect("LUN 1");
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (rig, stop, peak) = (rig.clone(), stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rig.emu.stats().in_flight, Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let workers: Vec<_> = (0..16u64)
        .map(|t| {
            let (rig, disk) = (rig.clone(), disk.clone());
            std::thread::spawn(move || {
                for j in 0..40u64 {
                    let len = 4096 * (1 + (t + j) as usize % 16);
                    let lba = t * 4096 + j * 64;
                    let data = pattern(t * 1000 + j, len);
                    rig.emu.write(&disk, lba, &data).expect("write");
                    let back = rig.emu.read(&disk, lba, (len / 512) as u32).expect("read");
                    assert!(back == data, "thread {t} op {j}: data differs");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    stop.store(true, Ordering::Relaxed);
    sampler.join().expect("sampler");
    let peak = peak.load(Ordering::Relaxed);
    assert!(peak >= 4, "at most {peak} commands were ever in flight");
    // And what the threads wrote is what the target holds.
    for t in 0..16u64 {
        let j = 39;
        let len = 4096 * (1 + (t + j) as usize % 16);
        let lba = t * 4096 + j * 64;
        assert!(rig.backing(disk.lun, lba * 512, len) == pattern(t * 1000 + j, len));
    }
}

/// A read past the end comes back as CHECK CONDITION with the target's
/// sense data intact: ILLEGAL REQUEST, LBA OUT OF RANGE.
fn sense_past_end(k: TargetKind) {
    let rig = Rig::new(k, &[]);
    rig.reload(&rig.disk_block("disk", ""));
    let d = rig.wait_disks(disk_count(k))[0].clone();
    let lba = (d.blocks as u32).to_be_bytes();
    let cdb = [0x28, 0, lba[0], lba[1], lba[2], lba[3], 0, 0, 8, 0];
    let r = rig
        .emu
        .command(
            d.target,
            d.lun,
            &cdb,
            Dir::Read,
            4096,
            &[],
            Duration::from_secs(10),
        )
        .expect("command");
    if k == TargetKind::Istgt {
        // istgt answers CHECK CONDITION with no sense data at all; without
        // sense the command can only fail (a retry would loop).
        assert_eq!(r.status, regress::emulator::Status::Err, "{r:?}");
        return roundtrip(&rig, &d, 0, &pattern(30, 4096));
    }
    assert_eq!(r.status, regress::emulator::Status::Sense, "{r:?}");
    assert_eq!(r.sense[0] & 0x7f, 0x70, "fixed format: {:02x?}", r.sense);
    assert_eq!(r.sense[2] & 0x0f, 0x05, "ILLEGAL REQUEST: {:02x?}", r.sense);
    assert_eq!(r.sense[12], 0x21, "LBA OUT OF RANGE: {:02x?}", r.sense);
    // The disk still works afterwards.
    roundtrip(&rig, &d, 0, &pattern(30, 4096));
}

/// `iscsictl show vscsi stats` counts what really went through.
fn vscsi_stats(k: TargetKind) {
    let rig = Rig::new(k, &[]);
    rig.reload(&rig.disk_block("disk", ""));
    let d = rig.wait_disks(disk_count(k))[0].clone();
    for i in 0..10 {
        rig.emu.write(&d, i * 8, &pattern(i, 4096)).expect("write");
        rig.emu.read(&d, i * 8, 8).expect("read");
    }
    let out = rig.ctl.ok(&["show", "vscsi", "stats"]);
    let num = |prefix: &str| -> u64 {
        out.lines()
            .find_map(|l| {
                l.split_once(prefix)
                    .map(|(n, _)| n.trim().parse::<u64>().expect("number"))
            })
            .unwrap_or_else(|| panic!("{prefix} not in {out}"))
    };
    let emu = rig.emu.stats();
    assert_eq!(num(" I2T calls"), emu.commands, "{out}");
    assert_eq!(num(" T2I calls"), emu.completed, "{out}");
    assert!(num(" data writes") >= 10, "{out}");
    assert!(num(" probe calls") >= 1, "{out}");
    assert!(
        out.contains("40K bytes written") || out.contains("bytes written"),
        "{out}"
    );
}

macro_rules! both {
    ($($name:ident => $body:expr;)*) => {
        mod tgt { use super::*; $( #[test] fn $name() { $body(TargetKind::Tgt) } )* }
        mod istgt { use super::*; $( #[test] fn $name() { $body(TargetKind::Istgt) } )* }
    };
}

both! {
    random_data_matches_backing_file => random_data;
    large_transfers_cross_bursts => large;
    many_commands_in_flight => many_in_flight;
    read_past_end_returns_sense => sense_past_end;
    vscsi_stats_count_real_io => vscsi_stats;
}

/// Removing a target from the config detaches its disks and keeps the
/// others working; `disabled` detaches too.
#[test]
fn reload_removes_and_disables() {
    let rig = Rig::new(TargetKind::Tgt, &[]);
    let auth = format!(
        "target auth {{\n\ttargetaddr 127.0.0.1 port {}\n\ttargetname \"{IQN_AUTH}\"\n\tchap name {CHAP_USER} secret \"{CHAP_SECRET}\"\n}}\n",
        rig.target.port
    );
    rig.reload(&format!("{}{auth}", rig.disk_block("disk", "")));
    let disks = rig.wait_disks(3);
    let auth_target = disks
        .iter()
        .find(|d| d.blocks == 32768 && d.lun == 1 && d.target != disks[0].target);
    assert!(auth_target.is_some() || disks.len() == 3, "{disks:?}");
    rig.reload(&rig.disk_block("disk", ""));
    let left = rig
        .emu
        .wait_disks(|d| d.len() == 2, Duration::from_secs(15))
        .expect("auth disk detached");
    assert!(left.iter().all(|d| d.target == left[0].target), "{left:?}");
    roundtrip(&rig, &left[0], 10, &pattern(40, 8192));
    let show = rig.ctl.ok(&["show", "summary"]);
    assert!(!show.contains("auth"), "{show}");
    // Disabled: logged out, disks gone, still listed.
    rig.reload(&rig.disk_block("disk", "\tdisabled\n"));
    rig.emu
        .wait_disks(|d| d.is_empty(), Duration::from_secs(15))
        .expect("disks detached");
    rig.wait_show("disk", "disabled", Duration::from_secs(5));
    // And back.
    rig.reload(&rig.disk_block("disk", ""));
    let back = rig.wait_disks(2);
    roundtrip(&rig, &back[0], 10, &pattern(41, 8192));
}

/// A LUN added on the target raises REPORTED LUNS DATA HAS CHANGED; iscsid
/// asks the kernel to probe and the new disk attaches.
#[test]
fn new_lun_is_probed_after_unit_attention() {
    let mut rig = Rig::new(TargetKind::Tgt, &[]);
    rig.reload(&rig.disk_block("disk", ""));
    let d = rig.wait_disks(2)[0].clone();
    rig.target.add_lun(3, 8);
    // The unit attention comes with the next command to the target.
    let _ = rig.emu.read(&d, 0, 1);
    let disks = rig
        .emu
        .wait_disks(|v| v.iter().any(|x| x.lun == 3), Duration::from_secs(15))
        .unwrap_or_else(|e: EmuError| {
            panic!("LUN 3 never attached: {e:?}\n{}", rig.daemon.log_text())
        });
    let new = disks.iter().find(|x| x.lun == 3).expect("lun 3").clone();
    assert_eq!(new.blocks, 8 << 11);
    rig.emu
        .write(&new, 5, &pattern(50, 4096))
        .expect("write new lun");
    assert_eq!(
        rig.emu.read(&new, 5, 8).expect("read new lun"),
        pattern(50, 4096)
    );
}

/// Reads and writes on `disks` from one thread each until the disk goes
/// (or the device closes); returns how many commands completed.
fn busy_io(
    rig: &Arc<Rig>,
    disks: Vec<regress::emulator::DiskInfo>,
) -> Vec<std::thread::JoinHandle<u64>> {
    disks
        .into_iter()
        .enumerate()
        .map(|(n, d)| {
            let rig = Arc::clone(rig);
            std::thread::spawn(move || {
                let mut done = 0u64;
                for i in 0u64.. {
                    let lba = (i * 8) % (d.blocks - 8);
                    let r = if i % 2 == 0 {
                        rig.emu.write(&d, lba, &pattern(n as u64 * 1000 + i, 4096))
                    } else {
                        rig.emu.read(&d, lba, 8).map(|_| ())
                    };
                    match r {
                        Ok(()) => done += 1,
                        Err(EmuError::NoSuchDisk | EmuError::NotConnected) => break,
                        // Failed with the session going: sd sees an error.
                        Err(_) => {}
                    }
                }
                done
            })
        })
        .collect()
}

fn no_busy_detach(rig: &Rig, when: &str) {
    let v = rig.emu.detach_violations();
    assert!(
        v.is_empty(),
        "{when}: REQDETACH with commands outstanding: {v:?}\n{}",
        rig.daemon.log_text()
    );
}

/// How a busy LUN leaves.
#[derive(Clone, Copy, Debug)]
enum Leave {
    /// Its target block is removed from the config.
    Removed,
    /// Its target block becomes `disabled`.
    Disabled,
    /// iscsid gets SIGTERM (logs out, closes the device).
    Shutdown,
}

/// The daemon must never ask the kernel to detach a LUN while it holds
/// commands of it: scsi_link_shutdown would sleep on them (and, the link
/// not dying, on after they end), holding up every later probe and detach
/// on systq. I/O runs on every disk while they leave.
fn detach_only_idle_luns(how: Leave) {
    let rig = Arc::new(Rig::new(TargetKind::Tgt, &[]));
    rig.reload(&rig.disk_block("disk", ""));
    let io = busy_io(&rig, rig.wait_disks(2));
    // Some I/O through before the LUNs go.
    let base = rig.emu.stats().completed;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while rig.emu.stats().completed < base + 100 {
        assert!(std::time::Instant::now() < deadline, "no I/O went through");
        std::thread::sleep(Duration::from_millis(5));
    }
    match how {
        Leave::Removed => {
            rig.reload("");
        }
        Leave::Disabled => {
            rig.reload(&rig.disk_block("disk", "\tdisabled\n"));
        }
        Leave::Shutdown => {
            let pid = nix::unistd::Pid::from_raw(rig.daemon.pid() as i32);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        }
    }
    rig.emu
        .wait_disks(|d| d.is_empty(), Duration::from_secs(20))
        .expect("disks detached");
    for h in io {
        h.join().expect("io thread");
    }
    no_busy_detach(&rig, &format!("{how:?}"));
}

#[test]
fn detach_only_idle_luns_when_removed() {
    detach_only_idle_luns(Leave::Removed);
}

#[test]
fn detach_only_idle_luns_when_disabled() {
    detach_only_idle_luns(Leave::Disabled);
}

#[test]
fn detach_only_idle_luns_on_shutdown() {
    detach_only_idle_luns(Leave::Shutdown);
}
