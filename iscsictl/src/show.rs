//! How iscsictl prints what iscsid answers.

use std::fmt::Write;

use common::ctl::{Discovered, NotStarted, PollResult, SessionInfo, VscsiStats};

fn opt(o: &Option<impl std::fmt::Display>) -> String {
    o.as_ref()
        .map_or_else(|| "-".to_owned(), |v| vis(&v.to_string()))
}

/// Text from a target (names, aliases, addresses, error messages quoting
/// them) is shown in the manner of vis(3): control characters and
/// backslashes as octal escapes, so nothing reaches the terminal raw.
pub fn vis(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\\' || c.is_control() {
            let mut b = [0u8; 4];
            for byte in c.encode_utf8(&mut b).bytes() {
                let _ = write!(o, "\\{byte:03o}");
            }
        } else {
            o.push(c);
        }
    }
    o
}

/// `show`: every session in full.
pub fn session(s: &SessionInfo) -> String {
    let mut o = String::new();
    let state = opt(&s.state);
    let _ = writeln!(o, "Session '{}': {state}", vis(&s.name));
    let _ = writeln!(
        o,
        "    SessionType: {}\tvscsi target: {}",
        if s.discovery { "discovery" } else { "normal" },
        opt(&s.vscsi_target)
    );
    if let Some(t) = &s.targetname {
        let _ = writeln!(o, "    TargetName: {}", vis(t));
    }
    let _ = writeln!(o, "    TargetAddr: {}", opt(&s.portal));
    let _ = writeln!(o, "    InitiatorName: {}", vis(&s.initiatorname));
    let _ = writeln!(o, "    ISID: {:012x}\tTSIH: {:#06x}", s.isid, s.tsih);
    if !s.luns.is_empty() {
        let luns: Vec<String> = s.luns.iter().map(u32::to_string).collect();
        let _ = writeln!(o, "    LUNs: {}", luns.join(" "));
    }
    let st = &s.stats;
    let _ = writeln!(
        o,
        "    Commands: {} in flight, {} queued, {} total, {} errors; {} logins",
        s.in_flight, s.queued, st.commands, st.errors, st.logins
    );
    let _ = writeln!(
        o,
        "    Data: {} read, {} written; PDUs: {} in, {} out",
        scaled(st.bytes_read),
        scaled(st.bytes_written),
        st.pdus_in,
        st.pdus_out
    );
    if st.latency_samples > 0 {
        let _ = writeln!(
            o,
            "    Latency: {} mean, {} p99 over the last {} commands",
            micros(st.latency_mean_us),
            micros(st.latency_p99_us),
            st.latency_samples
        );
    }
    let _ = writeln!(
        o,
        "    Recovery: {} reconnects, {} timeouts, {} aborts, {} resets, {} digest errors, {} unit attentions",
        st.reconnects, st.timeouts, st.aborts, st.resets, st.digest_errors, st.unit_attentions
    );
    if let Some(e) = &s.last_error {
        let _ = writeln!(o, "    Last error: {}", vis(e));
    }
    if let Some(ms) = s.next_attempt_ms {
        let _ = writeln!(o, "    Next attempt: in {}", millis(ms));
    }
    pairs(&mut o, "Parameters", &s.params);
    pairs(&mut o, "Timers", &s.timers);
    o
}

/// A titled list of `key=value` lines, left out when empty.
fn pairs(o: &mut String, title: &str, list: &[(String, String)]) {
    if list.is_empty() {
        return;
    }
    let _ = writeln!(o, "    {title}:");
    for (k, v) in list {
        let _ = writeln!(o, "        {}={}", vis(k), vis(v));
    }
}

/// `show summary`: one line per session.
pub fn summary(list: &[SessionInfo]) -> String {
    let mut o = format!(
        "{:<20} {:<12} {:>5}  {:<40} {}\n",
        "Session", "State", "vscsi", "Target", "Portal"
    );
    for s in list {
        let _ = writeln!(
            o,
            "{:<20} {:<12} {:>5}  {:<40} {}",
            vis(&s.name),
            opt(&s.state),
            opt(&s.vscsi_target),
            vis(s.targetname.as_deref().unwrap_or("(discovery)")),
            opt(&s.portal)
        );
    }
    o
}

/// A latency for people: microseconds below a millisecond.
fn micros(us: u64) -> String {
    if us < 1000 {
        format!("{us}us")
    } else {
        format!("{:.1}ms", us as f64 / 1000.0)
    }
}

/// A wait for people.
fn millis(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{}s", ms.div_ceil(1000))
    }
}

/// Bytes in the style of fmt_scaled(3).
pub fn scaled(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "K", "M", "G", "T", "P", "E"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else if v < 10.0 {
        format!("{v:.1}{}", UNITS[u])
    } else {
        format!("{v:.0}{}", UNITS[u])
    }
}

