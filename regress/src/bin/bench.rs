//! The benchmark: iscsid (release build) driven through the vscsi emulator,
//! against libiscsi's `iscsi-perf` on the same tgtd, A/B interleaved.
//!
//! For each target backend (tgt's bstype null shows initiator CPU
//! efficiency; a RAM file is the realistic run) it starts tgtd on loopback,
//! the emulator and iscsid, reloads a config, waits for the disk, and then
//! for each round and case runs our I/O through the emulator and, for reads,
//! `iscsi-perf` right after it. CPU is taken from /proc over the measured
//! window: iscsid's three processes, this process (the emulator standing in
//! for the kernel, plus the load generator), tgtd, and the whole machine.

use std::fmt::{self, Write as _};
use std::fs;
use std::io;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use regress::emulator::{DiskInfo, EmuError, Emulator, Submitter, VSCSI_OPENINGS};
use regress::harness::{bin, Backend, Daemon, Scratch, Target, TargetKind, IQN_DISK};

const USAGE: &str = "usage: bench [-n rounds] [-R ram-rounds] [-t secs] [-w warmup-ms] \
[-k null|ram|both] [-c cases] [-x] [-T] [-o file.md]
  -n  rounds against the null LUN (default 2); A/B interleaved per case
  -R  rounds against the RAM-file LUN (default 1)
  -t  seconds per measurement (default 5)
  -w  warm-up before our measurement window, in ms (default 500)
  -k  target backends (default both)
  -c  comma-separated case numbers 1-5 (default all)
  -x  skip iscsi-perf
  -T  one blocking thread per outstanding command instead of one thread
      submitting asynchronously (costs the emulator more CPU)
  -o  also write the results as markdown to this file";

/// The LUN every benchmark drives (tgt's LUN 0 is its controller).
const LUN: u32 = 1;

#[derive(Debug)]
enum BenchError {
    Usage(String),
    NotRoot,
    Io(&'static str, io::Error),
    Emu(&'static str, EmuError),
    NoDisk,
    Perf(String),
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Usage(m) => write!(f, "{m}\n{USAGE}"),
            BenchError::NotRoot => f.write_str("run as root (tgtd, iscsid's privilege separation)"),
            BenchError::Io(what, e) => write!(f, "{what}: {e}"),
            BenchError::Emu(what, e) => write!(f, "{what}: {e}"),
            BenchError::NoDisk => write!(f, "LUN {LUN} did not attach as a disk"),
            BenchError::Perf(m) => write!(f, "iscsi-perf: {m}"),
        }
    }
}

impl std::error::Error for BenchError {}

#[derive(Debug, Clone, Copy)]
struct Case {
    name: &'static str,
    qd: usize,
    bytes: u32,
    random: bool,
    write: bool,
}

const CASES: [Case; 5] = [
    Case {
        name: "4K rand read QD1",
        qd: 1,
        bytes: 4096,
        random: true,
        write: false,
    },
    Case {
        name: "4K rand read QD16",
        qd: VSCSI_OPENINGS,
        bytes: 4096,
        random: true,
        write: false,
    },
    Case {
        name: "64K seq read QD16",
        qd: VSCSI_OPENINGS,
        bytes: 65536,
        random: false,
        write: false,
    },
    Case {
        name: "4K rand write QD16",
        qd: VSCSI_OPENINGS,
        bytes: 4096,
        random: true,
        write: true,
    },
    Case {
        name: "64K seq write QD16",
        qd: VSCSI_OPENINGS,
        bytes: 65536,
        random: false,
        write: true,
    },
];

struct Opts {
    rounds: u32,
    ram_rounds: u32,
    secs: u64,
    warmup: Duration,
    backends: Vec<Backend>,
    cases: Vec<usize>,
    perf: bool,
    threads: bool,
    out: Option<PathBuf>,
}

