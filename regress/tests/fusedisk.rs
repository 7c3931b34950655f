//! The FUSE disk files themselves (regress/src/fusedisk), through the
//! kernel against tgtd: one file per disk with its capacity, unaligned
//! writes from many threads that share blocks all survive (the
//! read-modify-write claims), fsync and the close of a written file are
//! SYNCHRONIZE CACHE, and the ends of the disk behave like a block device.
// FUSE and loop devices as used here are Linux's.
#![cfg(target_os = "linux")]

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::FileExt;

use regress::fusedisk::{disk_conf, file_name, FuseRig};
use regress::harness::{pattern, Target, TargetKind};

/// Threads writing interleaved slices, and slices each.
const THREADS: usize = 8;
const SLICES: usize = 64;
/// Not a divisor of the block size: every slice shares blocks with its
/// neighbours, which belong to other threads.
const SLICE: usize = 300;
/// Where on the disk the interleaved slices start (unaligned too).
const BASE: u64 = 1_000_003;

fn start() -> (Target, FuseRig) {
    let target = Target::start(TargetKind::Tgt);
    let rig = FuseRig::start(&disk_conf(&target), target.disk_luns().len())
        .unwrap_or_else(|e| panic!("{e}"));
    (target, rig)
}

/// Bytes at `off` in the target's backing file of LUN `lun`.
fn backing(target: &Target, lun: u32, off: u64, len: usize) -> Vec<u8> {
    let f = std::fs::File::open(target.disk_file(lun)).expect("backing file");
    let mut v = vec![0u8; len];
    f.read_exact_at(&mut v, off).expect("read backing file");
    v
}

#[test]
fn one_file_per_disk_with_its_capacity() {
    let (_target, rig) = start();
    let mut listed = BTreeMap::new();
    for e in std::fs::read_dir(rig.fuse.dir()).expect("readdir") {
        let e = e.expect("entry");
        let m = e.metadata().expect("stat");
        assert!(m.is_file(), "{:?} is not a file", e.path());
        listed.insert(e.file_name().into_string().expect("name"), m.len());
    }
    let want: BTreeMap<String, u64> = rig
        .emu
        .disks()
        .iter()
        .map(|d| (file_name(d), d.blocks * u64::from(d.block_size)))
        .collect();
    assert_eq!(listed, want);
    assert!(
        std::fs::metadata(rig.fuse.dir().join("t9l9")).is_err(),
        "a disk that is not attached has a file"
    );
}

#[test]
fn unaligned_writes_sharing_blocks_all_survive() {
    let (target, rig) = start();
    let file = rig.file(1);
    let before = rig.fuse.stats();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let file = &file;
            s.spawn(move || {
                let f = OpenOptions::new().write(true).open(file).expect("open");
                for k in 0..SLICES {
                    let i = k * THREADS + t;
                    let off = BASE + (i * SLICE) as u64;
                    f.write_all_at(&pattern(i as u64, SLICE), off)
                        .unwrap_or_else(|e| panic!("write at {off}: {e}"));
                }
            });
        }
    });
    let want: Vec<u8> = (0..THREADS * SLICES)
        .flat_map(|i| pattern(i as u64, SLICE))
        .collect();
    let f = OpenOptions::new().read(true).open(&file).expect("open");
    let mut back = vec![0u8; want.len()];
    f.read_exact_at(&mut back, BASE).expect("read back");
    assert!(back == want, "a slice was lost (read back through iSCSI)");
    assert!(
        backing(&target, 1, BASE, want.len()) == want,
        "a slice was lost (target's backing file)"
    );
    let after = rig.fuse.stats();
    assert!(
        after.rmw - before.rmw >= (THREADS * SLICES) as u64,
        "unaligned writes did not go through read-modify-write: {after:?}"
    );
    assert_eq!(after.errors, 0, "{:#?}", rig.fuse.error_log());
}

#[test]
fn fsync_and_closing_a_written_disk_synchronize_the_cache() {
    let (_target, rig) = start();
    let file = rig.file(1);
    let syncs = || rig.fuse.stats().syncs;
    let s0 = syncs();
    {
        let mut f = OpenOptions::new().write(true).open(&file).expect("open");
        f.write_all(&pattern(7, 4096)).expect("write");
        f.sync_all().expect("fsync");
        assert_eq!(syncs(), s0 + 1, "fsync sent no SYNCHRONIZE CACHE");
    }
    // Nothing written since the fsync: the close has nothing to sync.
    assert_eq!(syncs(), s0 + 1, "close after fsync synced again");
    {
        let mut f = OpenOptions::new().write(true).open(&file).expect("open");
        f.write_all(&pattern(8, 4096)).expect("write");
    }
    assert_eq!(syncs(), s0 + 2, "close of a written disk did not sync");
    {
        let _f = OpenOptions::new().read(true).open(&file).expect("open");
    }
    assert_eq!(syncs(), s0 + 2, "close of a clean disk synced");
}

#[test]
fn the_ends_of_the_disk_are_a_block_device_s() {
    let (_target, rig) = start();
    let file = rig.file(2);
    let d = rig.disk(2);
    let size = d.blocks * u64::from(d.block_size);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&file)
        .expect("open");
    // A read that runs over the end is short; one at the end is EOF.
    let mut buf = vec![0u8; 4096];
    assert_eq!(f.read_at(&mut buf, size - 100).expect("read"), 100);
    assert_eq!(f.read_at(&mut buf, size).expect("read at end"), 0);
    // A write that runs over the end is short; one at the end has no room.
    assert_eq!(
        f.write_at(&pattern(3, 4096), size - 1000).expect("write"),
        1000
    );
    let e = f.write_at(&[1], size).expect_err("write at the end");
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
    // The last 1000 bytes are what was written, through iSCSI.
    let mut tail = vec![0u8; 1000];
    f.read_exact_at(&mut tail, size - 1000).expect("read tail");
    assert_eq!(tail, pattern(3, 4096)[..1000]);
    // A disk's size is its capacity.
    let e = f.set_len(size / 2).expect_err("truncate");
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    f.set_len(size).expect("set_len to its own size");
}
