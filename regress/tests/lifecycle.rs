//! Reload as an admin uses it, against tgtd: what must not restart a
//! session, and what the admin is told when a block cannot start.

use std::time::Duration;

use regress::harness::{free_port, pattern, roundtrip, wait_for, Rig, TargetKind};

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

/// `iscsictl -j show` parses as JSON and carries the counters; a healthy
/// session shows no errors (the unit attention after login is counted
/// apart); a session that cannot log in says why and when it tries again.
#[test]
fn json_show_statistics_and_why_a_disk_is_not_up() {
    let rig = Rig::new(TargetKind::Tgt, &[]);
    let dead = free_port();
    let down = format!(
        "target down {{\n\ttargetaddr 127.0.0.1 port {dead}\n\ttargetname \"iqn.2026-12.org.example:none\"\n}}\n"
    );
    rig.reload(&format!("{}{down}", rig.disk_block("disk", "")));
    let disks = rig.wait_disks(2);
    roundtrip(&rig, &disks[0], 40, &pattern(52, 65536));
    let out = rig.ctl.ok(&["-j", "show"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("iscsictl -j show is JSON");
    let list = v["sessions"].as_array().expect("sessions");
    let disk = list.iter().find(|s| s["name"] == "disk").expect("disk");
    assert_eq!(disk["state"], "logged in", "{disk}");
    let st = &disk["stats"];
    assert!(st["commands"].as_u64() > Some(0), "{st}");
    assert!(st["bytes_written"].as_u64() >= Some(65536), "{st}");
    assert!(st["bytes_read"].as_u64() >= Some(65536), "{st}");
    assert!(st["pdus_in"].as_u64() > Some(0), "{st}");
    assert!(st["latency_samples"].as_u64() > Some(0), "{st}");
    assert_eq!(st["errors"], 0, "a healthy session shows errors: {st}");
    assert_eq!(st["logins"], 1, "{st}");
    assert!(disk["timers"]["commandtimeout"].is_string(), "{disk}");
    // The session that cannot log in: the failure in words, the next try.
    let s = rig.wait_show("down", "Next attempt: in", Duration::from_secs(10));
    assert!(s.contains("Last error: connect to 127.0.0.1"), "{s}");
    assert!(s.contains("connection refused"), "{s}");
    // Between two attempts (it is connecting for a moment at each).
    let down = wait_for(Duration::from_secs(10), || {
        let v: serde_json::Value =
            serde_json::from_str(&rig.ctl.ok(&["-j", "show", "session", "down"])).expect("JSON");
        let d = v["sessions"][0].clone();
        (d["state"] == "failed").then_some(d)
    })
    .expect("the session shows failed");
    assert!(down["next_attempt_ms"].is_u64(), "{down}");
    assert!(down["last_error"].is_string(), "{down}");
    let v: serde_json::Value =
        serde_json::from_str(&rig.ctl.ok(&["-j", "show", "vscsi", "stats"])).expect("JSON");
    assert!(v["vscsi"]["probes"].as_u64() >= Some(1), "{v}");
}

/// Control clients are capped: past the limit they are turned away with
/// one log line, the daemon keeps serving, and the slots come back.
#[test]
fn control_clients_are_capped() {
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    const MAX_CLIENTS: usize = 64;
    let rig = Rig::new(TargetKind::Tgt, &[]);
    rig.reload(&rig.disk_block("disk", ""));
    let mut held = Vec::new();
    for _ in 0..MAX_CLIENTS {
        held.push(UnixStream::connect(&rig.ctl.socket).expect("connect"));
    }
    // Each is accepted before the next counts: the show below is answered
    // only after all of them were.
    let mut extra = UnixStream::connect(&rig.ctl.socket).expect("connect");
    extra
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut b = [0u8; 16];
    assert_eq!(
        extra.read(&mut b).expect("turned away, not left hanging"),
        0
    );
    let o = rig.ctl.run(&["show"]);
    assert!(!o.status.success(), "a client past the cap was served");
    let log = rig.daemon.log_text();
    assert!(log.contains("64 clients connected, refusing more"), "{log}");
    drop(held);
    let served = wait_for(Duration::from_secs(10), || {
        rig.ctl.run(&["show"]).status.success().then_some(())
    });
    assert!(served.is_some(), "the slots did not come back");
}