fn parse_args(args: &[String]) -> Result<Opts, BenchError> {
    let mut o = Opts {
        rounds: 2,
        ram_rounds: 1,
        secs: 5,
        warmup: Duration::from_millis(500),
        backends: vec![Backend::Null, Backend::RamFile],
        cases: (0..CASES.len()).collect(),
        perf: true,
        threads: false,
        out: None,
    };
    let mut it = args.iter();
    let num = |v: Option<&String>, flag: &str| -> Result<u64, BenchError> {
        v.and_then(|s| s.parse().ok())
            .ok_or_else(|| BenchError::Usage(format!("{flag} needs a number")))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "-n" => o.rounds = num(it.next(), "-n")?.clamp(1, 100) as u32,
            "-R" => o.ram_rounds = num(it.next(), "-R")?.min(100) as u32,
            "-t" => o.secs = num(it.next(), "-t")?.clamp(1, 3600),
            "-w" => o.warmup = Duration::from_millis(num(it.next(), "-w")?.min(60_000)),
            "-x" => o.perf = false,
            "-T" => o.threads = true,
            "-o" => {
                let p = it
                    .next()
                    .ok_or_else(|| BenchError::Usage("-o needs a file".into()))?;
                o.out = Some(PathBuf::from(p));
            }
            "-k" => {
                o.backends = match it.next().map(String::as_str) {
                    Some("null") => vec![Backend::Null],
                    Some("ram") => vec![Backend::RamFile],
                    Some("both") => vec![Backend::Null, Backend::RamFile],
                    _ => return Err(BenchError::Usage("-k takes null, ram or both".into())),
                }
            }
            "-c" => {
                let list = it
                    .next()
                    .ok_or_else(|| BenchError::Usage("-c needs case numbers".into()))?;
                let mut cases = Vec::new();
                for s in list.split(',') {
                    match s.trim().parse::<usize>() {
                        Ok(n) if (1..=CASES.len()).contains(&n) => cases.push(n - 1),
                        _ => return Err(BenchError::Usage(format!("no case {s:?}"))),
                    }
                }
                o.cases = cases;
            }
            "-h" => return Err(BenchError::Usage(String::new())),
            other => return Err(BenchError::Usage(format!("unknown argument {other:?}"))),
        }
    }
    Ok(o)
}

// ---- CPU accounting from /proc ----

fn clock_ticks() -> f64 {
    // SAFETY: sysconf reads a constant and touches no memory of ours.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of every thread of `pid`, in ticks.
fn proc_ticks(pid: u32) -> u64 {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, rest)) = s.rsplit_once(')') else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // Fields 14 and 15 of stat(5); `rest` starts at field 3.
    get(11) + get(12)
}

/// (busy, steal, total) ticks of the whole machine.
fn system_ticks() -> (u64, u64, u64) {
    let s = fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = s.lines().next().unwrap_or("");
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let g = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    let busy = g(0) + g(1) + g(2) + g(5) + g(6);
    let total = busy + g(3) + g(4) + g(7);
    (busy, g(7), total)
}

/// Whose CPU we watch.
#[derive(Clone, Copy)]
struct Pids {
    parent: u32,
    relay: u32,
    engine: u32,
    tgtd: u32,
}

#[derive(Clone, Copy)]
struct Snap {
    at: Instant,
    parent: u64,
    relay: u64,
    engine: u64,
    tgtd: u64,
    me: u64,
    sys: (u64, u64, u64),
}

impl Snap {
    fn take(p: &Pids) -> Snap {
        Snap {
            at: Instant::now(),
            parent: proc_ticks(p.parent),
            relay: proc_ticks(p.relay),
            engine: proc_ticks(p.engine),
            tgtd: proc_ticks(p.tgtd),
            me: proc_ticks(std::process::id()),
            sys: system_ticks(),
        }
    }
}

/// CPU over a window, in % of one core (whole machine: % of all cores).
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    secs: f64,
    iscsid: f64,
    relay: f64,
    engine: f64,
    emu: f64,
    tgtd: f64,
    sys_busy: f64,
    steal: f64,
    /// CPU (% of one core) used by everything else on the machine: other
    /// tenants, the host, a compiler. High values mean a disturbed run.
    other: f64,
}

