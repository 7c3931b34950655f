//! Many sessions: what idle ones cost the engine.

use std::fs;
use std::time::Duration;

use regress::emulator::Emulator;
use regress::harness::{Backend, Daemon, Scratch, Target, TargetKind, IQN_DISK};

use crate::{child_pids, BenchError, LUN};

/// Sessions for the idle-memory measurement.
pub const IDLE_SESSIONS: usize = 64;

/// Anonymous memory of a process in KiB (/proc/PID/smaps_rollup).
pub fn anon_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("Anonymous:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

pub fn idle_config(port: u16, n: usize) -> String {
    (0..n)
        .map(|i| {
            format!("target idle{i} {{\n\ttargetaddr 127.0.0.1 port {port}\n\ttargetname \"{IQN_DISK}\"\n}}\n")
        })
        .collect()
}

/// What an idle session costs the engine: its anonymous memory with one
/// session logged in, then with IDLE_SESSIONS, each with its disk attached.
pub fn idle_memory() -> Result<String, BenchError> {
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
