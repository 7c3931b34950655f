//! Real programs judge the iSCSI disks: fio with checksummed data, and
//! ext4 (mkfs, the kernel's loop driver and file system, e2fsck,
//! sha256sum) on the disk files that `fusedisk` exposes, against tgtd and
//! istgt, including a target restart in the middle of the writes. Every
//! byte goes FUSE -> emulator (sd) -> relay -> engine -> target, and what
//! the programs check through iSCSI is checked again on the target's own
//! backing file.
// FUSE and loop devices as used here are Linux's.
#![cfg(target_os = "linux")]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use regress::emulator::Emulator;
use regress::fusedisk::{disk_conf, e2fsck, mkfs_ext4, run, FsMount, FuseRig, LoopDev};
use regress::harness::{pattern, wait_for, Target, TargetKind};
use sha2::{Digest, Sha256};

/// The LUN the workloads use: the 64 MiB one on both targets.
const LUN: u32 = 1;

/// fio's queue depth: as many as vscsi's openings per LUN.
const FIO_IODEPTH: u32 = 16;
/// Requests fio must have had in FUSE at once (counted exactly there; the
/// emulator's in-flight count is only sampled, so more than one will do).
const MIN_CONCURRENT: u64 = FIO_IODEPTH as u64 / 2;
/// Block sizes from 4 KiB to 1 MiB, in the proportions fio mixes them.
const FIO_BSSPLIT: &str = "4k/40:16k/20:64k/20:256k/15:1m/5";
/// Share of reads in the random mix.
const FIO_READ_PERCENT: u32 = 40;
/// Bytes fio moves in the main pass (the whole disk once, in random order).
const FIO_SIZE: &str = "64M";
/// fio's random seed in the CI tests; the soak runs others.
const FIO_SEED: u64 = 20261201;
/// Rounds of every workload on both targets in the soak.
const SOAK_ROUNDS: u64 = 10;
/// The stretch of the backing file zeroed to show that fio's replay
/// checks it: 8 MiB in the middle, which the job's writes cover.
const CORRUPT_AT: u64 = 20 << 20;
const CORRUPT_LEN: usize = 8 << 20;

/// The tree written on ext4: many small files, a few large ones.
const SMALL_FILES: usize = 3000;
const FILES_PER_DIR: usize = 100;
const SMALL_MAX: usize = 6 * 1024;
const BIG_FILES: usize = 3;
const BIG_SIZE: usize = 8 << 20;
/// Small files between two syncfs while writing, so the writes reach the
/// disk all along (and the target restart finds them in flight).
const SYNC_EVERY: usize = 250;

/// How long the target stays down in the restart test.
const TARGET_DOWN: Duration = Duration::from_secs(2);
/// Limit for the writer to get half way before the restart.
const WRITER_LIMIT: Duration = Duration::from_secs(120);

fn start(kind: TargetKind) -> (Target, FuseRig) {
    let target = Target::start(kind);
    let rig = FuseRig::start(&disk_conf(&target), target.disk_luns().len())
        .unwrap_or_else(|e| panic!("{e}"));
    (target, rig)
}

/// Samples the commands the emulator has in flight until dropped; the most
/// it saw shows whether concurrency from the program reached iSCSI.
struct InFlightSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InFlightSampler {
    const PERIOD: Duration = Duration::from_millis(1);