pub fn vscsi_stats(s: &VscsiStats) -> String {
    format!(
        "VSCSI ioctl statistics:\n\
         {} probe calls and {} detach calls\n\
         {} I2T calls ({} read, {} writes, {} no data)\n\
         {} data reads ({} bytes read)\n\
         {} data writes ({} bytes written)\n\
         {} T2I calls ({} done, {} sense errors, {} resets, {} errors)\n\
         failed commands: {} read, {} write, {} no data\n",
        s.probes,
        s.detaches,
        s.commands.iter().sum::<u64>(),
        s.commands[1],
        s.commands[2],
        s.commands[0],
        s.data_reads,
        scaled(s.bytes_read),
        s.data_writes,
        scaled(s.bytes_written),
        s.completions.iter().sum::<u64>(),
        s.completions[0],
        s.completions[1],
        s.completions[2],
        s.completions[3],
        s.errors[1],
        s.errors[2],
        s.errors[0],
    )
}

pub fn discovered(d: &Discovered) -> String {
    let mut o = format!("TargetName: {}\n", vis(&d.targetname));
    for a in &d.addresses {
        let _ = writeln!(o, "    TargetAddress: {}", vis(a));
    }
    o
}

/// One block a reload could not start, for stderr after "iscsictl: ".
pub fn not_started(n: &NotStarted) -> String {
    format!("{}: not started: {}", vis(&n.name), n.reason)
}

pub fn poll_failure(p: &PollResult) -> String {
    format!(
        "Configured sessions: {}\n\
         Sessions disabled: {}\n\
         Sessions logged in: {}\n\
         Sessions failed: {}\n\
         Sessions still attempting to connect: {}\n",
        p.sessions, p.disabled, p.logged_in, p.failed, p.connecting
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_text_is_escaped() {
        assert_eq!(vis("iqn.a:b"), "iqn.a:b");
        assert_eq!(vis("x\x1b[2Jy"), "x\\033[2Jy");
        assert_eq!(vis("a\\b\n"), "a\\134b\\012");
        let d = Discovered {
            targetname: "evil\x07".into(),
            addresses: vec!["1.2.3.4\r".into()],
        };
        let t = discovered(&d);
        assert!(!t.chars().any(|c| c.is_control() && c != '\n'), "{t:?}");
    }

    #[test]
    fn not_started_names_the_block_and_the_reason() {
        use common::ctl::NotStartedReason;
        let n = NotStarted {
            name: "disk9".into(),
            reason: NotStartedReason::NoFreeVscsiTarget,
        };
        assert_eq!(not_started(&n), "disk9: not started: no free vscsi target");
        let evil = NotStarted {
            name: "lab/iqn.x\x1b[2J".into(),
            reason: NotStartedReason::NoFreeVscsiTarget,
        };
        assert_eq!(
            not_started(&evil),
            "lab/iqn.x\\033[2J: not started: no free vscsi target"
        );
    }

    #[test]
    fn session_lists_parameters_then_timers() {
        let s = SessionInfo {
            name: "data".into(),
            params: vec![("HeaderDigest".into(), "CRC32C".into())],
            timers: vec![
                ("logintimeout".into(), "15".into()),
                ("nopinterval".into(), "10".into()),
            ],
            ..SessionInfo::default()
        };
        let t = session(&s);
        assert!(
            t.ends_with(
                "    Parameters:\n        HeaderDigest=CRC32C\n\
                 \x20   Timers:\n        logintimeout=15\n        nopinterval=10\n"
            ),
            "{t}"
        );
        // Not logged in: no parameters, the timers still show.
        let idle = SessionInfo {
            params: Vec::new(),
            ..s.clone()
        };
        let t = session(&idle);
        assert!(!t.contains("Parameters:"), "{t}");
        assert!(t.contains("    Timers:\n        logintimeout=15\n"), "{t}");
        let none = SessionInfo {
            timers: Vec::new(),
            ..s
        };
        assert!(!session(&none).contains("Timers:"));
        // Names and values from the daemon are escaped like the rest.
        let evil = SessionInfo {
            timers: vec![("x\x1b".into(), "1\x07".into())],
            ..SessionInfo::default()
        };
        assert!(session(&evil).contains("        x\\033=1\\007\n"));
    }

    #[test]
    fn scaled_like_fmt_scaled() {
        assert_eq!(scaled(0), "0B");
        assert_eq!(scaled(1023), "1023B");
        assert_eq!(scaled(1536), "1.5K");
        assert_eq!(scaled(256 << 20), "256M");
    }

    #[test]
    fn stats_text() {
        let s = VscsiStats {
            probes: 2,
            commands: [1, 5, 3],
            completions: [7, 1, 1, 0],
            bytes_read: 4096,
            ..VscsiStats::default()
        };
        let t = vscsi_stats(&s);
        assert!(t.contains("2 probe calls and 0 detach calls"));
        assert!(t.contains("9 I2T calls (5 read, 3 writes, 1 no data)"));
        assert!(t.contains("(4.0K bytes read)"));
        assert!(t.contains("9 T2I calls (7 done, 1 sense errors, 1 resets, 0 errors)"));
    }
}
