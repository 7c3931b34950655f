//! The benchmark: iscsid (release build) driven through the vscsi emulator,
//! against libiscsi on the same tgtd, A/B interleaved.
//!
//! For each target backend (tgt's bstype null shows initiator CPU
//! efficiency; a RAM file is the realistic run) it starts tgtd on loopback,
//! the emulator and iscsid, reloads a config, waits for the disk, and then
//! for each round and case runs our I/O through the emulator and the
//! libiscsi baseline right after it: `iscsi-perf` for reads, our
//! `iscsi-perf-write` for writes, none for the rows with digests. CPU is
//! taken from /proc over the measured window: iscsid's three processes,
//! this process (the emulator standing in for the kernel, plus the load
//! generator), tgtd, and the whole machine. Then the sessions sections:
//! what idle sessions cost the engine, and 64 sessions with 8 LUNs each.

mod cpu;
mod load;
mod perf;
mod sessions;
mod tgt;

use std::fmt::{self, Write as _};
use std::fs;
use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use regress::emulator::{DiskInfo, EmuError, VSCSI_OPENINGS};
use regress::harness::{bin, Backend, Daemon, Rig, Target, TargetKind, IQN_DISK};

use cpu::Pids;
use load::{run_ours, run_ours_async, Run};
use perf::run_perf;
use sessions::{idle_memory, scale};

const USAGE: &str = "usage: bench [-n rounds] [-R ram-rounds] [-t secs] [-w warmup-ms] \
[-k null|ram|both] [-c cases] [-x] [-S] [-T] [-o file.md]
  -n  rounds against the null LUN (default 2); A/B interleaved per case
  -R  rounds against the RAM-file LUN (default 1)
  -t  seconds per measurement (default 5; the scale section's I/O too)
  -w  warm-up before our measurement window, in ms (default 500)
  -k  target backends (default both)
  -c  comma-separated case numbers of the backend tables (default all,
      listed below); the idle and scale sections run regardless
  -x  skip the libiscsi baseline (iscsi-perf, and iscsi-perf-write for
      the write cases); the digest rows and the sessions sections have none
  -S  skip the scale section (64 sessions with 8 LUNs each)
  -T  one blocking thread per outstanding command instead of one thread
      submitting asynchronously (costs the emulator more CPU; backend
      tables only: the scale section always submits asynchronously)
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
    MissingTool(PathBuf),
    /// `iscsictl reload` failed, saying this.
    Reload(String),
    /// tgtadm refused this step.
    Tgtadm(&'static str),
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Usage(m) => {
                write!(f, "{m}\n{USAGE}\ncases:")?;
                for (i, c) in CASES.iter().enumerate() {
                    write!(f, "\n  {}  {}", i + 1, c.name)?;
                }
                Ok(())
            }
            BenchError::NotRoot => f.write_str("run as root (tgtd, iscsid's privilege separation)"),
            BenchError::Io(what, e) => write!(f, "{what}: {e}"),
            BenchError::Emu(what, e) => write!(f, "{what}: {e}"),
            BenchError::NoDisk => write!(f, "LUN {LUN} did not attach as a disk"),
            BenchError::Perf(m) => write!(f, "libiscsi baseline: {m}"),
            BenchError::Reload(m) => write!(f, "iscsictl reload: {m}"),
            BenchError::Tgtadm(what) => write!(f, "tgtadm: could not {what}"),
            BenchError::MissingTool(p) => write!(
                f,
                "{} is missing: regress/bench.sh builds it (or -x skips the libiscsi baseline)",
                p.display()
            ),
        }
    }
}

impl std::error::Error for BenchError {}

#[derive(Debug, Clone, Copy)]
struct Case {
    name: &'static str,
    /// Commands in flight on each disk.
    qd: usize,
    bytes: u32,
    random: bool,
    write: bool,
    /// Driven through the session with HeaderDigest and DataDigest CRC32C.
    digests: bool,
}

const KIB: u32 = 1024;

const RAND_4K_QD16: Case = Case {
    name: "4K rand read QD16",
    qd: VSCSI_OPENINGS,
    bytes: 4 * KIB,
    random: true,
    write: false,
    digests: false,
};

const SEQ_64K_QD16: Case = Case {
    name: "64K seq read QD16",
    qd: VSCSI_OPENINGS,
    bytes: 64 * KIB,
    random: false,
    write: false,
    digests: false,
};

/// The cases of the per-backend tables, numbered from 1 for `-c`.
const CASES: [Case; 7] = [
    Case {
        name: "4K rand read QD1",
        qd: 1,
        ..RAND_4K_QD16
    },
    RAND_4K_QD16,
    SEQ_64K_QD16,
    Case {
        name: "4K rand write QD16",
        write: true,
        ..RAND_4K_QD16
    },
    Case {
        name: "64K seq write QD16",
        write: true,
        ..SEQ_64K_QD16
    },
    Case {
        name: "4K rand read QD16, digests",
        digests: true,
        ..RAND_4K_QD16
    },
    Case {
        name: "64K seq read QD16, digests",
        digests: true,
        ..SEQ_64K_QD16
    },
];