fn cpu_between(a: &Snap, b: &Snap) -> Cpu {
    let secs = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
    let hz = clock_ticks();
    let pct = |x: u64, y: u64| (y.saturating_sub(x)) as f64 / hz / secs * 100.0;
    let relay = pct(a.relay, b.relay);
    let engine = pct(a.engine, b.engine);
    let total = b.sys.2.saturating_sub(a.sys.2).max(1) as f64;
    let busy_cores = b.sys.0.saturating_sub(a.sys.0) as f64 / hz / secs * 100.0;
    let mut c = Cpu {
        secs,
        iscsid: pct(a.parent, b.parent) + relay + engine,
        relay,
        engine,
        emu: pct(a.me, b.me),
        tgtd: pct(a.tgtd, b.tgtd),
        sys_busy: b.sys.0.saturating_sub(a.sys.0) as f64 / total * 100.0,
        steal: b.sys.1.saturating_sub(a.sys.1) as f64 / total * 100.0,
        other: 0.0,
    };
    // Unclamped: iscsi-perf's share is taken off by its caller.
    c.other = busy_cores - c.iscsid - c.emu - c.tgtd;
    c
}

/// User + system CPU seconds of reaped children so far.
fn children_cpu() -> f64 {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct we pass and keeps no pointer.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, ru.as_mut_ptr()) };
    if rc != 0 {
        return 0.0;
    }
    // SAFETY: zero-initialised and then filled by a successful getrusage.
    let ru = unsafe { ru.assume_init() };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

// ---- one measurement ----

#[derive(Debug, Clone, Copy)]
struct Run {
    iops: f64,
    mib_s: f64,
    /// The initiator's CPU in % of a core: iscsid's processes, or iscsi-perf.
    init_cpu: f64,
    cpu: Cpu,
}

impl Run {
    /// Initiator CPU per I/O, in microseconds.
    fn us_per_io(&self) -> f64 {
        if self.iops > 0.0 {
            self.init_cpu / 100.0 / self.iops * 1e6
        } else {
            0.0
        }
    }
}

