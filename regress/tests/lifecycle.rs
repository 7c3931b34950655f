//! Reload as an admin uses it, against tgtd: what must not restart a
//! session, and what the admin is told when a block cannot start.

use std::time::Duration;

use regress::harness::{free_port, pattern, roundtrip, Rig, TargetKind};

/// "; N logins" as `show session` prints the count.
fn logins(rig: &Rig, n: u64) -> bool {
    rig.show("disk").contains(&format!("; {n} logins"))
}

#[test]
fn comments_and_a_new_isid_do_not_restart_sessions() {
    let rig = Rig::new(TargetKind::Tgt, &[]);
    let block = rig.disk_block("disk", "");
    rig.reload(&block);
    let disks = rig.wait_disks(2);
    rig.wait_show("disk", "logged in", Duration::from_secs(10));
    let isid = |s: &str| {
        s.lines()
            .find(|l| l.contains("ISID"))
            .map(str::to_owned)
            .unwrap_or_default()
    };
    let before = isid(&rig.show("disk"));
    // A comment above the block moves it down the file.
    rig.reload(&format!("# moved down by a comment\n\n{block}"));
    // A global isid applies to sessions created afterwards only.
    rig.reload(&format!("isid en 291 17767\n# again\n{block}"));
    // A block added after the isid line has been seen gets the new ISID
    // and is how we know the reloads were acted on.
    let other = rig.disk_block("other", "");
    rig.reload(&format!("isid en 291 17767\n# again\n{block}{other}"));
    let o = rig.wait_show("other", "logged in", Duration::from_secs(10));
    assert!(
        o.contains("ISID: 40000123"),
        "new block without the new ISID:\n{o}"
    );
    let s = rig.show("disk");
    assert!(logins(&rig, 1), "the session logged in again:\n{s}");
    assert_eq!(isid(&s), before, "{s}");
    let log = rig.daemon.log_text();
    assert!(!log.contains("disk: configuration changed"), "{log}");
    roundtrip(&rig, &disks[0], 20, &pattern(50, 8192));
}

#[test]
fn changed_settings_log_in_again() {
    let rig = Rig::new(TargetKind::Tgt, &[]);
    rig.reload(&rig.disk_block("disk", ""));
    rig.wait_disks(2);
    rig.wait_show("disk", "logged in", Duration::from_secs(10));
    rig.reload(&rig.disk_block("disk", "\tmaxburstlength 65536\n"));
    let s = rig.wait_show("disk", "; 2 logins", Duration::from_secs(15));
    assert!(s.contains("MaxBurstLength=65536"), "{s}");
    // Timers alone take effect without a new login, and show says so.
    rig.reload(&rig.disk_block("disk", "\tmaxburstlength 65536\n\tcommandtimeout 7\n"));
    let s = rig.wait_show("disk", "commandtimeout", Duration::from_secs(5));
    assert!(s.contains("7"), "{s}");
    assert!(logins(&rig, 2), "{s}");
    let disks = rig.wait_disks(2);
    roundtrip(&rig, &disks[0], 30, &pattern(51, 8192));
}

/// More enabled blocks than vscsi(4) has targets: the reload says which
/// blocks did not start, and exits 1.
#[test]
fn reload_reports_blocks_without_a_vscsi_target() {
    let rig = Rig::new(TargetKind::Tgt, &[]);
    // Nothing listens there: the sessions fail and back off.
    let port = free_port();
    let conf: String = (0..257)
        .map(|i| {
            format!(
                "target t{i} {{\n\ttargetaddr 127.0.0.1 port {port}\n\ttargetname \"iqn.2026-12.org.example:t{i}\"\n}}\n"
            )
        })
        .collect();
    rig.ctl.write_config(&conf);
    let o = rig.ctl.run(&["reload"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("t256: not started: no free vscsi target"),
        "{err}"
    );
    assert!(!err.contains("t255:"), "{err}");
}