/// The sessions of the per-backend runs, as named in the config.
const PLAIN_SESSION: &str = "bench";
const DIGEST_SESSION: &str = "benchdigest";

struct Opts {
    rounds: u32,
    ram_rounds: u32,
    secs: u64,
    warmup: Duration,
    backends: Vec<Backend>,
    cases: Vec<usize>,
    perf: bool,
    scale: bool,
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
        scale: true,
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
            "-S" => o.scale = false,
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

// ---- one backend: setup, rounds, table ----

#[derive(Default)]
struct Results {
    ours: Vec<Vec<Run>>,
    perf: Vec<Vec<Run>>,
    /// What iscsid negotiated, from `iscsictl show session`: the plain
    /// session, and the one of the digest rows (empty without them).
    params: String,
    digest_params: String,
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

/// Whose CPU a rig's measurements watch.
fn pids(rig: &Rig) -> Pids {
    let (relay, engine) = child_pids(&rig.daemon).unwrap_or_default();
    Pids {
        parent: rig.daemon.pid(),
        relay,
        engine,
        tgtd: rig.target.pid(),
    }
}

fn print_run(tag: &str, case: Case, r: &Run) {
    println!(
        "  {:<26} {:<16} {:>9.0} IOPS {:>7.1} MiB/s  init {:>5.1}% ({:>5.1} us/IO)  \
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

/// The config block of the session with CRC32C digests.
const DIGEST_LINES: &str = "\theaderdigest crc32c\n\tdatadigest crc32c\n";
/// How long a session's disk may take to attach.
const ATTACH_LIMIT: Duration = Duration::from_secs(20);

/// Reloads `conf` and waits for a disk at LUN that `known` does not hold.
fn attach_new_disk(rig: &Rig, conf: &str, known: &[DiskInfo]) -> Result<DiskInfo, BenchError> {
    let fresh = |d: &DiskInfo| d.lun == LUN && !known.contains(d);
    rig.reload(conf);
    rig.emu
        .wait_disks(|d| d.iter().any(fresh), ATTACH_LIMIT)
        .map_err(|e| BenchError::Emu("waiting for the disk", e))?
        .into_iter()
        .find(fresh)
        .ok_or(BenchError::NoDisk)
}

fn bench_backend(o: &Opts, backend: Backend, rounds: u32) -> Result<Results, BenchError> {
    println!("== {}: starting tgtd", backend_name(backend));
    // The emulator has the kernel's openings: deeper queues than vscsi(4)
    // allows would measure what OpenBSD never does.
    let rig = Rig::with_target(Target::start_with(TargetKind::Tgt, &[], backend));
    println!("   iscsid: {}", bin("iscsid").display());
    let plain = rig.disk_block(PLAIN_SESSION, "");
    let disk = attach_new_disk(&rig, &plain, &[])?;
    // The digest rows drive a second session's disk, to a target of their
    // own on the same tgtd, set up only when they are asked for.
    let wants_digests = o.cases.iter().any(|&ci| CASES[ci].digests);
    let digest_disk = if wants_digests {
        tgt::add_digest_target(&rig.target, backend)?;
        // The harness's block for the disk target, pointed at ours.
        let digest = rig
            .disk_block(DIGEST_SESSION, DIGEST_LINES)
            .replace(IQN_DISK, tgt::IQN_DIGEST);
        let both = format!("{plain}{digest}");
        Some(attach_new_disk(&rig, &both, std::slice::from_ref(&disk))?)
    } else {
        None
    };
    let pids = pids(&rig);
    println!(
        "   portal {}, {} ({} blocks of {}){}; iscsid {} relay {} engine {}, tgtd {}, emulator {}",
        rig.target.addr(),
        disk.name,
        disk.blocks,
        disk.block_size,
        digest_disk
            .as_ref()
            .map(|d| format!(", digests on {}", d.name))
            .unwrap_or_default(),
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
    let params = negotiated(&rig.show(PLAIN_SESSION));
    println!("   negotiated: {params}");
    let digest_params = if wants_digests {
        let p = negotiated(&rig.show(DIGEST_SESSION));
        println!("   negotiated ({DIGEST_SESSION}): {p}");
        p
    } else {
        String::new()
    };
    let mut res = Results {
        ours: vec![Vec::new(); CASES.len()],
        perf: vec![Vec::new(); CASES.len()],
        params,
        digest_params,
    };
    for round in 1..=rounds {
        println!("-- round {round}/{rounds}");
        for &ci in &o.cases {
            let d = if CASES[ci].digests {
                digest_disk.as_ref().ok_or(BenchError::NoDisk)?
            } else {
                &disk
            };
            let case = Case {
                qd: CASES[ci].qd.min(d.openings),
                ..CASES[ci]
            };
            let r = if o.threads {
                run_ours(&rig.emu, d, case, o.secs, o.warmup, &pids)?
            } else {
                run_ours_async(
                    &rig.emu,
                    std::slice::from_ref(d),
                    case,
                    o.secs,
                    o.warmup,
                    &pids,
                )?
            };
            print_run("iscsid", case, &r);
            res.ours[ci].push(r);
            // libiscsi's tools offer no DataDigest (and iscsi-perf not even
            // a HeaderDigest of CRC32C alone): no baseline with digests.
            if o.perf && !case.digests {
                let r = run_perf(rig.target.port, case, o.secs, &pids)?;
                print_run(perf::tool_name(case), case, &r);
                res.perf[ci].push(r);
            }
        }
    }
    print!("{}", rig.ctl.ok(&["show", "vscsi", "stats"]));
    if rig.emu.protocol_errors() > 0 {
        println!("   emulator protocol errors: {:?}", rig.emu.protocol_log());
    }
    Ok(res)
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
    if !r.digest_params.is_empty() {
        let _ = writeln!(t, "Negotiated (digests rows): {}\n", r.digest_params);
    }
    t.push_str(
        "| case | iscsid IOPS | MiB/s | iscsid CPU (engine+relay) | µs CPU/IO | emu CPU | tgtd CPU | sys busy | other CPU | libiscsi IOPS | libiscsi CPU | libiscsi µs/IO | IOPS ours/libiscsi | CPU/IO ours/libiscsi |\n",
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
    if o.perf {
        for &ci in &o.cases {
            perf::check_tool(CASES[ci])?;
        }
    }
    let mut md = String::from("## iscsid vs libiscsi (loopback)\n");
    let _ = writeln!(
        md,
        "\nCommand: `bench {}`. iscsid CPU = parent+relay+engine (% of one core, /proc utime+stime);\n\
         emu CPU = the emulator process (stands in for the kernel: vscsi, sd, and the load\n\
         generator: {}); sys busy = all CPUs; other CPU = what else ran (other tenants,\n\
         compilers): high means a disturbed run.\n\n\
         libiscsi = libiscsi's iscsi-perf for reads and, as iscsi-perf only reads, our\n\
         iscsi-perf-write (regress/perfwrite: the same asynchronous libiscsi API, one session,\n\
         WRITE16) for writes, on the same LUN with the same depth and size; libiscsi CPU = the\n\
         tool's user+sys. The digests rows have no libiscsi figures (–): libiscsi never offers\n\
         DataDigest, and iscsi-perf offers HeaderDigest None,CRC32C, which tgt answers None.",
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
    if o.scale {
        let t = scale(o.secs, o.warmup)?;
        print!("{t}");
        md.push_str(&t);
    }
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
    fn usage_lists_the_cases() {
        let u = BenchError::Usage(String::new()).to_string();
        assert!(
            u.contains("-S") && u.contains("\n  7  64K seq read QD16, digests"),
            "{u}"
        );
    }

    #[test]
    fn args() {
        let a = |v: &[&str]| parse_args(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let o = a(&["-n", "3", "-t", "2", "-k", "null", "-c", "1,3", "-x"]).unwrap();
        assert_eq!((o.rounds, o.secs, o.perf, o.threads), (3, 2, false, false));
        assert!(a(&["-T"]).unwrap().threads);
        assert!(!a(&["-S"]).unwrap().scale);
        let d = a(&["-c", "6,7", "-S", "-x"]).unwrap();
        assert_eq!((d.cases, d.scale, d.perf), (vec![5, 6], false, false));
        assert!(CASES[5].digests && CASES[6].digests && !CASES[1].digests);
        assert!(CASES[3].write && CASES[4].write && !CASES[5].write);
        assert_eq!(o.backends, vec![Backend::Null]);
        assert_eq!(o.cases, vec![0, 2]);
        let d = a(&[]).unwrap();
        assert_eq!((d.rounds, d.ram_rounds, d.secs), (2, 1, 5));
        assert!(d.scale && d.perf && !d.threads);
        assert_eq!(d.cases, (0..CASES.len()).collect::<Vec<_>>());
        assert!(matches!(a(&["-c", "8"]), Err(BenchError::Usage(_))));
        assert!(matches!(a(&["-S", "3"]), Err(BenchError::Usage(_))));
        assert!(matches!(a(&["-c", "0"]), Err(BenchError::Usage(_))));
        assert!(matches!(a(&["-n"]), Err(BenchError::Usage(_))));
        assert!(matches!(a(&["-t", "x"]), Err(BenchError::Usage(_))));
        assert!(matches!(a(&["-k", "istgt"]), Err(BenchError::Usage(_))));
        assert!(matches!(a(&["--bogus"]), Err(BenchError::Usage(_))));
    }
}
