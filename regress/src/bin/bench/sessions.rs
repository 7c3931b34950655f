//! Many sessions on one tgtd: what idle ones cost the engine, and how
//! sessions with every LUN of a vscsi(4) target attach and carry I/O.

use std::ops::RangeInclusive;
use std::thread;
use std::time::{Duration, Instant};

use regress::emulator::DiskInfo;
use regress::harness::{Backend, Rig, Target, TargetKind};

use crate::cpu::{anon_kib, rss_kib};
use crate::load::run_ours_async;
use crate::{pids, print_run, tgt, BenchError, Case, RAND_4K_QD16};

/// Sessions of the idle-memory measurement and of the scale section.
const MANY_SESSIONS: usize = 64;
/// How long many sessions' disks may take to attach.
const MANY_ATTACH_LIMIT: Duration = Duration::from_secs(180);
/// `saa_luns` of vscsi(4): the LUNs each target (each session) has.
const VSCSI_LUNS: u32 = 8;
/// The scale section's disk LUNs: all of a target's but LUN 0, which tgt
/// keeps for its controller (attached as a device, not a disk).
const SCALE_DISK_LUNS: RangeInclusive<u32> = 1..=VSCSI_LUNS - 1;
const SCALE_CASE: Case = Case {
    name: "4K rand read QD2 per disk",
    qd: 2,
    ..RAND_4K_QD16
};

fn many_rig() -> Rig {
    Rig::with_target(Target::start_with(TargetKind::Tgt, &[], Backend::Null))
}

/// When the disks of a reload were all attached, and when `iscsictl
/// reload` returned (it polls the sessions once a second, as base
/// iscsictl does, until they settle), both from the reload's start.
struct Attached {
    disks: Vec<DiskInfo>,
    at: Duration,
    reload: Duration,
}

/// Configures `n` sessions named `prefix0`.. to the disk target, reloads,
/// and waits until `disks` disks are attached.
fn attach(rig: &Rig, prefix: &str, n: usize, disks: usize) -> Result<Attached, BenchError> {
    let conf: String = (0..n)
        .map(|i| rig.disk_block(&format!("{prefix}{i}"), ""))
        .collect();
    rig.ctl.write_config(&conf);
    let t0 = Instant::now();
    thread::scope(|s| {
        let reload = s.spawn(|| (rig.ctl.run(&["reload"]), t0.elapsed()));
        let waited = rig.emu.wait_disks(|d| d.len() >= disks, MANY_ATTACH_LIMIT);
        let at = t0.elapsed();
        let (out, took) = reload
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        if !out.status.success() {
            let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(BenchError::Reload(said));
        }
        Ok(Attached {
            disks: waited.map_err(|e| BenchError::Emu("waiting for the sessions' disks", e))?,
            at,
            reload: took,
        })
    })
}

/// What an idle session costs the engine: its anonymous memory with one
/// session logged in, then with MANY_SESSIONS, each with its disk attached.
pub fn idle_memory() -> Result<String, BenchError> {
    println!("== idle sessions: starting tgtd");
    let rig = many_rig();
    let engine = pids(&rig).engine;
    let mut kib = Vec::new();
    let mut took = Vec::new();
    for n in [1, MANY_SESSIONS] {
        took.push(attach(&rig, "idle", n, n)?.at.as_secs_f64());
        kib.push(anon_kib(engine));
    }
    drop(rig);
    let per = kib[1].saturating_sub(kib[0]) / (MANY_SESSIONS as u64 - 1);
    let t = format!(
        "\n### Idle sessions\n\nEngine anonymous memory: {} KiB with 1 session, {} KiB with {MANY_SESSIONS} \
         (tgt null LUN, each disk attached): about {per} KiB per idle session. From the reload to the \
         disks attached: {:.3} s for the first session, {:.3} s for the other {}.\n",
        kib[0],
        kib[1],
        took[0],
        took[1],
        MANY_SESSIONS - 1
    );
    Ok(t)
}

/// MANY_SESSIONS sessions to one tgtd target with every LUN vscsi(4) gives
/// a target: how long they take to attach from the reload, the IOPS of
/// SCALE_CASE on all their disks from one submitter, and the engine's
/// memory after the attach and after the I/O.
pub fn scale(secs: u64, warmup: Duration) -> Result<String, BenchError> {
    println!("== scale: starting tgtd");
    let rig = many_rig();
    let have = rig.target.disk_luns();
    for lun in SCALE_DISK_LUNS.filter(|l| !have.contains(l)) {
        tgt::add_null_lun(&rig.target, lun)?;
    }
    let pids = pids(&rig);
    let want = MANY_SESSIONS * SCALE_DISK_LUNS.count();
    let att = attach(&rig, "scale", MANY_SESSIONS, want)?;
    let disks = att.disks;
    let devices = rig.emu.devices().len();
    println!(
        "   {} disks and {devices} other devices attached {:.3} s after the reload started; \
         iscsictl reload returned after {:.2} s",
        disks.len(),
        att.at.as_secs_f64(),
        att.reload.as_secs_f64()
    );
    let after_attach = (rss_kib(pids.engine), anon_kib(pids.engine));
    let case = Case {
        qd: disks
            .iter()
            .map(|d| d.openings)
            .fold(SCALE_CASE.qd, usize::min),
        ..SCALE_CASE
    };
    let r = run_ours_async(&rig.emu, &disks, case, secs, warmup, &pids)?;
    print_run("iscsid", case, &r);
    let after_io = (rss_kib(pids.engine), anon_kib(pids.engine));
    drop(rig);
    let first = SCALE_DISK_LUNS.start();
    let last = SCALE_DISK_LUNS.end();
    Ok(format!(
        "\n### Scale\n\n{MANY_SESSIONS} sessions to one tgtd target, {VSCSI_LUNS} LUNs each (all that \
         vscsi(4) gives a target): LUN 0, tgt's controller, attached as a device ({devices} in all), \
         and bstype-null disk LUNs {first}-{last}: {} disks. Their I/O comes from one asynchronous \
         submitter, {} in flight on each disk ({} in all), {secs} s.\n\n\
         | what | figure |\n|---|---|\n\
         | `iscsictl reload` started to every disk attached | {:.3} s |\n\
         | `iscsictl reload` returned (it polls once a second) | {:.2} s |\n\
         | {} | {:.1}k IOPS, {:.0} MiB/s |\n\
         | iscsid CPU during it (engine+relay) | {:.0}% ({:.0}+{:.0}), {:.1} µs CPU/IO |\n\
         | engine after the attach | VmRSS {} KiB, anonymous {} KiB |\n\
         | engine after the I/O | VmRSS {} KiB, anonymous {} KiB |\n",
        disks.len(),
        case.qd,
        case.qd * disks.len(),
        att.at.as_secs_f64(),
        att.reload.as_secs_f64(),
        case.name,
        r.iops / 1000.0,
        r.mib_s,
        r.init_cpu,
        r.cpu.engine,
        r.cpu.relay,
        r.us_per_io(),
        after_attach.0,
        after_attach.1,
        after_io.0,
        after_io.1,
    ))
}
