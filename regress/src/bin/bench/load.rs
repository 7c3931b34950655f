//! Our side of a measurement: I/O through the emulator, from one
//! asynchronous submitter or from a thread per outstanding command.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use regress::emulator::{CmdResult, DiskInfo, EmuError, Emulator, Submitter};

use crate::cpu::{cpu_between, Cpu, Pids, Snap};
use crate::{BenchError, Case};

#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub iops: f64,
    pub mib_s: f64,
    /// The initiator's CPU in % of a core: iscsid's processes, or iscsi-perf.
    pub init_cpu: f64,
    pub cpu: Cpu,
}

impl Run {
    /// Initiator CPU per I/O, in microseconds.
    pub fn us_per_io(&self) -> f64 {
        if self.iops > 0.0 {
            self.init_cpu / 100.0 / self.iops * 1e6
        } else {
            0.0
        }
    }
}

/// 2^64 / φ: splitmix64's increment, and what the threads' seeds start from.
const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// xorshift64: cheap per-thread random LBAs.
fn next_rand(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Spreads a counter over 64 bits: random LBAs without shared state.
fn splitmix(n: u64) -> u64 {
    let mut z = n.wrapping_add(GOLDEN_GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Seed of the write data pattern.
const WRITE_PATTERN_SEED: u64 = 7;
/// How often a drain looks at what is still in flight.
const DRAIN_POLL: Duration = Duration::from_millis(1);

/// One disk of a load, with its geometry for the case.
struct LoadDisk {
    info: DiskInfo,
    /// The case's transfer in this disk's blocks.
    blocks: u32,
    /// Transfers that fit the disk.
    slots: u64,
    /// What a write sends (`blocks` blocks); None for reads.
    wbuf: Option<Arc<[u8]>>,
}

impl LoadDisk {
    fn new(info: &DiskInfo, case: Case) -> LoadDisk {
        let bs = info.block_size.max(1);
        let blocks = (case.bytes / bs).max(1);
        LoadDisk {
            info: info.clone(),
            blocks,
            slots: (info.blocks / u64::from(blocks)).max(1),
            wbuf: case.write.then(|| {
                Arc::from(regress::harness::pattern(
                    WRITE_PATTERN_SEED,
                    (blocks * bs) as usize,
                ))
            }),
        }
    }
}

/// The asynchronous load: `case.qd` commands kept in flight on each of its
/// disks, each completion (on the emulator's reader thread) starting the
/// next on the same disk, so no disk ever has more than `case.qd` (which
/// must fit its openings). The LBAs come from one counter shared by all
/// disks: sequential on a single disk, spread at random with `case.random`.
struct Load {
    sub: Submitter,
    disks: Vec<LoadDisk>,
    case: Case,
    next: AtomicU64,
    ops: AtomicU64,
    stop: AtomicBool,
    in_flight: AtomicUsize,
    failure: Mutex<Option<EmuError>>,
}

impl Load {
    fn fail(&self, e: EmuError) {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(e);
        self.stop.store(true, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// Starts one command on disk `d`; it owns one of the `in_flight`
    /// counts.
    fn issue(self: &Arc<Self>, d: usize) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let disk = &self.disks[d];
        let slot = if self.case.random { splitmix(n) } else { n } % disk.slots;
        let me = Arc::clone(self);
        let r = self.sub.submit(
            &disk.info,
            slot * u64::from(disk.blocks),
            disk.blocks,
            disk.wbuf.clone(),
            move |r| me.completed(d, r),
        );
        if let Err(e) = r {
            self.fail(e);
        }
    }

    fn completed(self: &Arc<Self>, d: usize, r: Result<CmdResult, EmuError>) {
        match r {
            Err(e) => self.fail(e),
            Ok(_) => {
                self.ops.fetch_add(1, Ordering::Relaxed);
                if self.stop.load(Ordering::Relaxed) {
                    self.in_flight.fetch_sub(1, Ordering::AcqRel);
                } else {
                    self.issue(d);
                }
            }
        }
    }

    fn take_failure(&self) -> Option<EmuError> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

/// Sleeps through `warmup`, then counts `ops` and takes CPU over `secs`.
fn measure(ops: &AtomicU64, case: Case, secs: u64, warmup: Duration, pids: &Pids) -> Run {
    thread::sleep(warmup);
    let a = (Snap::take(pids), ops.load(Ordering::Relaxed));
    thread::sleep(Duration::from_secs(secs));
    let b = (Snap::take(pids), ops.load(Ordering::Relaxed));
    let cpu = cpu_between(&a.0, &b.0);
    let iops = b.1.saturating_sub(a.1) as f64 / cpu.secs;
    Run {
        iops,
        mib_s: iops * f64::from(case.bytes) / f64::from(1u32 << 20),
        init_cpu: cpu.iscsid,
        cpu,
    }
}

/// Runs `case` with `case.qd` commands in flight on each of `disks` from
/// one submitter; measures `secs` after `warmup`.
pub fn run_ours_async(
    emu: &Emulator,
    disks: &[DiskInfo],
    case: Case,
    secs: u64,
    warmup: Duration,
    pids: &Pids,
) -> Result<Run, BenchError> {
    let total = case.qd * disks.len();
    let load = Arc::new(Load {
        sub: emu.submitter(),
        disks: disks.iter().map(|d| LoadDisk::new(d, case)).collect(),
        case,
        next: AtomicU64::new(0),
        ops: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        in_flight: AtomicUsize::new(total),
        failure: Mutex::new(None),
    });
    // Round-robin, so that every disk is busy from the start.
    for i in 0..total {
        load.issue(i % disks.len());
    }
    let run = measure(&load.ops, case, secs, warmup, pids);
    load.stop.store(true, Ordering::Relaxed);
    // Let what is in flight finish before the next case starts.
    let end = Instant::now() + emu.config().io_timeout;
    while load.in_flight.load(Ordering::Acquire) > 0 && Instant::now() < end {
        thread::sleep(DRAIN_POLL);
    }
    if let Some(e) = load.take_failure() {
        return Err(BenchError::Emu("I/O", e));
    }
    if load.in_flight.load(Ordering::Acquire) > 0 {
        return Err(BenchError::Emu("draining", EmuError::Timeout));
    }
    Ok(run)
}

/// Runs `case` through the emulator with `qd` threads, each with one
/// command outstanding; measures `secs` after `warmup`.
pub fn run_ours(
    emu: &Emulator,
    disk: &DiskInfo,
    case: Case,
    secs: u64,
    warmup: Duration,
    pids: &Pids,
) -> Result<Run, BenchError> {
    let d = LoadDisk::new(disk, case);
    let ops = AtomicU64::new(0);
    let seq = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let failure: Mutex<Option<EmuError>> = Mutex::new(None);
    let run = thread::scope(|s| {
        for t in 0..case.qd {
            let (ops, seq, stop, failure, d) = (&ops, &seq, &stop, &failure, &d);
            s.spawn(move || {
                let mut x = GOLDEN_GAMMA ^ ((t as u64 + 1) << 32);
                while !stop.load(Ordering::Relaxed) {
                    let slot = if case.random {
                        next_rand(&mut x) % d.slots
                    } else {
                        seq.fetch_add(1, Ordering::Relaxed) % d.slots
                    };
                    let lba = slot * u64::from(d.blocks);
                    let r = match &d.wbuf {
                        Some(w) => emu.write(disk, lba, w),
                        None => emu.read(disk, lba, d.blocks).map(|_| ()),
                    };
                    if let Err(e) = r {
                        let mut f = failure.lock().unwrap_or_else(|e| e.into_inner());
                        f.get_or_insert(e);
                        stop.store(true, Ordering::Relaxed);
                        return;
                    }
                    ops.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let run = measure(&ops, case, secs, warmup, pids);
        stop.store(true, Ordering::Relaxed);
        run
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(BenchError::Emu("I/O", e));
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_per_io() {
        let r = Run {
            iops: 10_000.0,
            mib_s: 0.0,
            init_cpu: 50.0,
            cpu: Cpu::default(),
        };
        assert!((r.us_per_io() - 50.0).abs() < 1e-6);
    }
}
