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

/// xorshift64: cheap per-thread random LBAs.
pub fn next_rand(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Spreads a counter over 64 bits: random LBAs without shared state.
pub fn splitmix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The asynchronous load: `qd` commands kept in flight, each completion
/// (on the emulator's reader thread) starting the next.
pub struct Load {
    sub: Submitter,
    disk: DiskInfo,
    case: Case,
    blocks: u32,
    slots: u64,
    next: AtomicU64,
    ops: AtomicU64,
    stop: AtomicBool,
    in_flight: AtomicUsize,
    failure: Mutex<Option<EmuError>>,
    wbuf: Arc<[u8]>,
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

    /// Starts one command; it owns one of the `in_flight` counts.
    fn issue(self: &Arc<Self>) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let slot = if self.case.random { splitmix(n) } else { n } % self.slots;
        let out = self.case.write.then(|| Arc::clone(&self.wbuf));
        let me = Arc::clone(self);
        let r = self.sub.submit(
            &self.disk,
            slot * u64::from(self.blocks),
            self.blocks,
            out,
            move |r| me.completed(r),
        );
        if let Err(e) = r {
            self.fail(e);
        }
    }

    fn completed(self: &Arc<Self>, r: Result<CmdResult, EmuError>) {
        match r {
            Err(e) => self.fail(e),
            Ok(_) => {
                self.ops.fetch_add(1, Ordering::Relaxed);
                if self.stop.load(Ordering::Relaxed) {
                    self.in_flight.fetch_sub(1, Ordering::AcqRel);
                } else {
                    self.issue();
                }
            }
        }
    }
}

/// Runs `case` with `qd` commands in flight from one submitter; measures
/// `secs` after `warmup`.
pub fn run_ours_async(
    emu: &Emulator,
    disk: &DiskInfo,
    case: Case,
    secs: u64,
    warmup: Duration,
    pids: &Pids,
) -> Result<Run, BenchError> {
    let bs = disk.block_size.max(1);
    let blocks = (case.bytes / bs).max(1);
    let load = Arc::new(Load {
        sub: emu.submitter(),
        disk: disk.clone(),
        case,
        blocks,
        slots: (disk.blocks / u64::from(blocks)).max(1),
        next: AtomicU64::new(0),
        ops: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        in_flight: AtomicUsize::new(case.qd),
        failure: Mutex::new(None),
        wbuf: Arc::from(regress::harness::pattern(7, (blocks * bs) as usize)),
    });
    for _ in 0..case.qd {
        load.issue();
    }
    thread::sleep(warmup);
    let a = (Snap::take(pids), load.ops.load(Ordering::Relaxed));
    thread::sleep(Duration::from_secs(secs));
    let b = (Snap::take(pids), load.ops.load(Ordering::Relaxed));
    load.stop.store(true, Ordering::Relaxed);
    // Let what is in flight finish before the next case starts.
    let end = Instant::now() + emu.config().io_timeout;
    while load.in_flight.load(Ordering::Acquire) > 0 && Instant::now() < end {
        thread::sleep(Duration::from_millis(1));
    }
    if let Some(e) = load
        .failure
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        return Err(BenchError::Emu("I/O", e));
    }
    if load.in_flight.load(Ordering::Acquire) > 0 {
        return Err(BenchError::Emu("draining", EmuError::Timeout));
    }
    let cpu = cpu_between(&a.0, &b.0);
    let iops = b.1.saturating_sub(a.1) as f64 / cpu.secs;
    Ok(Run {
        iops,
        mib_s: iops * f64::from(case.bytes) / f64::from(1u32 << 20),
        init_cpu: cpu.iscsid,
        cpu,
    })
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
    let bs = disk.block_size.max(1);
    let blocks = (case.bytes / bs).max(1);
    let slots = (disk.blocks / u64::from(blocks)).max(1);
    let ops = AtomicU64::new(0);
    let seq = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let failure: Mutex<Option<EmuError>> = Mutex::new(None);
    let wbuf = regress::harness::pattern(7, (blocks * bs) as usize);
    let (a, b) = thread::scope(|s| {
        for t in 0..case.qd {
            let (ops, seq, stop, failure, wbuf) = (&ops, &seq, &stop, &failure, &wbuf);
            s.spawn(move || {
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ ((t as u64 + 1) << 32);
                while !stop.load(Ordering::Relaxed) {
                    let slot = if case.random {
                        next_rand(&mut x) % slots
                    } else {
                        seq.fetch_add(1, Ordering::Relaxed) % slots
                    };
                    let lba = slot * u64::from(blocks);
                    let r = if case.write {
                        emu.write(disk, lba, wbuf)
                    } else {
                        emu.read(disk, lba, blocks).map(|_| ())
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
        thread::sleep(warmup);
        let a = (Snap::take(pids), ops.load(Ordering::Relaxed));
        thread::sleep(Duration::from_secs(secs));
        let b = (Snap::take(pids), ops.load(Ordering::Relaxed));
        stop.store(true, Ordering::Relaxed);
        (a, b)
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(BenchError::Emu("I/O", e));
    }
    let cpu = cpu_between(&a.0, &b.0);
    let iops = b.1.saturating_sub(a.1) as f64 / cpu.secs;
    Ok(Run {
        iops,
        mib_s: iops * f64::from(case.bytes) / f64::from(1u32 << 20),
        init_cpu: cpu.iscsid,
        cpu,
    })
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