/// xorshift64: cheap per-thread random LBAs.
fn next_rand(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Spreads a counter over 64 bits: random LBAs without shared state.
fn splitmix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The asynchronous load: `qd` commands kept in flight, each completion
/// (on the emulator's reader thread) starting the next.
struct Load {
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

    fn completed(self: &Arc<Self>, r: Result<regress::emulator::CmdResult, EmuError>) {
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
fn run_ours_async(
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
fn run_ours(
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

/// The number after the last "iops average " in iscsi-perf's output.
fn parse_perf(out: &str) -> Option<f64> {
    let (_, tail) = out.rsplit_once("iops average ")?;
    let digits: String = tail.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn run_perf(port: u16, case: Case, secs: u64, pids: &Pids) -> Result<Run, BenchError> {
    let url = format!("iscsi://127.0.0.1:{port}/{IQN_DISK}/{LUN}");
    let blocks = (case.bytes / 512).to_string();
    let mut cmd = Command::new("iscsi-perf");
    cmd.args([
        "-m",
        &case.qd.to_string(),
        "-b",
        &blocks,
        "-t",
        &secs.to_string(),
    ]);
    if case.random {
        cmd.arg("-r");
    }
    cmd.arg(&url).stdin(Stdio::null()).stderr(Stdio::null());
    let cpu0 = children_cpu();
    let a = Snap::take(pids);
    let child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| BenchError::Io("spawn iscsi-perf (apt install libiscsi-bin)", e))?;
    let pid = child.id();
    // A wedged run must not hang the benchmark.
    let guard_done = AtomicBool::new(false);
    let out = thread::scope(|s| {
        s.spawn(|| {
            let end = Instant::now() + Duration::from_secs(secs + 20);
            while !guard_done.load(Ordering::Relaxed) {
                if Instant::now() >= end {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    return;
                }
                thread::sleep(Duration::from_millis(100));
            }
        });
        let r = child.wait_with_output();
        guard_done.store(true, Ordering::Relaxed);
        r
    })
    .map_err(|e| BenchError::Io("iscsi-perf", e))?;
    let b = Snap::take(pids);
    let mut cpu = cpu_between(&a, &b);
    let text = String::from_utf8_lossy(&out.stdout);
    let iops = parse_perf(&text).ok_or_else(|| {
        BenchError::Perf(format!(
            "no \"iops average\" ({}): {}",
            out.status,
            text.trim().chars().take(300).collect::<String>()
        ))
    })?;
    let init_cpu = (children_cpu() - cpu0) / cpu.secs * 100.0;
    cpu.other -= init_cpu;
    Ok(Run {
        iops,
        mib_s: iops * f64::from(case.bytes) / f64::from(1u32 << 20),
        init_cpu,
        cpu,
    })
}

// ---- one backend: setup, rounds, table ----

#[derive(Default)]
struct Results {
    ours: Vec<Vec<Run>>,
    perf: Vec<Vec<Run>>,
    /// What iscsid negotiated, from `iscsictl show session`.
    params: String,
}

/// The operational parameters that shape the data path, from the
/// `Key=Value` lines of `iscsictl show session`.
fn negotiated(show: &str) -> String {
    const KEYS: [&str; 8] = [
        "HeaderDigest",
        "DataDigest",
        "MaxRecvDataSegmentLength",
        "MaxXmitDataSegmentLength",
        "MaxBurstLength",
        "FirstBurstLength",
        "InitialR2T",
        "ImmediateData",
    ];
    show.lines()
        .filter_map(|l| l.trim().split_once('='))
        .filter(|(k, _)| KEYS.contains(k))
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn backend_name(b: Backend) -> &'static str {
    match b {
        Backend::Null => "tgt bstype null",
        Backend::RamFile => "tgt rdwr RAM file (/dev/shm)",
    }
}

/// The pids in iscsid's "started (relay N, engine M)" line.
fn child_pids(d: &Daemon) -> Option<(u32, u32)> {
    let log = d.log_text();
    let line = log.lines().find(|l| l.contains("started (relay "))?;
    let (_, rest) = line.split_once("started (relay ")?;
    let (relay, rest) = rest.split_once(", engine ")?;
    let engine = rest.trim_end().trim_end_matches(')');
    Some((relay.parse().ok()?, engine.parse().ok()?))
}

fn print_run(tag: &str, case: Case, r: &Run) {
    println!(
        "  {:<18} {:<10} {:>9.0} IOPS {:>7.1} MiB/s  init {:>5.1}% ({:>5.1} us/IO)  \
         engine {:>5.1}% relay {:>5.1}% emu {:>5.1}% tgtd {:>5.1}%  sys {:>4.1}% other {:>4.1}% steal {:>3.1}%",
        case.name,
        tag,
        r.iops,
        r.mib_s,
        r.init_cpu,
        r.us_per_io(),
        r.cpu.engine,
        r.cpu.relay,
        r.cpu.emu,
        r.cpu.tgtd,
        r.cpu.sys_busy,
        r.cpu.other.max(0.0),
        r.cpu.steal
    );
}

fn bench_backend(o: &Opts, backend: Backend, rounds: u32) -> Result<Results, BenchError> {
    println!("== {}: starting tgtd", backend_name(backend));
    let target = Target::start_with(TargetKind::Tgt, &[], backend);
    let dir = Scratch::new("bench");
    let dev = dir.join("vscsi0.sock");
    // The kernel's openings: deeper queues than vscsi(4) allows would
    // measure what OpenBSD never does.
    let emu = Emulator::listen(&dev).map_err(|e| BenchError::Io("emulator", e))?;
    println!("   iscsid: {}", bin("iscsid").display());
    let daemon = Daemon::start(&dev);
    let ctl = daemon.ctl();
    ctl.write_config(&format!(
        "target bench {{\n\ttargetaddr 127.0.0.1 port {}\n\ttargetname \"{IQN_DISK}\"\n}}\n",
        target.port
    ));
    ctl.ok(&["reload"]);
    let disks = emu
        .wait_disks(|d| d.iter().any(|x| x.lun == LUN), Duration::from_secs(20))
        .map_err(|e| BenchError::Emu("waiting for the disk", e))?;
    let disk = disks
        .into_iter()
        .find(|d| d.lun == LUN)
        .ok_or(BenchError::NoDisk)?;
    let (relay, engine) = child_pids(&daemon).unwrap_or_default();
    let pids = Pids {
        parent: daemon.pid(),
        relay,
        engine,
        tgtd: target.pid(),
    };
    println!(
        "   portal 127.0.0.1:{}, {} ({} blocks of {}); iscsid {} relay {} engine {}, tgtd {}, emulator {}",
        target.port,
        disk.name,
        disk.blocks,
        disk.block_size,
        pids.parent,
        pids.relay,
        pids.engine,
        pids.tgtd,
        std::process::id()
    );
    println!(
        "   queue depth at most {} per LUN, as vscsi(4) allows ({VSCSI_OPENINGS} openings, 1 without CmdQue)",
        disk.openings
    );
    let params = negotiated(&String::from_utf8_lossy(
        &ctl.run(&["show", "session", "bench"]).stdout,
    ));
    println!("   negotiated: {params}");
    let mut res = Results {
        ours: vec![Vec::new(); CASES.len()],
        perf: vec![Vec::new(); CASES.len()],
        params,
    };
    for round in 1..=rounds {
        println!("-- round {round}/{rounds}");
        for &ci in &o.cases {
            let case = Case {
                qd: CASES[ci].qd.min(disk.openings),
                ..CASES[ci]
            };
            let r = if o.threads {
                run_ours(&emu, &disk, case, o.secs, o.warmup, &pids)?
            } else {
                run_ours_async(&emu, &disk, case, o.secs, o.warmup, &pids)?
            };
            print_run("iscsid", case, &r);
            res.ours[ci].push(r);
            if o.perf && !case.write {
                let r = run_perf(target.port, case, o.secs, &pids)?;
                print_run("iscsi-perf", case, &r);
                res.perf[ci].push(r);
            }
        }
    }
    let stats = ctl.run(&["show", "vscsi", "stats"]);
    print!("{}", String::from_utf8_lossy(&stats.stdout));
    if emu.protocol_errors() > 0 {
        println!("   emulator protocol errors: {:?}", emu.protocol_log());
    }
    // The daemon logs out before the target goes.
    drop(daemon);
    drop(emu);
    drop(target);
    Ok(res)
}

/// Sessions for the idle-memory measurement.
const IDLE_SESSIONS: usize = 64;

/// Anonymous memory of a process in KiB (/proc/PID/smaps_rollup).
fn anon_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("Anonymous:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn idle_config(port: u16, n: usize) -> String {
    (0..n)
        .map(|i| {
            format!("target idle{i} {{\n\ttargetaddr 127.0.0.1 port {port}\n\ttargetname \"{IQN_DISK}\"\n}}\n")
        })
        .collect()
}

/// What an idle session costs the engine: its anonymous memory with one
/// session logged in, then with IDLE_SESSIONS, each with its disk attached.
fn idle_memory() -> Result<String, BenchError> {
    println!("== idle sessions: starting tgtd");
    let target = Target::start_with(TargetKind::Tgt, &[], Backend::Null);
    let dir = Scratch::new("bench-idle");
    let dev = dir.join("vscsi0.sock");
    let emu = Emulator::listen(&dev).map_err(|e| BenchError::Io("emulator", e))?;
    let daemon = Daemon::start(&dev);
    let ctl = daemon.ctl();
    let (_, engine) = child_pids(&daemon).unwrap_or_default();
    let mut kib = Vec::new();
    for n in [1, IDLE_SESSIONS] {
        ctl.write_config(&idle_config(target.port, n));
        ctl.ok(&["reload"]);
        emu.wait_disks(
            |d| d.iter().filter(|x| x.lun == LUN).count() >= n,
            Duration::from_secs(60),
        )
        .map_err(|e| BenchError::Emu("waiting for the idle sessions' disks", e))?;
        kib.push(anon_kib(engine));
    }
    drop(daemon);
    drop(emu);
    drop(target);
    let per = kib[1].saturating_sub(kib[0]) / (IDLE_SESSIONS as u64 - 1);
    let t = format!(
        "\n### Idle sessions\n\nEngine anonymous memory: {} KiB with 1 session, {} KiB with {IDLE_SESSIONS} \
         (tgt null LUN, each disk attached): about {per} KiB per idle session.\n",
        kib[0], kib[1]
    );
    Ok(t)
}

fn mean(v: &[Run], f: impl Fn(&Run) -> f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.iter().map(f).sum::<f64>() / v.len() as f64
}

fn spread(v: &[Run]) -> String {
    let lo = v.iter().map(|r| r.iops).fold(f64::INFINITY, f64::min);
    let hi = v.iter().map(|r| r.iops).fold(0.0, f64::max);
    if v.len() < 2 {
        String::new()
    } else {
        format!(" ({:.1}k–{:.1}k)", lo / 1000.0, hi / 1000.0)
    }
}

fn table(o: &Opts, backend: Backend, rounds: u32, r: &Results) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "\n### {} — {rounds} round(s) of {} s, A/B interleaved\n",
        backend_name(backend),
        o.secs
    );
    if !r.params.is_empty() {
        let _ = writeln!(t, "Negotiated: {}\n", r.params);
    }
    t.push_str(
        "| case | iscsid IOPS | MiB/s | iscsid CPU (engine+relay) | µs CPU/IO | emu CPU | tgtd CPU | sys busy | other CPU | iscsi-perf IOPS | perf CPU | perf µs/IO | IOPS ours/perf | CPU/IO ours/perf |\n",
    );
    t.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for &ci in &o.cases {
        let (ours, perf) = (&r.ours[ci], &r.perf[ci]);
        if ours.is_empty() {
            continue;
        }
        let iops = mean(ours, |x| x.iops);
        let us = mean(ours, Run::us_per_io);
        let _ = write!(
            t,
            "| {} | {:.1}k{} | {:.0} | {:.0}% ({:.0}+{:.0}) | {:.1} | {:.0}% | {:.0}% | {:.0}% | {:.0}% |",
            CASES[ci].name,
            iops / 1000.0,
            spread(ours),
            mean(ours, |x| x.mib_s),
            mean(ours, |x| x.init_cpu),
            mean(ours, |x| x.cpu.engine),
            mean(ours, |x| x.cpu.relay),
            us,
            mean(ours, |x| x.cpu.emu),
            mean(ours, |x| x.cpu.tgtd),
            mean(ours, |x| x.cpu.sys_busy),
            mean(ours, |x| x.cpu.other.max(0.0)),
        );
        if perf.is_empty() {
            t.push_str(" – | – | – | – | – |\n");
        } else {
            let piops = mean(perf, |x| x.iops);
            let pus = mean(perf, Run::us_per_io);
            let _ = writeln!(
                t,
                " {:.1}k{} | {:.0}% | {:.1} | {:.2} | {:.2} |",
                piops / 1000.0,
                spread(perf),
                mean(perf, |x| x.init_cpu),
                pus,
                iops / piops.max(1.0),
                us / pus.max(1e-9),
            );
        }
    }
    t
}

fn run() -> Result<(), BenchError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let o = parse_args(&args)?;
    if !nix::unistd::geteuid().is_root() {
        return Err(BenchError::NotRoot);
    }
    let started = Instant::now();
    let mut md = String::from("## iscsid vs iscsi-perf (loopback)\n");
    let _ = writeln!(
        md,
        "\nCommand: `bench {}`. iscsid CPU = parent+relay+engine (% of one core, /proc utime+stime);\n\
         emu CPU = the emulator process (stands in for the kernel: vscsi, sd, and the load\n\
         generator: {}); perf CPU = iscsi-perf's user+sys. sys busy = all CPUs;\n\
         other CPU = what else ran (other tenants, compilers): high means a disturbed run.",
        args.join(" "),
        if o.threads {
            "one blocking thread per outstanding command"
        } else {
            "one thread submitting asynchronously, completions on the emulator's reader thread"
        }
    );
    for &b in &o.backends {
        let rounds = if b == Backend::Null {
            o.rounds
        } else {
            o.ram_rounds
        };
        if rounds == 0 {
            continue;
        }
        let r = bench_backend(&o, b, rounds)?;
        let t = table(&o, b, rounds, &r);
        print!("{t}");
        md.push_str(&t);
    }
    let t = idle_memory()?;
    print!("{t}");
    md.push_str(&t);
    println!("\n(total {:.0} s)", started.elapsed().as_secs_f64());
    if let Some(p) = &o.out {
        fs::write(p, &md).map_err(|e| BenchError::Io("writing -o file", e))?;
        println!("markdown written to {}", p.display());
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_iscsi_perf_output() {
        let out = "connected to iscsi://127.0.0.1:3299/iqn.x/1\n\
            00:00:01 - lba 1003194519, iops current 46227 (180 MB/s), iops average 46227 (180 MB/s), in_flight 32, busy 0\r        iops average 46734 (182 MB/s)   \n\nfinished.\n";
        assert_eq!(parse_perf(out), Some(46734.0));
        assert_eq!(parse_perf("finished.\n"), None);
        assert_eq!(parse_perf("iops average (x)"), None);
        assert_eq!(parse_perf(""), None);
    }

    #[test]
    fn picks_negotiated_parameters() {
        let show = "Session bench: LoggedIn\n    Parameters:\n        HeaderDigest=None\n\
                    \x20       MaxRecvDataSegmentLength=262144\n        TargetAlias=x=y\n\
                    \x20       ImmediateData=Yes\n    Commands: 1=2\n";
        assert_eq!(
            negotiated(show),
            "HeaderDigest=None MaxRecvDataSegmentLength=262144 ImmediateData=Yes"
        );
        assert_eq!(negotiated(""), "");
        assert_eq!(negotiated("garbage\n=\n==\n"), "");
    }

    #[test]
    fn args() {
        let a = |v: &[&str]| parse_args(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let o = a(&["-n", "3", "-t", "2", "-k", "null", "-c", "1,3", "-x"]).unwrap();
        assert_eq!((o.rounds, o.secs, o.perf, o.threads), (3, 2, false, false));
        assert!(a(&["-T"]).unwrap().threads);
        assert_eq!(o.backends, vec![Backend::Null]);
        assert_eq!(o.cases, vec![0, 2]);
        let d = a(&[]).unwrap();
        assert_eq!((d.rounds, d.ram_rounds, d.secs), (2, 1, 5));
        assert!(matches!(a(&["-c", "6"]), Err(BenchError::Usage(_))));
        assert!(matches!(a(&["-c", "0"]), Err(BenchError::Usage(_))));
        assert!(matches!(a(&["-n"]), Err(BenchError::Usage(_))));
        assert!(matches!(a(&["-t", "x"]), Err(BenchError::Usage(_))));
        assert!(matches!(a(&["-k", "istgt"]), Err(BenchError::Usage(_))));
        assert!(matches!(a(&["--bogus"]), Err(BenchError::Usage(_))));
    }

    #[test]
    fn stat_fields() {
        // Our own process has run, and a missing one reads as zero.
        let _ = (0..100_000u64).fold(0u64, |a, b| a.wrapping_add(b * b));
        assert_eq!(proc_ticks(u32::MAX), 0);
        let (busy, _, total) = system_ticks();
        assert!(total >= busy && total > 0);
    }

    #[test]
    fn cpu_percentages() {
        let t0 = Instant::now();
        let hz = clock_ticks() as u64;
        let a = Snap {
            at: t0,
            parent: 0,
            relay: 0,
            engine: 0,
            tgtd: 0,
            me: 0,
            sys: (0, 0, 0),
        };
        let b = Snap {
            at: t0 + Duration::from_secs(2),
            parent: 0,
            relay: hz,
            engine: 2 * hz,
            tgtd: hz / 2,
            me: hz,
            sys: (300, 10, 400),
        };
        let c = cpu_between(&a, &b);
        assert!((c.relay - 50.0).abs() < 1e-6);
        assert!((c.engine - 100.0).abs() < 1e-6);
        assert!((c.iscsid - 150.0).abs() < 1e-6);
        assert!((c.tgtd - 25.0).abs() < 1e-6);
        assert!((c.sys_busy - 75.0).abs() < 1e-6);
        assert!((c.steal - 2.5).abs() < 1e-6);
        // 300 busy ticks in 2 s is 1.5 cores; the processes above took 2.25.
        let busy = 300.0 / hz as f64 / 2.0 * 100.0;
        assert!((c.other - (busy - 225.0)).abs() < 1e-6);
        let r = Run {
            iops: 10_000.0,
            mib_s: 0.0,
            init_cpu: 50.0,
            cpu: c,
        };
        assert!((r.us_per_io() - 50.0).abs() < 1e-6);
    }
}