    fn start(emu: Arc<Emulator>) -> InFlightSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (s, p) = (Arc::clone(&stop), Arc::clone(&peak));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Acquire) {
                p.fetch_max(emu.stats().in_flight, Ordering::Relaxed);
                std::thread::sleep(Self::PERIOD);
            }
        });
        InFlightSampler {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.halt();
        self.peak.load(Ordering::Relaxed)
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for InFlightSampler {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The fio job, as command-line options, on `file`.
fn fio_job(file: &Path, seed: u64) -> Vec<String> {
    let mut v: Vec<String> = [
        "--name=mix",
        "--rw=randrw",
        "--bssplit",
        FIO_BSSPLIT,
        "--size",
        FIO_SIZE,
        "--verify=crc32c",
        "--verify_fatal=1",
        // The same offsets, sizes and data every run, so that the pass
        // over the target's backing file can check what this one wrote.
        "--randrepeat=1",
        // No verify state files left in the working directory on failure.
        "--verify_state_save=0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(format!("--randseed={seed}"));
    v.push(format!("--rwmixread={FIO_READ_PERCENT}"));
    v.push(format!("--filename={}", file.display()));
    v
}

fn fio(args: &[String]) -> String {
    let o = Command::new("fio")
        .args(args)
        .output()
        .expect("run fio (regress/setup.sh installs it)");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "fio {args:?} failed:\n{out}");
    for bad in ["verify failed", "bad magic", "bad header", "bad hdr"] {
        assert!(!out.contains(bad), "fio reported {bad:?}:\n{out}");
    }
    assert!(out.contains("err= 0"), "fio reported an error:\n{out}");
    out
}

fn fio_verify(kind: TargetKind, seed: u64) {
    let (target, rig) = start(kind);
    let file = rig.file(LUN);
    let sampler = InFlightSampler::start(Arc::clone(&rig.emu));
    let mut args = fio_job(&file, seed);
    // io_uring on a FOPEN_DIRECT_IO file: the queue depth becomes that
    // many FUSE requests (async direct I/O) on FUSE_THREADS threads.
    args.extend([
        "--ioengine=io_uring".to_string(),
        "--direct=1".to_string(),
        format!("--iodepth={FIO_IODEPTH}"),
    ]);
    let before = rig.emu.stats();
    let out = fio(&args);
    let peak = sampler.finish();
    let after = rig.emu.stats();
    let fs = rig.fuse.stats();
    eprintln!("fio through FUSE ({kind:?}): {fs:?}, emulator peak in flight {peak}\n{out}");
    assert!(
        after.bytes_written - before.bytes_written >= 16 << 20,
        "fio's writes did not reach the emulator: {before:?} -> {after:?}"
    );
    assert_eq!(
        fs.errors,
        0,
        "errors from the emulator: {fs:?}\n{:#?}",
        rig.fuse.error_log()
    );
    assert!(
        fs.peak_concurrent >= MIN_CONCURRENT && peak > 1,
        "no concurrency reached the emulator (FUSE peak {}, emulator peak {peak})",
        fs.peak_concurrent
    );
    // The target's own file holds what fio wrote: fio checks it again,
    // replaying the same job without writing.
    let mut again = fio_job(&target.disk_file(LUN), seed);
    again.extend(["--verify_only".to_string(), "--ioengine=psync".to_string()]);
    fio(&again);
    // And the whole disk read through iSCSI is the target's file.
    assert!(
        read_all(&file) == read_all(&target.disk_file(LUN)),
        "disk file read through iSCSI differs from the target's backing file"
    );
    // The replay does check: with a stretch of the target's file zeroed it
    // must fail.
    let f = fs::OpenOptions::new()
        .write(true)
        .open(target.disk_file(LUN))
        .expect("backing file");
    std::os::unix::fs::FileExt::write_all_at(&f, &vec![0u8; CORRUPT_LEN], CORRUPT_AT)
        .expect("corrupt backing file");
    let o = Command::new("fio").args(&again).output().expect("fio");
    assert!(
        !o.status.success(),
        "fio --verify_only passed over a zeroed stretch:\n{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

fn read_all(p: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    fs::File::open(p)
        .and_then(|mut f| f.read_to_end(&mut v))
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    v
}

/// The files of the tree: relative path and contents' seed and size.
fn tree() -> Vec<(String, u64, usize)> {
    let mut v = Vec::with_capacity(SMALL_FILES + BIG_FILES);
    for i in 0..SMALL_FILES {
        let seed = i as u64 + 1;
        // 1 byte to SMALL_MAX: most not a multiple of a block.
        let size = 1 + (pattern(seed, 8)[0] as usize * 257 + i * 31) % SMALL_MAX;
        v.push((format!("d{:02}/f{i:04}", i / FILES_PER_DIR), seed, size));
    }
    for i in 0..BIG_FILES {
        v.push((format!("big{i}"), 1_000_000 + i as u64, BIG_SIZE));
    }
    v
}

/// The writer's progress, shared with the thread that restarts the target.
#[derive(Default)]
struct Progress {
    /// Files written so far.
    done: AtomicUsize,
    /// The writer reached its pause and waits to be told to go on.
    paused: AtomicBool,
    /// When each syncfs started.
    syncs: std::sync::Mutex<Vec<Instant>>,
}

/// Writes the tree under `root`, syncing the file system every
/// `SYNC_EVERY` files. After `pause_at` files it waits for `resume` to
/// hold before going on. Returns the manifest for `sha256sum -c`.
fn write_tree(
    root: &Path,
    p: &Progress,
    pause_at: Option<usize>,
    resume: impl Fn() -> bool,
) -> String {
    let mut manifest = String::new();
    let mut dirs = BTreeMap::new();
    for (i, (rel, seed, size)) in tree().into_iter().enumerate() {
        if pause_at == Some(i) {
            p.paused.store(true, Ordering::Release);
            let ok = wait_for(WRITER_LIMIT, || resume().then_some(()));
            assert!(ok.is_some(), "writer was never told to go on");
        }
        let path = root.join(&rel);
        let dir = path.parent().expect("parent").to_path_buf();
        dirs.entry(dir.clone()).or_insert_with(|| {
            fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()))
        });
        let data = pattern(seed, size);
        fs::write(&path, &data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        writeln!(manifest, "{:x}  {rel}", Sha256::digest(&data)).expect("manifest");
        p.done.store(i + 1, Ordering::Release);
        if (i + 1) % SYNC_EVERY == 0 {
            p.syncs.lock().expect("syncs").push(Instant::now());
            syncfs(root);
        }
    }
    manifest
}

/// `sync -f`: the file system's dirty data to the disk, and a cache flush.
fn syncfs(dir: &Path) {
    run(Command::new("sync").arg("-f").arg(dir)).unwrap_or_else(|e| panic!("{e}"));
}

fn fsck_clean(what: &str, p: &Path) {
    if let Err(e) = e2fsck(p) {
        panic!("e2fsck -fn of {what} {}: {e}", p.display());
    }
}

/// mkfs, the tree written (with the target restarted half way if
/// `restart`), checked by e2fsck, sha256sum, and again on the target's
/// backing file.
fn fs_roundtrip(kind: TargetKind, restart: bool) {
    let (mut target, rig) = start(kind);
    let file = rig.file(LUN);
    let mnt = rig.scratch("mnt");
    mkfs_ext4(&file).unwrap_or_else(|e| panic!("{e}"));
    fsck_clean("the fresh file system", &file);
    let manifest_path: PathBuf = rig.scratch("check").join("SHA256SUMS");
    {
        let lo = LoopDev::attach(&file, true).unwrap_or_else(|e| panic!("{e}"));
        let m = FsMount::mount(&lo.dev, &mnt, "ext4").unwrap_or_else(|e| panic!("{e}"));
        let progress = Progress::default();
        let started = Instant::now();
        let half = SMALL_FILES / 2;
        let port = target.port;
        // With a restart, the writer stops half way until the target is
        // down, so that the second half (and its syncs) meets the outage.
        let target_down = || std::net::TcpStream::connect(("127.0.0.1", port)).is_err();
        let manifest = std::thread::scope(|s| {
            let w = s.spawn(|| {
                let pause = restart.then_some(half);
                write_tree(&mnt, &progress, pause, target_down)
            });
            if restart {
                let got = wait_for(WRITER_LIMIT, || {
                    (progress.paused.load(Ordering::Acquire) || w.is_finished()).then_some(())
                });
                assert!(
                    progress.paused.load(Ordering::Acquire),
                    "writer not half way in {WRITER_LIMIT:?} ({got:?})"
                );
                let down_at = Instant::now();
                target.restart(TARGET_DOWN);
                let up_at = Instant::now();
                let m = w.join().expect("writer");
                // A sync started while the target was away and completed
                // after it came back: the writes were held, not failed.
                let held = progress
                    .syncs
                    .lock()
                    .expect("syncs")
                    .iter()
                    .any(|&t| t > down_at && t < up_at);
                assert!(held, "no sync was issued while the target was down");
                m
            } else {
                w.join().expect("writer")
            }
        });
        // What sync acknowledges must be on the target from here on.
        syncfs(&mnt);
        eprintln!(
            "wrote {} files in {:?}: {:?}",
            progress.done.load(Ordering::Acquire),
            started.elapsed(),
            rig.fuse.stats()
        );
        fs::write(&manifest_path, manifest).expect("manifest");
        m.unmount().unwrap_or_else(|e| panic!("{e}"));
    }
    if restart {
        let s = rig.ctl.ok(&["show", "session", "disk"]);
        assert!(
            !s.contains("; 1 logins"),
            "the restart did not make a second login:\n{s}"
        );
    }
    fsck_clean("the disk file (through iSCSI)", &file);
    fsck_clean("the target's backing file", &target.disk_file(LUN));
    {
        let lo = LoopDev::attach(&file, true).unwrap_or_else(|e| panic!("{e}"));
        let m = FsMount::mount(&lo.dev, &mnt, "ext4").unwrap_or_else(|e| panic!("{e}"));
        run(Command::new("sha256sum")
            .args(["--check", "--quiet", "--strict"])
            .arg(&manifest_path)
            .current_dir(&mnt))
        .unwrap_or_else(|e| panic!("files differ after remounting: {e}"));
        m.unmount().unwrap_or_else(|e| panic!("{e}"));
    }
    fsck_clean("the disk file after the check", &file);
    assert!(
        read_all(&file) == read_all(&target.disk_file(LUN)),
        "disk file read through iSCSI differs from the target's backing file"
    );
    assert_eq!(
        rig.fuse.stats().errors,
        0,
        "{:?}\n{:#?}",
        rig.fuse.stats(),
        rig.fuse.error_log()
    );
}

#[test]
fn tgt_fio_verify() {
    fio_verify(TargetKind::Tgt, FIO_SEED);
}

#[test]
fn istgt_fio_verify() {
    fio_verify(TargetKind::Istgt, FIO_SEED);
}

#[test]
fn tgt_ext4_roundtrip() {
    fs_roundtrip(TargetKind::Tgt, false);
}

#[test]
fn istgt_ext4_roundtrip() {
    fs_roundtrip(TargetKind::Istgt, false);
}

#[test]
fn tgt_ext4_across_target_restart() {
    fs_roundtrip(TargetKind::Tgt, true);
}

#[test]
fn istgt_ext4_across_target_restart() {
    fs_roundtrip(TargetKind::Istgt, true);
}

/// The workloads again and again with other fio seeds, on both targets:
/// minutes, so not in CI (`cargo test -p regress --test workloads -- --ignored`).
#[test]
#[ignore]
fn soak() {
    for round in 1..=SOAK_ROUNDS {
        for kind in [TargetKind::Tgt, TargetKind::Istgt] {
            eprintln!("soak round {round}/{SOAK_ROUNDS}, {kind:?}");
            fio_verify(kind, FIO_SEED + round);
            fs_roundtrip(kind, false);
            fs_roundtrip(kind, true);
        }
    }
}
