//! The libiscsi baseline on the same target and LUN: iscsi-perf for
//! reads, and for writes (iscsi-perf only reads) our iscsi-perf-write
//! (regress/perfwrite), built by bench.sh next to this executable. Both
//! keep `-m` commands of `-b` blocks in flight over one libiscsi session
//! and end with the same "iops average N" line.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use regress::harness::IQN_DISK;

use crate::cpu::{children_cpu, cpu_between, Pids, Snap};
use crate::load::Run;
use crate::{BenchError, Case, LUN};

/// The number after the last "iops average " in the tool's output.
pub fn parse_perf(out: &str) -> Option<f64> {
    let (_, tail) = out.rsplit_once("iops average ")?;
    let digits: String = tail.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// libiscsi's reader, from libiscsi-bin.
const READ_TOOL: &str = "iscsi-perf";
/// Our writer, compiled by bench.sh into the directory of this executable.
const WRITE_TOOL: &str = "iscsi-perf-write";
/// How much of a failed tool's output an error quotes.
const ERROR_CHARS: usize = 300;
/// Both tools count `-b` in the LUN's blocks; tgt's LUNs have 512-byte ones.
const TGT_BLOCK_SIZE: u32 = 512;

pub fn tool_name(case: Case) -> &'static str {
    if case.write {
        WRITE_TOOL
    } else {
        READ_TOOL
    }
}

/// The tool that measures `case`: iscsi-perf from PATH, our writer from
/// beside this executable.
fn tool(case: Case) -> Result<PathBuf, BenchError> {
    if !case.write {
        return Ok(PathBuf::from(READ_TOOL));
    }
    let exe = std::env::current_exe().map_err(|e| BenchError::Io("finding our executable", e))?;
    Ok(exe.with_file_name(WRITE_TOOL))
}

/// Fails early when `case` needs our writer and it was not built (the
/// benchmark started without bench.sh).
pub fn check_tool(case: Case) -> Result<(), BenchError> {
    let t = tool(case)?;
    if case.write && !t.exists() {
        return Err(BenchError::MissingTool(t));
    }
    Ok(())
}

pub fn run_perf(port: u16, case: Case, secs: u64, pids: &Pids) -> Result<Run, BenchError> {
    let url = format!("iscsi://127.0.0.1:{port}/{IQN_DISK}/{LUN}");
    let blocks = (case.bytes / TGT_BLOCK_SIZE).to_string();
    let mut cmd = Command::new(tool(case)?);
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
    cmd.arg(&url).stdin(Stdio::null()).stderr(Stdio::piped());
    let cpu0 = children_cpu();
    let a = Snap::take(pids);
    let child = cmd.stdout(Stdio::piped()).spawn().map_err(|e| {
        let what = if case.write {
            "spawn iscsi-perf-write (regress/bench.sh builds it)"
        } else {
            "spawn iscsi-perf (apt install libiscsi-bin)"
        };
        BenchError::Io(what, e)
    })?;
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
    .map_err(|e| BenchError::Io("waiting for the libiscsi tool", e))?;
    let b = Snap::take(pids);
    let mut cpu = cpu_between(&a, &b);
    let text = String::from_utf8_lossy(&out.stdout);
    let iops = parse_perf(&text).ok_or_else(|| {
        let said = |b: &[u8]| {
            String::from_utf8_lossy(b)
                .trim()
                .chars()
                .take(ERROR_CHARS)
                .collect::<String>()
        };
        BenchError::Perf(format!(
            "{}: no \"iops average\" ({}): {} {}",
            cmd.get_program().to_string_lossy(),
            out.status,
            said(&out.stdout),
            said(&out.stderr)
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
        // iscsi-perf-write's summary.
        let ours = "connected to iscsi://127.0.0.1:3299/iqn.x/1\niops average 56887 (222 MB/s)\nfinished.\n";
        assert_eq!(parse_perf(ours), Some(56887.0));
        assert_eq!(parse_perf("finished.\n"), None);
        assert_eq!(parse_perf("iops average (x)"), None);
        assert_eq!(parse_perf(""), None);
    }
}
