//! The libiscsi baseline: iscsi-perf on the same target and LUN.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use regress::harness::IQN_DISK;

use crate::cpu::{children_cpu, cpu_between, Pids, Snap};
use crate::load::Run;
use crate::{BenchError, Case, LUN};

/// The number after the last "iops average " in iscsi-perf's output.
pub fn parse_perf(out: &str) -> Option<f64> {
    let (_, tail) = out.rsplit_once("iops average ")?;
    let digits: String = tail.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

pub fn run_perf(port: u16, case: Case, secs: u64, pids: &Pids) -> Result<Run, BenchError> {
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
}
