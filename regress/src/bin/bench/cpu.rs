//! CPU and memory accounting from /proc: whose ticks moved over a
//! window, and what a process holds.

use std::fs;
use std::time::Instant;

pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf reads a constant and touches no memory of ours.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of every thread of `pid`, in ticks.
pub fn proc_ticks(pid: u32) -> u64 {
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
pub fn system_ticks() -> (u64, u64, u64) {
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
pub struct Pids {
    pub parent: u32,
    pub relay: u32,
    pub engine: u32,
    pub tgtd: u32,
}

#[derive(Clone, Copy)]
pub struct Snap {
    pub at: Instant,
    pub parent: u64,
    pub relay: u64,
    pub engine: u64,
    pub tgtd: u64,
    pub me: u64,
    pub sys: (u64, u64, u64),
}

impl Snap {
    pub fn take(p: &Pids) -> Snap {
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
pub struct Cpu {
    pub secs: f64,
    pub iscsid: f64,
    pub relay: f64,
    pub engine: f64,
    pub emu: f64,
    pub tgtd: f64,
    pub sys_busy: f64,
    pub steal: f64,
    /// CPU (% of one core) used by everything else on the machine: other
    /// tenants, the host, a compiler. High values mean a disturbed run.
    pub other: f64,
}

pub fn cpu_between(a: &Snap, b: &Snap) -> Cpu {
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
pub fn children_cpu() -> f64 {
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

/// A `KEY: N kB` line of /proc/PID/`file`, in KiB (0 when missing).
fn proc_kib(pid: u32, file: &str, key: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/{file}"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Anonymous memory of a process in KiB.
pub fn anon_kib(pid: u32) -> u64 {
    proc_kib(pid, "smaps_rollup", "Anonymous")
}

/// Resident memory of a process in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    proc_kib(pid, "status", "VmRSS")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stat_fields() {
        // Our own process has run, and a missing one reads as zero.
        let _ = (0..100_000u64).fold(0u64, |a, b| a.wrapping_add(b * b));
        assert_eq!(proc_ticks(u32::MAX), 0);
        let (busy, _, total) = system_ticks();
        assert!(total >= busy && total > 0);
        let me = std::process::id();
        assert!(rss_kib(me) > 0 && anon_kib(me) > 0);
        assert_eq!((rss_kib(u32::MAX), anon_kib(u32::MAX)), (0, 0));
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
    }
}
