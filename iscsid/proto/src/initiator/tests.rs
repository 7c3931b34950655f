//! Tests of the `Initiator` through its public inputs and outputs, with
//! the rig (`rig.rs`) playing the daemon and the target portals.

use std::time::Duration;

use super::rig::{addr, block, config, read, LoginPlan, Rig, INITIATOR, TARGET};
use super::State;
use crate::login_tests::{keys, val};
use crate::pdu::Pdu;
use crate::scsi::Outcome;

const P: &str = "127.0.0.1:3260";

/// A rig with one block "disk" at `P`, logged in at t0.
fn logged_in() -> Rig {
    let mut r = Rig::new(1);
    r.reload(config(vec![block("disk", addr(P))]));
    r.run_ms(0);
    assert_eq!(r.status_of("disk").state, State::LoggedIn);
    r
}

#[test]
fn a_normal_block_logs_in() {
    let mut r = Rig::new(1);
    let report = r.reload(config(vec![block("disk", addr(P))]));
    assert!(report.not_started.is_empty());
    r.run_ms(0);
    assert_eq!(r.connects.len(), 1);
    assert_eq!(r.connects[0].what.1, addr(P));
    assert_eq!(r.connects[0].at, r.t0, "a new block connects at once");
    let conn = r.connects[0].what.0;
    let logins = r.logins_on(conn);
    assert_eq!(logins.len(), 2, "security and operational stages");
    let k = keys(&logins[0].data);
    assert_eq!(val(&k, "InitiatorName"), Some(INITIATOR));
    assert_eq!(val(&k, "TargetName"), Some(TARGET));
    assert_eq!(val(&k, "SessionType"), Some("Normal"));
    assert_eq!(r.probes, vec![(0, None)]);
    let st = r.status_of("disk");
    assert_eq!(st.state, State::LoggedIn);
    assert_eq!(st.vscsi_target, Some(0));
    assert_eq!(st.stats.logins, 1);
    assert_eq!(st.portal, Some(addr(P)));
    assert!(st.params.is_some());
    assert_eq!(r.init.counts().logged_in, 1);
    assert!(r.closes.is_empty());

    // And it carries commands.
    r.command(read(5, 0, 4096));
    let c = r.completed(5);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].what.status, Outcome::Good);
    assert_eq!(c[0].what.data, vec![0xa5; 4096]);
    assert_eq!(r.count_on(conn, |p| matches!(p, Pdu::ScsiCommand(_))), 1);
}

/// Successive reconnects to a portal that refuses wait 1 s, 2 s, 4 s ...
/// plus at most a quarter more, up to `reconnect_max`; a login resets the
/// wait.
#[test]
fn backoff_doubles_with_bounded_jitter_and_resets_on_login() {
    let mut r = Rig::new(7);
    r.portal(addr(P)).refuse = true;
    let mut b = block("disk", addr(P));
    b.timers.reconnect_max = Duration::from_secs(10);
    r.reload(config(vec![b]));
    r.run_ms(0);
    let mut last = r.connects.last().expect("connected at once").at;
    let mut base = Duration::from_secs(1);
    let mut jittered = 0;
    for i in 0..8 {
        // The next deadline is the next attempt.
        let next = r.init.poll_timeout().expect("a retry is scheduled");
        let wait = next - last;
        assert!(
            wait >= base && wait <= base + base / 4,
            "attempt {i}: waited {wait:?}, base {base:?}"
        );
        if wait > base {
            jittered += 1;
        }
        assert_eq!(r.status_of("disk").state, State::Failed);
        // Nothing happens before it.
        r.run_until(next - Duration::from_millis(1));
        assert_eq!(r.connects.len(), i + 1);
        r.run_until(next);
        assert_eq!(r.connects.len(), i + 2, "attempt {i} at its deadline");
        assert_eq!(r.connects[i + 1].at, next);
        last = next;
        base = (base * 2).min(Duration::from_secs(10));
    }
    assert!(jittered > 0, "some jitter is drawn");
    assert_eq!(base, Duration::from_secs(10), "capped");

    // The portal comes back: the next attempt logs in.
    r.portal(addr(P)).refuse = false;
    let next = r.init.poll_timeout().unwrap();
    r.run_until(next);
    assert_eq!(r.status_of("disk").state, State::LoggedIn);
    // Lost again: the wait starts over at 1 s.
    let conn = *r.conn_ids().last().unwrap();
    r.portal(addr(P)).refuse = true;
    let lost = r.now;
    r.drop_conn(conn, super::CloseCause::Reset);
    let next = r.init.poll_timeout().unwrap();
    let wait = next - lost;
    assert!(
        wait >= Duration::from_secs(1) && wait <= Duration::from_millis(1250),
        "after a login the backoff starts over: {wait:?}"
    );
    r.run_until(next);
    let next2 = r.init.poll_timeout().unwrap();
    let wait = next2 - next;
    assert!(
        wait >= Duration::from_secs(2) && wait <= Duration::from_millis(2500),
        "and doubles again: {wait:?}"
    );
}

/// A permanent login failure (status class 2) waits `reconnect_max`.
#[test]
fn permanent_login_failure_waits_reconnect_max() {
    let mut r = Rig::new(3);
    r.portal(addr(P)).login = LoginPlan::Fail(2, 3); // target not found
    let mut b = block("disk", addr(P));
    b.timers.reconnect_max = Duration::from_secs(20);
    r.reload(config(vec![b]));
    r.run_ms(0);
    assert_eq!(r.connects.len(), 1);
    let st = r.status_of("disk");
    assert_eq!(st.state, State::Failed);
    assert!(st.last_error.is_some());
    let next = r.init.poll_timeout().unwrap();
    let wait = next - r.connects[0].at;
    assert!(
        wait >= Duration::from_secs(20) && wait <= Duration::from_secs(25),
        "{wait:?}"
    );
}

/// A command for a session that is down is held: sent after the next
/// login if that comes within `replacement`.
#[test]
fn held_command_is_sent_after_login_within_replacement() {
    let mut r = logged_in();
    let conn = r.conn_ids()[0];
    r.portal(addr(P)).refuse = true;
    r.drop_conn(conn, super::CloseCause::Reset);
    assert_eq!(r.status_of("disk").state, State::Failed);
    r.run_ms(100);
    r.command(read(9, 0, 512));
    assert!(r.completions.is_empty(), "held, not failed");
    assert_eq!(r.status_of("disk").queued, 1);
    // Refused once more (at ~1 s), then the portal is back (at ~3 s).
    let next = r.init.poll_timeout().unwrap();
    r.run_until(next);
    assert!(r.completions.is_empty());
    r.portal(addr(P)).refuse = false;
    let next = r.init.poll_timeout().unwrap();
    assert!(next < r.at(100 + 30_000));
    r.run_until(next);
    assert_eq!(r.status_of("disk").state, State::LoggedIn);
    let c = r.completed(9);
    assert_eq!(c.len(), 1, "{:?}", r.completions);
    assert_eq!(c[0].what.status, Outcome::Good);
    assert_eq!(c[0].at, next, "sent right after the login");
    let conn = *r.conn_ids().last().unwrap();
    assert_eq!(r.count_on(conn, |p| matches!(p, Pdu::ScsiCommand(_))), 1);
    // The replacement timeout is over with the login: nothing more comes.
    r.run_ms(100 + 40_000);
    assert_eq!(r.completed(9).len(), 1);
}

/// ... and go back for a retry at `replacement` if the session stays down.
#[test]
fn held_command_goes_back_at_replacement_timeout() {
    let mut r = Rig::new(1);
    let mut b = block("disk", addr(P));
    b.timers.replacement = Duration::from_secs(5);
    r.reload(config(vec![b]));
    r.run_ms(0);
    let conn = r.conn_ids()[0];
    r.portal(addr(P)).refuse = true;
    r.drop_conn(conn, super::CloseCause::Eof);
    r.run_ms(200);
    r.command(read(9, 0, 512));
    r.run_ms(200 + 5_000 - 1);
    assert!(
        r.completions.is_empty(),
        "held up to the replacement timeout"
    );
    r.run_ms(200 + 5_000);
    let c = r.completed(9);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].what.status, Outcome::Retry);
    assert_eq!(c[0].at, r.at(5_200), "at the replacement timeout exactly");
    assert_eq!(r.status_of("disk").queued, 0);
    // A login after that sends nothing.
    r.portal(addr(P)).refuse = false;
    r.run_ms(60_000);
    assert_eq!(r.status_of("disk").state, State::LoggedIn);
    let conn = *r.conn_ids().last().unwrap();
    assert_eq!(r.count_on(conn, |p| matches!(p, Pdu::ScsiCommand(_))), 0);
    assert_eq!(r.completed(9).len(), 1);
}

/// A command before the very first login is held for it too.
#[test]
fn command_before_first_login_is_held() {
    let mut r = Rig::new(1);
    r.portal(addr(P)).login = LoginPlan::Silent;
    r.reload(config(vec![block("disk", addr(P))]));
    r.run_ms(0);
    assert_eq!(r.status_of("disk").state, State::LoggingIn);
    r.command(read(1, 0, 512));
    assert!(r.completions.is_empty());
    assert_eq!(r.status_of("disk").queued, 1);
}

/// Commands in flight when the connection drops are sent again on the
/// next connection, and complete there.
#[test]
fn in_flight_commands_are_reissued_on_the_next_connection() {
    let mut r = logged_in();
    r.portal(addr(P)).answer_scsi = false;
    r.command(read(1, 0, 512));
    r.command(read(2, 0, 1024));
    let c1 = r.conn_ids()[0];
    assert_eq!(r.count_on(c1, |p| matches!(p, Pdu::ScsiCommand(_))), 2);
    assert_eq!(r.status_of("disk").in_flight, 2);
    r.portal(addr(P)).answer_scsi = true;
    r.drop_conn(c1, super::CloseCause::Reset);
    assert!(r.completions.is_empty(), "held for the next connection");
    r.run_ms(2_000);
    let c2 = *r.conn_ids().last().unwrap();
    assert_ne!(c1, c2);
    let cmds: Vec<u32> = r
        .sent
        .iter()
        .filter(|(c, _)| *c == c2)
        .filter_map(|(_, p)| match p {
            Pdu::ScsiCommand(c) => Some(c.expected_len),
            _ => None,
        })
        .collect();
    assert_eq!(cmds, vec![512, 1024], "reissued oldest first");
    for tag in [1, 2] {
        let c = r.completed(tag);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].what.status, Outcome::Good);
    }
}

/// Drops `conn`, lets the session log in again, and returns the new
/// connection.
fn lose_and_relogin(r: &mut Rig, conn: super::ConnId) -> super::ConnId {
    r.drop_conn(conn, super::CloseCause::Reset);
    let next = r.init.poll_timeout().unwrap();
    r.run_until(next);
    let c = *r.conn_ids().last().unwrap();
    assert_ne!(c, conn);
    c
}

fn scsi_commands(r: &Rig, conn: super::ConnId) -> usize {
    r.count_on(conn, |p| matches!(p, Pdu::ScsiCommand(_)))
}

/// A command that keeps going down with its connection goes back for a
/// retry in the end: with `reissue_limit` 3, after being sent on at most 4
/// connections (see `reissue_limit_counts_lost_connections` for the exact
/// count), once, and is not sent again.
#[test]
fn reissue_limit_gives_commands_back() {
    let mut r = Rig::new(1);
    r.portal(addr(P)).answer_scsi = false;
    let mut b = block("disk", addr(P));
    b.timers.reissue_limit = 3;
    r.reload(config(vec![b]));
    r.run_ms(0);
    r.command(read(4, 0, 512));
    let mut conn = r.conn_ids()[0];
    let mut issued = 1;
    while r.completed(4).is_empty() {
        assert_eq!(scsi_commands(&r, conn), 1);
        conn = lose_and_relogin(&mut r, conn);
        if r.completed(4).is_empty() {
            issued += 1;
        }
        assert!(issued < 10, "never given back");
    }
    let c = r.completed(4);
    assert_eq!(c[0].what.status, Outcome::Retry);
    assert!(
        (3..=4).contains(&issued),
        "sent on {issued} connections with reissue_limit 3"
    );
    assert_eq!(scsi_commands(&r, conn), 0, "not sent again");
    assert_eq!(r.completed(4).len(), 1);
}

/// With `reissue_limit` N a command goes back after N lost connections
/// (as the Timers doc says: "connections a command may go down with
/// before it goes back", and as the log line "failed on N connections"
/// says), so it is issued on N connections in all.
#[test]
fn reissue_limit_counts_lost_connections() {
    let mut r = Rig::new(1);
    r.portal(addr(P)).answer_scsi = false;
    let mut b = block("disk", addr(P));
    b.timers.reissue_limit = 2;
    r.reload(config(vec![b]));
    r.run_ms(0);
    r.command(read(4, 0, 512));
    let c1 = r.conn_ids()[0];
    let c2 = lose_and_relogin(&mut r, c1);
    assert!(r.completed(4).is_empty(), "one loss: reissued");
    assert_eq!(scsi_commands(&r, c2), 1);
    let c3 = lose_and_relogin(&mut r, c2);
    let c = r.completed(4);
    assert_eq!(c.len(), 1, "two losses with reissue_limit 2: given back");
    assert_eq!(c[0].what.status, Outcome::Retry);
    assert_eq!(scsi_commands(&r, c3), 0);
}

fn logouts(r: &Rig, conn: super::ConnId) -> usize {
    r.count_on(conn, |p| matches!(p, Pdu::LogoutReq(_)))
}

/// Reloading the same configuration changes nothing.
#[test]
fn reload_identical_changes_nothing() {
    let mut r = logged_in();
    let conn = r.conn_ids()[0];
    let before = r.log.len();
    let report = r.reload(config(vec![block("disk", addr(P))]));
    assert!(report.not_started.is_empty());
    r.run_ms(5_000);
    assert_eq!(r.connects.len(), 1, "no new connection");
    assert!(r.closes.is_empty(), "no close");
    assert_eq!(logouts(&r, conn), 0);
    assert!(r.detaches.is_empty());
    assert_eq!(r.probes.len(), 1);
    assert_eq!(r.status_of("disk").state, State::LoggedIn);
    assert_eq!(r.status_of("disk").stats.logins, 1);
    assert!(
        !r.log[before..]
            .iter()
            .any(|l| l.contains("Close") || l.contains("Connect")),
        "{:?}",
        &r.log[before..]
    );
    // A timer change takes effect without a new login either.
    let mut b = block("disk", addr(P));
    b.timers.replacement = Duration::from_secs(99);
    r.reload(config(vec![b]));
    r.run_ms(6_000);
    assert_eq!(r.connects.len(), 1);
    assert_eq!(logouts(&r, conn), 0);
    assert_eq!(
        r.status_of("disk").timers.replacement,
        Duration::from_secs(99)
    );
}

/// A changed login setting logs out and in again with the new setting;
/// commands in flight come along and complete on the new connection.
#[test]
fn reload_changed_login_setting_restarts_with_commands_held() {
    for change in ["max_burst", "targetname"] {
        let mut r = logged_in();
        let c1 = r.conn_ids()[0];
        r.portal(addr(P)).answer_scsi = false;
        r.command(read(1, 0, 512));
        r.command(read(2, 0, 512));
        assert_eq!(scsi_commands(&r, c1), 2);
        r.portal(addr(P)).answer_scsi = true;
        let mut b = block("disk", addr(P));
        match change {
            "max_burst" => b.prefs.max_burst = 65_536,
            _ => b.targetname = Some("iqn.2026-11.org.example:other".into()),
        }
        r.reload(config(vec![b]));
        r.run_ms(10);
        assert_eq!(logouts(&r, c1), 1, "{change}: logged out");
        assert_eq!(r.closes.len(), 1, "{change}");
        assert_eq!(r.closes[0].what, c1);
        assert_eq!(r.connects.len(), 2, "{change}: and in again");
        let c2 = r.connects[1].what.0;
        assert_eq!(r.connects[1].what.1, addr(P));
        let logins = r.logins_on(c2);
        let all: Vec<(String, String)> = logins.iter().flat_map(|l| keys(&l.data)).collect();
        match change {
            "max_burst" => assert_eq!(val(&all, "MaxBurstLength"), Some("65536")),
            _ => assert_eq!(
                val(&all, "TargetName"),
                Some("iqn.2026-11.org.example:other")
            ),
        }
        assert_eq!(r.status_of("disk").state, State::LoggedIn);
        assert_eq!(scsi_commands(&r, c2), 2, "{change}: reissued");
        for tag in [1, 2] {
            let c = r.completed(tag);
            assert_eq!(c.len(), 1, "{change}: {:?}", r.completions);
            assert_eq!(c[0].what.status, Outcome::Good, "{change}");
        }
        assert!(r.detaches.is_empty(), "{change}: the disk stays");
    }
}

/// A block removed from the configuration logs out and its disk detaches.
#[test]
fn reload_removed_block_logs_out_and_detaches() {
    let mut r = logged_in();
    let conn = r.conn_ids()[0];
    r.reload(config(vec![]));
    assert_eq!(logouts(&r, conn), 1);
    assert_eq!(r.detaches, vec![(0, None)]);
    assert_eq!(r.closes.len(), 1);
    assert!(r.status().is_empty());
    r.run_ms(120_000);
    assert_eq!(r.connects.len(), 1, "never back");
    // Its vscsi target is empty now, and free for the next block.
    r.command(read(3, 0, 512));
    assert_eq!(r.completed(3)[0].what.status, Outcome::Failed);
    r.reload(config(vec![block("other", addr(P))]));
    r.run_ms(120_001);
    assert_eq!(r.status_of("other").vscsi_target, Some(0));
    assert_eq!(r.status_of("other").state, State::LoggedIn);
}

/// A disabled block likewise, and it stays down.
#[test]
fn reload_disabled_block_logs_out_and_detaches() {
    let mut r = logged_in();
    let conn = r.conn_ids()[0];
    let mut b = block("disk", addr(P));
    b.disabled = true;
    r.reload(config(vec![b.clone()]));
    assert_eq!(logouts(&r, conn), 1);
    assert_eq!(r.detaches, vec![(0, None)]);
    assert_eq!(r.closes.len(), 1);
    r.run_ms(120_000);
    assert_eq!(r.connects.len(), 1, "disabled stays down");
    assert_eq!(r.status_of("disk").state, State::Disabled);
    assert_eq!(r.init.counts().disabled, 1);
    // Commands for it fail rather than wait.
    r.command(read(3, 0, 512));
    assert_eq!(r.completed(3).len(), 1);
    assert_ne!(r.completed(3)[0].what.status, Outcome::Good);
    // Enabled again: it logs in again.
    b.disabled = false;
    r.reload(config(vec![b]));
    r.run_ms(120_001);
    assert_eq!(r.connects.len(), 2);
    assert_eq!(r.status_of("disk").state, State::LoggedIn);
}

/// A new ISID base does not restart sessions; blocks added later use it,
/// with the qualifier offset by their vscsi target.
#[test]
fn reload_new_isid_applies_to_new_blocks_only() {
    let mut r = logged_in();
    let c1 = r.conn_ids()[0];
    let old = r.logins_on(c1)[0].isid;
    assert_eq!(old[0], 0x80, "a random ISID");
    let isid = [0x80, 0x01, 0x02, 0x03, 0x10, 0x00];
    let mut cfg = config(vec![block("disk", addr(P))]);
    cfg.isid = Some(isid);
    r.reload(cfg.clone());
    r.run_ms(1_000);
    assert_eq!(r.connects.len(), 1, "no restart");
    assert!(r.closes.is_empty());
    assert_eq!(logouts(&r, c1), 0);
    assert_eq!(r.status_of("disk").isid, old);
    let q = "127.0.0.5:3260";
    cfg.targets.push(block("second", addr(q)));
    cfg.isid = None;
    r.reload(cfg);
    r.run_ms(1_001);
    assert_eq!(r.connects.len(), 2);
    let c2 = r.connects[1].what.0;
    assert_eq!(r.connects[1].what.1, addr(q));
    assert_eq!(r.status_of("second").vscsi_target, Some(1));
    let got = r.logins_on(c2)[0].isid;
    assert_eq!(got, [0x80, 0x01, 0x02, 0x03, 0x10, 0x01]);
    assert_eq!(r.status_of("second").isid, got);
}

/// vscsi has 256 targets: block 257 is reported, not started.
#[test]
fn reload_257_blocks_reports_the_last() {
    let mut r = Rig::new(1);
    r.portal(addr(P)).refuse = true;
    let blocks: Vec<_> = (0..257).map(|i| block(&format!("b{i}"), addr(P))).collect();
    let report = r.reload(config(blocks));
    assert_eq!(
        report.not_started,
        vec![super::NotStarted {
            name: "b256".into(),
            reason: super::NotStartedReason::NoFreeVscsiTarget
        }]
    );
    assert_eq!(r.status().len(), 256);
    assert_eq!(r.status_of("b255").vscsi_target, Some(255));
    r.run_ms(0);
    assert_eq!(r.connects.len(), 256);
}

const D: &str = "127.0.0.9:3260";

fn send_targets() -> Vec<(String, String)> {
    [
        ("TargetName", "iqn.2026-11.org.example:one"),
        ("TargetAddress", "127.0.0.10:3260,1"),
        ("TargetName", "iqn.2026-11.org.example:two"),
        ("TargetAddress", "127.0.0.11:3261,1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn discovery_block() -> super::TargetConfig {
    super::TargetConfig::new(
        "disc",
        crate::negotiate::SessionKind::Discovery,
        Some(addr(D)),
    )
}

/// A discovery block creates a normal session for each target its portal
/// reports, at the reported address; removing the block removes them.
#[test]
fn discovery_block_creates_and_removes_sessions() {
    let mut r = Rig::new(1);
    r.portal(addr(D)).send_targets = send_targets();
    r.reload(config(vec![discovery_block()]));
    r.run_ms(0);
    let dc = r.connects[0].what.0;
    assert_eq!(r.connects[0].what.1, addr(D));
    let k = keys(&r.logins_on(dc)[0].data);
    assert_eq!(val(&k, "SessionType"), Some("Discovery"));
    assert_eq!(val(&k, "TargetName"), None);
    assert_eq!(
        r.count_on(dc, |p| matches!(p, Pdu::TextReq(_))),
        1,
        "SendTargets"
    );
    assert_eq!(logouts(&r, dc), 1, "the discovery session logs out");
    assert_eq!(r.status_of("disc").state, State::Done);
    assert_eq!(r.status_of("disc").vscsi_target, None);

    let one = r.status_of("disc/iqn.2026-11.org.example:one");
    let two = r.status_of("disc/iqn.2026-11.org.example:two");
    assert_eq!(one.state, State::LoggedIn);
    assert_eq!(two.state, State::LoggedIn);
    assert_eq!(one.portal, Some(addr("127.0.0.10:3260")));
    assert_eq!(two.portal, Some(addr("127.0.0.11:3261")));
    assert_eq!(r.connects.len(), 3);
    let mut where_: Vec<_> = r.connects[1..].iter().map(|c| c.what.1).collect();
    where_.sort();
    assert_eq!(
        where_,
        vec![addr("127.0.0.10:3260"), addr("127.0.0.11:3261")]
    );
    for c in &r.connects[1..] {
        let k = keys(&r.logins_on(c.what.0)[0].data);
        let want = if c.what.1 == addr("127.0.0.10:3260") {
            "iqn.2026-11.org.example:one"
        } else {
            "iqn.2026-11.org.example:two"
        };
        assert_eq!(val(&k, "TargetName"), Some(want));
        assert_eq!(val(&k, "SessionType"), Some("Normal"));
    }
    let mut probes = r.probes.clone();
    probes.sort();
    assert_eq!(probes, vec![(0, None), (1, None)]);
    assert_eq!(r.init.counts().logged_in, 3);

    // The same reload again asks again but adds nothing twice.
    r.reload(config(vec![discovery_block()]));
    r.run_ms(1_000);
    assert_eq!(r.connects.len(), 4, "the portal is asked again");
    assert_eq!(r.connects[3].what.1, addr(D));
    assert_eq!(r.status().len(), 3);

    // The block goes: so do its sessions.
    let live: Vec<_> = r.live_conns();
    r.reload(config(vec![]));
    r.run_ms(2_000);
    for c in live {
        assert_eq!(logouts(&r, c), 1, "{c:?} logged out");
    }
    let mut d = r.detaches.clone();
    d.sort();
    assert_eq!(d, vec![(0, None), (1, None)]);
    assert!(r.status().is_empty(), "{:?}", r.status());
}

/// A one-off discovery reports to its client and creates no session.
#[test]
fn one_off_discover_reports_and_creates_nothing() {
    let mut r = Rig::new(1);
    r.portal(addr(D)).send_targets = send_targets();
    let client = super::ClientId(42);
    let cfg = super::TargetConfig::new("x", crate::negotiate::SessionKind::Normal, Some(addr(D)));
    r.discover(client, cfg.clone());
    assert_eq!(
        r.init.discover(super::ClientId(43), cfg, r.now),
        Err(super::DiscoverError::Busy)
    );
    r.run_ms(0);
    assert_eq!(r.discovered.len(), 1);
    let (who, recs) = &r.discovered[0];
    assert_eq!(*who, client);
    let names: Vec<&str> = recs.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["iqn.2026-11.org.example:one", "iqn.2026-11.org.example:two"]
    );
    assert_eq!(recs[1].addresses, vec!["127.0.0.11:3261,1".to_string()]);
    r.run_ms(60_000);
    assert_eq!(r.connects.len(), 1, "nothing connects to what it found");
    assert!(r.status().is_empty(), "{:?}", r.status());
    assert!(r.probes.is_empty());
    assert_eq!(r.init.counts(), super::Counts::default());
}

/// A one-off discovery of a portal that refuses reports the failure.
#[test]
fn one_off_discover_failure_is_reported() {
    let mut r = Rig::new(1);
    r.portal(addr(D)).refuse = true;
    let cfg =
        super::TargetConfig::new("x", crate::negotiate::SessionKind::Discovery, Some(addr(D)));
    r.discover(super::ClientId(1), cfg);
    r.run_ms(0);
    assert_eq!(r.discover_failed.len(), 1);
    assert_eq!(r.discover_failed[0].0, super::ClientId(1));
    r.run_ms(60_000);
    assert_eq!(r.connects.len(), 1, "not retried");
    assert!(r.status().is_empty());
}

fn chap_block(algs: super::ChapAlgs) -> super::TargetConfig {
    let mut b = block("disk", addr(P));
    b.chap = Some(super::ChapIdentity {
        name: "alice".into(),
        secret: b"secretsecret12".to_vec(),
        mutual: Some(("tgt".into(), b"tgtsecret1234".to_vec())),
        algs,
    });
    b
}

/// With `ChapAlgs::Any`, a target that hangs up on the CHAP_A offer gets
/// MD5 alone at once; a second hang-up backs off as usual.
#[test]
fn chap_any_falls_back_to_md5_at_once() {
    let mut r = Rig::new(1);
    r.portal(addr(P)).login = LoginPlan::ChapHangUp;
    r.reload(config(vec![chap_block(super::ChapAlgs::Any)]));
    r.run_ms(0);
    assert_eq!(r.chap_responses.len(), 2, "{:?}", r.chap_responses);
    assert_eq!(val(&r.chap_responses[0], "CHAP_A"), Some("7,5"));
    assert_eq!(val(&r.chap_responses[1], "CHAP_A"), Some("5"));
    assert_eq!(r.connects.len(), 2);
    assert_eq!(r.connects[1].at, r.connects[0].at, "retried at once");
    // The MD5-only attempt failed too: now the usual backoff.
    let st = r.status_of("disk");
    assert_eq!(st.state, State::Failed);
    assert!(st.last_error.unwrap().contains("chap"));
    let next = r.init.poll_timeout().unwrap();
    assert!(next >= r.at(1_000), "{:?}", next - r.t0);
    r.run_until(next);
    assert_eq!(r.connects.len(), 3);
    assert_eq!(val(&r.chap_responses[2], "CHAP_A"), Some("5"), "MD5 sticks");
}

/// Without `Any` there is nothing to fall back to.
#[test]
fn chap_sha256_only_backs_off() {
    let mut r = Rig::new(1);
    r.portal(addr(P)).login = LoginPlan::ChapHangUp;
    r.reload(config(vec![chap_block(super::ChapAlgs::Sha256)]));
    r.run_ms(0);
    assert_eq!(r.connects.len(), 1);
    assert_eq!(val(&r.chap_responses[0], "CHAP_A"), Some("7"));
    assert!(r.init.poll_timeout().unwrap() >= r.at(1_000));
}

/// A temporary redirect holds for one login; a permanent one sticks.
#[test]
fn login_redirects() {
    let there = addr("127.0.0.2:3261");
    for permanent in [false, true] {
        let mut r = Rig::new(1);
        r.portal(addr(P)).logins.push_back(LoginPlan::Redirect {
            addr: there.to_string(),
            permanent,
        });
        r.reload(config(vec![block("disk", addr(P))]));
        r.run_ms(0);
        assert_eq!(r.connects.len(), 2, "permanent {permanent}");
        assert_eq!(r.connects[0].what.1, addr(P));
        assert_eq!(r.connects[1].what.1, there, "redirected");
        assert_eq!(r.connects[1].at, r.t0, "at once");
        assert_eq!(r.closes[0].what, r.connects[0].what.0);
        let st = r.status_of("disk");
        assert_eq!(st.state, State::LoggedIn);
        assert_eq!(st.portal, Some(there));
        let c2 = r.connects[1].what.0;
        r.drop_conn(c2, super::CloseCause::Reset);
        r.run_ms(2_000);
        assert_eq!(r.connects.len(), 3);
        let want = if permanent { there } else { addr(P) };
        assert_eq!(r.connects[2].what.1, want, "permanent {permanent}");
        assert_eq!(r.status_of("disk").state, State::LoggedIn);
    }
}

/// A login that times out is closed and retried; what comes late for the
/// old connection does not reach the new one.
#[test]
fn late_login_response_for_a_replaced_connection() {
    let mut r = Rig::new(1);
    r.portal(addr(P)).logins.push_back(LoginPlan::Silent);
    let mut b = block("disk", addr(P));
    b.timers.login = Duration::from_secs(5);
    r.reload(config(vec![b]));
    r.run_ms(0);
    let c1 = r.connects[0].what.0;
    assert_eq!(r.status_of("disk").state, State::LoggingIn);
    assert_eq!(r.init.poll_timeout(), Some(r.at(5_000)), "the login timer");
    r.run_ms(4_999);
    assert!(r.closes.is_empty());
    r.run_ms(5_000);
    assert_eq!(r.closes.len(), 1);
    assert_eq!(r.closes[0].what, c1);
    assert_eq!(r.closes[0].at, r.at(5_000));
    assert!(r.status_of("disk").last_error.is_some());
    r.run_ms(7_000);
    assert_eq!(r.connects.len(), 2);
    let c2 = r.connects[1].what.0;
    assert_ne!(c1, c2);
    assert_eq!(r.status_of("disk").state, State::LoggedIn);

    // The old target answers now: the bytes have nowhere to go.
    let req = r.logins_on(c1)[0].clone();
    let rsp = crate::login_tests::answer(&req, 1, true, crate::login::OPERATIONAL, Vec::new());
    let mut wire = Vec::new();
    Pdu::LoginRsp(rsp).encode(crate::pdu::Digests::default(), &mut wire);
    assert!(r.init.rx_space(c1, 48).is_none());
    assert!(!r.feed(c1, &wire));
    r.init.rx_filled(c1, wire.len(), r.now);
    assert!(r.init.tx_data(c1).is_empty());
    r.init.tx_advance(c1, 100);
    r.init.connected(c1, r.now);
    r.init.closed(c1, super::CloseCause::Eof, r.now);
    r.step();
    assert_eq!(r.closes.len(), 1, "the new connection is not closed");
    assert_eq!(r.connects.len(), 2, "nor replaced");
    assert_eq!(r.status_of("disk").state, State::LoggedIn);
    r.command(read(1, 0, 512));
    assert_eq!(r.completed(1)[0].what.status, Outcome::Good);
    assert_eq!(scsi_commands(&r, c2), 1);
}

/// The shell's socket errors sort by kind.
#[test]
fn close_causes_from_error_kinds() {
    use super::CloseCause;
    use std::io::ErrorKind as K;
    let cases = [
        (K::ConnectionReset, CloseCause::Reset),
        (K::ConnectionAborted, CloseCause::Reset),
        (K::BrokenPipe, CloseCause::Reset),
        (K::ConnectionRefused, CloseCause::Refused),
        (K::HostUnreachable, CloseCause::Unreachable),
        (K::NetworkUnreachable, CloseCause::Unreachable),
        (K::TimedOut, CloseCause::TimedOut),
        (K::UnexpectedEof, CloseCause::Eof),
        (K::PermissionDenied, CloseCause::Other(K::PermissionDenied)),
        (K::Other, CloseCause::Other(K::Other)),
    ];
    for (k, want) in cases {
        assert_eq!(CloseCause::from_kind(k), want, "{k:?}");
        assert!(!want.to_string().is_empty());
    }
    assert!(CloseCause::Eof.is_hangup());
    assert!(CloseCause::Reset.is_hangup());
    for c in [
        CloseCause::Refused,
        CloseCause::Unreachable,
        CloseCause::TimedOut,
        CloseCause::Other(K::Other),
    ] {
        assert!(!c.is_hangup(), "{c:?}");
    }
}

/// A hang-up during a login without CHAP is an ordinary failure: backoff.
#[test]
fn hangup_during_login_without_chap_backs_off() {
    let mut r = Rig::new(1);
    r.portal(addr(P)).logins.push_back(LoginPlan::HangUp);
    r.reload(config(vec![block("disk", addr(P))]));
    r.run_ms(0);
    assert_eq!(r.connects.len(), 1);
    let st = r.status_of("disk");
    assert_eq!(st.state, State::Failed);
    assert!(st.last_error.unwrap().contains("during login"));
    let next = r.init.poll_timeout().unwrap();
    assert!(next >= r.at(1_000) && next <= r.at(1_250));
    r.run_until(next);
    assert_eq!(r.status_of("disk").state, State::LoggedIn);
}

/// One scenario with some of everything: loss, backoff, commands, a
/// reload, discovery.
fn scenario(seed: u64) -> Vec<String> {
    let mut r = Rig::new(seed);
    r.portal(addr(P)).refuse = true;
    r.portal(addr(D)).send_targets = send_targets();
    r.reload(config(vec![block("disk", addr(P)), discovery_block()]));
    r.run_ms(3_500);
    r.command(read(1, 0, 512));
    r.portal(addr(P)).refuse = false;
    r.run_ms(10_000);
    r.command(read(2, 0, 4096));
    let c = *r
        .conn_ids()
        .iter()
        .find(|c| r.live_conns().contains(c))
        .unwrap();
    r.drop_conn(c, super::CloseCause::Reset);
    r.run_ms(20_000);
    let mut b = block("disk", addr(P));
    b.prefs.max_burst = 65_536;
    r.reload(config(vec![b, discovery_block()]));
    r.run_ms(30_000);
    r.log
}

/// The same entropy and the same inputs give the same actions, bytes and
/// times.
#[test]
fn runs_are_deterministic() {
    let a = scenario(11);
    let b = scenario(11);
    assert!(a.len() > 50, "{}", a.len());
    assert!(a.iter().any(|l| l.contains("Probe")));
    assert!(a.iter().any(|l| l.contains("Complete")));
    assert_eq!(a, b);
    // And the entropy matters (ISID, ITTs, jitter).
    assert_ne!(a, scenario(12));
}

/// The random source failing at the start fails `new`.
#[test]
fn entropy_failing_at_start() {
    let (rng, _) = super::rig::Seq::failing_after(1, 0);
    assert!(super::Initiator::new(INITIATOR.into(), Box::new(rng)).is_err());
}

/// Runs the due timers once, as the daemon does until it sees `Fatal`
/// (it exits then).
fn tick_once(r: &mut Rig) {
    r.init.handle_timeout(r.now);
    r.step();
}

/// The random source failing later is fatal: no login goes out without
/// its random values (ITT, CmdSN, CHAP challenge).
#[test]
fn entropy_failing_is_fatal_and_nothing_logs_in() {
    // Call 1 is the ISID at start; call 2 the first connection's values.
    let (rng, calls) = super::rig::Seq::failing_after(1, 1);
    let mut r = Rig::with_entropy(Box::new(rng));
    r.reload(config(vec![chap_block(super::ChapAlgs::Md5)]));
    tick_once(&mut r);
    assert_eq!(calls.get(), 2);
    assert_eq!(r.fatal, vec![super::EntropyError]);
    assert!(r.connects.is_empty(), "no connection without random values");
    assert!(r.sent.is_empty());

    // Failing on the jitter after a refused connection: fatal too, and
    // no further connection.
    let (rng, calls) = super::rig::Seq::failing_after(1, 2);
    let mut r = Rig::with_entropy(Box::new(rng));
    r.portal(addr(P)).refuse = true;
    r.reload(config(vec![block("disk", addr(P))]));
    tick_once(&mut r);
    assert_eq!(calls.get(), 3);
    assert_eq!(r.connects.len(), 1);
    assert_eq!(r.fatal.len(), 1);
}

/// With a working source, the mutual CHAP challenge we send comes from it.
#[test]
fn mutual_chap_challenge_comes_from_the_random_source() {
    let mut challenges = Vec::new();
    for seed in [1, 2] {
        let mut r = Rig::new(seed);
        r.portal(addr(P)).login = LoginPlan::ChapChallengeHangUp;
        r.reload(config(vec![chap_block(super::ChapAlgs::Md5)]));
        r.run_ms(0);
        let k = &r.chap_responses[0];
        assert_eq!(val(k, "CHAP_N"), Some("alice"));
        let c = val(k, "CHAP_C").expect("a mutual challenge");
        let bytes = crate::chap::decode_binary(c).unwrap();
        assert!(bytes.len() >= 16, "{c}");
        assert!(bytes.iter().any(|&b| b != 0), "never a zero challenge");
        challenges.push(bytes);
    }
    assert_ne!(challenges[0], challenges[1]);
}

/// The reissue count survives reconnect attempts that fail before a
/// login: a target that takes the login, drops every command's
/// connection and refuses the next connect must not keep a command for
/// ever.
#[test]
fn reissue_count_survives_failed_reconnects() {
    let mut r = Rig::new(1);
    r.portal(addr(P)).answer_scsi = false;
    let mut b = block("disk", addr(P));
    b.timers.reissue_limit = 2;
    // Plenty of time: the replacement timeout is not what ends it.
    b.timers.replacement = Duration::from_secs(3_600);
    r.reload(config(vec![b]));
    r.run_ms(0);
    r.command(read(4, 0, 512));
    let mut issued = 0;
    for round in 0..6 {
        let conn = *r.conn_ids().last().unwrap();
        if scsi_commands(&r, conn) == 1 {
            issued += 1;
        }
        // The command's connection dies; the next connect is refused once.
        r.portal(addr(P)).refuse = true;
        r.drop_conn(conn, super::CloseCause::Reset);
        let next = r.init.poll_timeout().unwrap();
        r.run_until(next);
        r.portal(addr(P)).refuse = false;
        let next = r.init.poll_timeout().unwrap();
        r.run_until(next);
        assert_eq!(r.status_of("disk").state, State::LoggedIn, "round {round}");
        if !r.completed(4).is_empty() {
            break;
        }
    }
    let c = r.completed(4);
    assert_eq!(c.len(), 1, "sent on {issued} connections and still held");
    assert_eq!(c[0].what.status, Outcome::Retry);
    assert!(issued <= 3, "sent on {issued} connections");
}

/// A target that redirects to itself for ever is not reconnected in a
/// tight loop.
#[test]
fn redirect_loop_is_not_a_busy_loop() {
    let mut r = Rig::new(1);
    r.portal(addr(P)).login = LoginPlan::Redirect {
        addr: P.to_string(),
        permanent: false,
    };
    r.reload(config(vec![block("disk", addr(P))]));
    // Drive time by hand: each handle_timeout may connect once.
    for _ in 0..1_000 {
        match r.init.poll_timeout() {
            Some(d) if d <= r.at(10_000) => {
                r.now = r.now.max(d);
                r.init.handle_timeout(r.now);
                r.step();
            }
            _ => break,
        }
    }
    assert!(
        r.connects.len() <= 20,
        "{} connects within 10 s, the last at {:?}",
        r.connects.len(),
        r.connects.last().map(|c| c.at - r.t0)
    );
}

/// Shutdown logs every session out; nothing reconnects after it, and
/// commands go back for a retry.
#[test]
fn shutdown_logs_out_everything() {
    let mut r = Rig::new(1);
    let q = addr("127.0.0.5:3260");
    r.portal(q).answer_logout = false;
    r.reload(config(vec![block("a", addr(P)), block("b", q)]));
    r.run_ms(0);
    let conns = r.conn_ids();
    assert_eq!(conns.len(), 2);
    assert!(!r.init.finished());
    r.init.shutdown(r.now);
    r.step();
    for c in &conns {
        assert_eq!(logouts(&r, *c), 1, "{c:?}");
    }
    assert_eq!(r.closes.len(), 1, "a answered its logout");
    assert!(!r.init.finished(), "b did not");
    r.command(read(7, 1, 512));
    assert_eq!(r.completed(7)[0].what.status, Outcome::Retry);
    // b's logout times out.
    r.run_ms(120_000);
    assert!(r.init.finished());
    assert_eq!(r.closes.len(), 2);
    assert_eq!(r.connects.len(), 2, "nothing reconnects");
    assert_eq!(r.init.poll_timeout(), None);
}

/// A one-off discovery whose client went away reports to nobody and
/// creates nothing.
#[test]
fn one_off_discover_after_client_gone() {
    let mut r = Rig::new(1);
    r.portal(addr(D)).send_targets = send_targets();
    let cfg =
        super::TargetConfig::new("x", crate::negotiate::SessionKind::Discovery, Some(addr(D)));
    r.discover(super::ClientId(9), cfg);
    r.init.client_gone(super::ClientId(9));
    r.run_ms(60_000);
    assert!(r.discovered.is_empty());
    assert!(r.discover_failed.is_empty());
    assert_eq!(r.connects.len(), 1);
    assert!(r.status().is_empty());
}

/// Commands held for a session that is then removed go back at once.
#[test]
fn removing_a_down_session_gives_held_commands_back() {
    let mut r = logged_in();
    let conn = r.conn_ids()[0];
    r.portal(addr(P)).refuse = true;
    r.drop_conn(conn, super::CloseCause::Reset);
    r.command(read(3, 0, 512));
    assert!(r.completions.is_empty());
    r.reload(config(vec![]));
    let c = r.completed(3);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].what.status, Outcome::Retry);
    assert_eq!(c[0].at, r.now);
    assert_eq!(r.detaches, vec![(0, None)]);
    assert!(r.status().is_empty());
}

/// A command that arrives while a changed session is logging out is held
/// and sent on the new login.
#[test]
fn command_during_restart_logout_is_held_for_the_new_login() {
    let mut r = logged_in();
    let c1 = r.conn_ids()[0];
    r.portal(addr(P)).answer_logout = false;
    let mut b = block("disk", addr(P));
    b.prefs.max_burst = 65_536;
    r.reload(config(vec![b]));
    assert_eq!(logouts(&r, c1), 1);
    assert_eq!(r.status_of("disk").state, State::LoggingOut);
    r.command(read(8, 0, 512));
    assert!(r.completions.is_empty(), "held");
    assert_eq!(scsi_commands(&r, c1), 0, "not on the old connection");
    r.portal(addr(P)).answer_logout = true;
    r.run_ms(60_000);
    assert_eq!(r.connects.len(), 2);
    let c2 = r.connects[1].what.0;
    assert_eq!(scsi_commands(&r, c2), 1);
    let c = r.completed(8);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].what.status, Outcome::Good);
}

/// A redirect to a name (not a numeric address) fails the login as for
/// good: the longest wait.
#[test]
fn redirect_to_a_name_fails() {
    let mut r = Rig::new(1);
    r.portal(addr(P)).login = LoginPlan::Redirect {
        addr: "target.example.org:3260".into(),
        permanent: false,
    };
    let mut b = block("disk", addr(P));
    b.timers.reconnect_max = Duration::from_secs(30);
    r.reload(config(vec![b]));
    r.run_ms(0);
    assert_eq!(r.connects.len(), 1);
    let st = r.status_of("disk");
    assert_eq!(st.state, State::Failed);
    assert!(st.last_error.unwrap().contains("numeric"));
    let next = r.init.poll_timeout().unwrap();
    assert!(next >= r.at(30_000), "{:?}", next - r.t0);
}

/// The target asks for a logout: the initiator logs out and comes back
/// after DefaultTime2Wait.
#[test]
fn target_requested_logout_comes_back_after_time2wait() {
    let mut r = logged_in();
    let c1 = r.conn_ids()[0];
    let t2w = r.status_of("disk").params.unwrap().default_time2wait;
    r.async_msg(c1, 1, 5, Vec::new());
    assert_eq!(logouts(&r, c1), 1);
    assert_eq!(r.closes.len(), 1);
    let st = r.status_of("disk");
    assert_eq!(st.state, State::Failed);
    assert_eq!(
        r.init.poll_timeout(),
        Some(r.now + Duration::from_secs(u64::from(t2w)))
    );
    let next = r.init.poll_timeout().unwrap();
    r.run_until(next);
    assert_eq!(r.connects.len(), 2);
    assert_eq!(r.status_of("disk").state, State::LoggedIn);
    assert!(r.detaches.is_empty());
}

/// REPORTED LUNS DATA HAS CHANGED in an async event: probe the target.
#[test]
fn lun_inventory_change_probes_again() {
    let mut r = logged_in();
    let c1 = r.conn_ids()[0];
    let mut sense = vec![0u8; 18];
    sense[0] = 0x70;
    sense[2] = 6;
    sense[7] = 10;
    sense[12] = 0x3f;
    sense[13] = 0x0e;
    let mut data = (sense.len() as u16).to_be_bytes().to_vec();
    data.extend_from_slice(&sense);
    r.async_msg(c1, 0, 0, data);
    assert_eq!(r.probes, vec![(0, None), (0, None)]);
    assert_eq!(r.status_of("disk").state, State::LoggedIn);
}

/// A target that stops answering pings loses its connection after
/// nop_interval + nop_timeout, and the commands in flight are reissued.
#[test]
fn dead_connection_is_detected_by_ping() {
    let mut r = Rig::new(1);
    let mut b = block("disk", addr(P));
    b.timers.nop_interval = Duration::from_secs(5);
    b.timers.nop_timeout = Duration::from_secs(3);
    r.reload(config(vec![b]));
    r.run_ms(0);
    let c1 = r.conn_ids()[0];
    // Pings answered: the connection stays.
    r.run_ms(20_000);
    assert!(r.count_on(c1, |p| matches!(p, Pdu::NopOut(_))) >= 3);
    assert!(r.closes.is_empty());
    // Now the target end goes silent: it neither reads nor answers.
    let silent = r.now;
    r.forget_conn(c1);
    r.command(read(1, 0, 512));
    r.run_until(silent + Duration::from_secs(9));
    assert_eq!(r.closes.len(), 1, "closed for the missing ping answer");
    assert_eq!(r.closes[0].what, c1);
    let lost = r.closes[0].at - silent;
    assert!(lost <= Duration::from_secs(8), "{lost:?}");
    r.run_until(silent + Duration::from_secs(12));
    assert_eq!(r.status_of("disk").state, State::LoggedIn);
    assert_eq!(r.completed(1).len(), 1);
    assert_eq!(r.completed(1)[0].what.status, Outcome::Good);
}

/// A discovery block removed while its SendTargets is out creates no
/// sessions when the answer comes in after all.
#[test]
fn discovery_answer_after_removal_creates_nothing() {
    let mut r = Rig::new(1);
    r.portal(addr(D)).send_targets = send_targets();
    r.portal(addr(D)).hold_text = true;
    r.reload(config(vec![discovery_block()]));
    r.run_ms(0);
    let dc = r.conn_ids()[0];
    assert_eq!(r.count_on(dc, |p| matches!(p, Pdu::TextReq(_))), 1);
    // Removed before the answer; the target answers the SendTargets
    // before the Logout (both are on the wire).
    r.portal(addr(D)).answer_logout = false;
    r.reload(config(vec![]));
    assert_eq!(logouts(&r, dc), 1);
    r.release(dc);
    r.run_ms(60_000);
    assert_eq!(r.connects.len(), 1, "nothing connects");
    assert!(
        r.status().is_empty(),
        "{:?}",
        r.status().iter().map(|s| &s.name).collect::<Vec<_>>()
    );
}

/// The control case of the test above: a late SendTargets answer while
/// the block is still configured creates the sessions.
#[test]
fn discovery_answer_while_running_still_creates_sessions() {
    let mut r = Rig::new(1);
    r.portal(addr(D)).send_targets = send_targets();
    r.portal(addr(D)).hold_text = true;
    r.reload(config(vec![discovery_block()]));
    r.run_ms(0);
    let dc = r.conn_ids()[0];
    assert_eq!(r.status().len(), 1);
    r.run_ms(1_000);
    r.release(dc);
    r.run_ms(2_000);
    assert_eq!(r.status().len(), 3);
    assert_eq!(r.init.counts().logged_in, 3);
}

/// The kernel reuses tags: a new command under the tag of one that was
/// reissued and then completed starts with a clean count.
#[test]
fn reissue_count_is_per_command_not_per_tag() {
    let mut r = Rig::new(1);
    r.portal(addr(P)).answer_scsi = false;
    let mut b = block("disk", addr(P));
    b.timers.reissue_limit = 3;
    r.reload(config(vec![b]));
    r.run_ms(0);
    r.command(read(5, 0, 512));
    let c1 = r.conn_ids()[0];
    let c2 = lose_and_relogin(&mut r, c1);
    assert_eq!(scsi_commands(&r, c2), 1);
    // Answered on the third connection.
    r.portal(addr(P)).answer_scsi = true;
    let c3 = lose_and_relogin(&mut r, c2);
    assert_eq!(scsi_commands(&r, c3), 1);
    assert_eq!(r.completed(5).len(), 1);
    assert_eq!(r.completed(5)[0].what.status, Outcome::Good);
    // A new command under tag 5, and its connection goes down once.
    r.portal(addr(P)).answer_scsi = false;
    r.command(read(5, 0, 1024));
    assert_eq!(scsi_commands(&r, c3), 2);
    let c4 = lose_and_relogin(&mut r, c3);
    assert_eq!(
        r.completed(5).len(),
        1,
        "the new command went back on its first loss: {:?}",
        r.completions
            .iter()
            .map(|c| c.what.status)
            .collect::<Vec<_>>()
    );
    assert_eq!(scsi_commands(&r, c4), 1, "reissued");
}

/// A command's answer crossing the Logout Request of a restart: the
/// command completes once, GOOD, whichever connection it comes from.
#[test]
fn answer_crossing_a_restart_logout_completes_once() {
    let mut r = logged_in();
    let c1 = r.conn_ids()[0];
    r.portal(addr(P)).hold_scsi = true;
    r.command(read(6, 0, 512));
    assert_eq!(scsi_commands(&r, c1), 1);
    r.portal(addr(P)).hold_scsi = false;
    r.portal(addr(P)).answer_logout = false;
    let mut b = block("disk", addr(P));
    b.prefs.max_burst = 65_536;
    r.reload(config(vec![b]));
    assert_eq!(logouts(&r, c1), 1);
    // The answer the target sent before it read the Logout Request.
    r.release(c1);
    r.portal(addr(P)).answer_logout = true;
    r.run_ms(30_000);
    assert_eq!(r.status_of("disk").state, State::LoggedIn);
    let c = r.completed(6);
    assert_eq!(
        c.iter().map(|c| c.what.status).collect::<Vec<_>>(),
        vec![Outcome::Good]
    );
}

/// A configuration with a block twice is refused whole.
#[test]
fn reload_refuses_duplicate_blocks() {
    let mut r = logged_in();
    let cfg = config(vec![block("new", addr(P)), block("new", addr(P))]);
    assert_eq!(
        r.init.reload(cfg, r.now),
        Err(super::ReloadError::DuplicateBlock("new".into()))
    );
    r.step();
    assert_eq!(r.status().len(), 1, "nothing changed");
    assert_eq!(r.status_of("disk").state, State::LoggedIn);
    assert!(r.closes.is_empty());
}

/// The block's local address and initiator name reach the connection and
/// the login; a new default initiator name applies to blocks without one.
#[test]
fn local_address_and_initiator_names() {
    let mut r = Rig::new(1);
    let mut a = block("a", addr(P));
    a.local = Some("127.0.0.77".parse().unwrap());
    a.initiatorname = Some("iqn.2026-11.org.example:mine".into());
    let b = block("b", addr("127.0.0.5:3260"));
    let mut cfg = config(vec![a, b]);
    cfg.initiatorname = Some("iqn.2026-11.org.example:default".into());
    r.reload(cfg);
    r.run_ms(0);
    assert_eq!(r.connects.len(), 2);
    for (i, c) in r.connects.iter().enumerate() {
        let k = keys(&r.logins_on(c.what.0)[0].data);
        if c.what.1 == addr(P) {
            assert_eq!(r.locals[i], Some("127.0.0.77".parse().unwrap()));
            assert_eq!(
                val(&k, "InitiatorName"),
                Some("iqn.2026-11.org.example:mine")
            );
        } else {
            assert_eq!(r.locals[i], None);
            assert_eq!(
                val(&k, "InitiatorName"),
                Some("iqn.2026-11.org.example:default")
            );
        }
    }
    assert_eq!(r.init.initiatorname(), "iqn.2026-11.org.example:default");
}

/// A login that timed out once connected may still be answered by a slow
/// target; with the same ISID it would reinstate the session over the
/// next login. The next login uses another ISID qualifier.
#[test]
fn login_timeout_moves_the_isid_on() {
    let mut r = Rig::new(1);
    r.portal(addr(P)).logins.push_back(LoginPlan::Silent);
    let mut b = block("disk", addr(P));
    b.timers.login = Duration::from_secs(5);
    r.reload(config(vec![b]));
    r.run_ms(0);
    let c1 = r.connects[0].what.0;
    let first = r.logins_on(c1)[0].isid;
    r.run_ms(7_000);
    assert_eq!(r.status_of("disk").state, State::LoggedIn);
    let c2 = r.connects[1].what.0;
    let second = r.logins_on(c2)[0].isid;
    assert_eq!(first[..4], second[..4]);
    let q = |i: [u8; 6]| u16::from_be_bytes([i[4], i[5]]);
    assert_eq!(
        q(second),
        q(first).wrapping_add(super::sess::ISID_GENERATION_STEP)
    );
    assert_eq!(
        r.status_of("disk").isid,
        second,
        "show lists the ISID in use"
    );
}

/// `show`'s counters: bytes, PDUs, latency; the unit attention that
/// follows a login is counted apart, a real error as one.
#[test]
fn statistics_count_what_happened() {
    let mut r = Rig::new(1);
    let ua = crate::scsi::fixed_sense(crate::scsi::KEY_UNIT_ATTENTION, (0x29, 0));
    let medium = crate::scsi::fixed_sense(0x03, (0x11, 0));
    r.portal(addr(P)).sense.extend([ua, medium]);
    r.reload(config(vec![block("disk", addr(P))]));
    r.run_ms(0);
    r.command(read(1, 0, 512));
    r.command(read(2, 0, 512));
    r.command(read(3, 0, 4096));
    let st = r.status_of("disk").stats;
    assert_eq!(st.commands, 3);
    assert_eq!(st.unit_attentions, 1);
    assert_eq!(st.errors, 1);
    assert_eq!(st.bytes_read, 4096);
    assert_eq!(st.latency_samples, 3);
    assert_eq!(st.logins, 1);
    // Login (2), three commands; and as many answers.
    assert_eq!(st.pdus_out, 5, "{st:?}");
    assert_eq!(st.pdus_in, 5, "{st:?}");
    assert_eq!(st.reconnects, 0);
    // Counters survive the connection.
    let c = r.conn_ids()[0];
    r.drop_conn(c, super::CloseCause::Reset);
    let st2 = r.status_of("disk").stats;
    assert_eq!(st2.reconnects, 1);
    assert_eq!(st2.pdus_in, st.pdus_in);
    let s = r.status_of("disk");
    assert!(
        s.next_attempt.is_some(),
        "when the next login is due: {s:?}"
    );
}

/// Names from the control socket are checked again, whatever iscsictl did.
#[test]
fn names_from_the_control_socket_are_checked() {
    let mut r = Rig::new(1);
    let mut b = block("disk", addr(P));
    b.targetname = Some("iqn.2026-12.org.example:\u{1b}disk".into());
    assert!(r.init.reload(config(vec![b]), r.now).is_err());
    let mut b = block("", addr(P));
    b.targetname = Some(TARGET.into());
    assert!(r.init.reload(config(vec![b]), r.now).is_err());
    assert!(r.status().is_empty(), "nothing was started");
    let mut d =
        super::TargetConfig::new("d", crate::negotiate::SessionKind::Discovery, Some(addr(P)));
    d.initiatorname = Some("iqn.2026-12.org.example:\u{7}".into());
    assert!(matches!(
        r.init.discover(super::ClientId(1), d, r.now),
        Err(super::DiscoverError::BadInitiatorName(_))
    ));
}

/// With the shell placing read data (the engine's arena slots), a kernel
/// READ's data goes there and not into the completion; a kernel READ
/// CAPACITY's answer, which the core reads for LUN sizes, is gathered by
/// the core and handed over in the completion as before.
#[test]
fn kernel_read_data_is_placed_but_read_capacity_is_read_by_the_core() {
    let mut r = logged_in();
    let before = r.status_of("disk").stats.bytes_read;
    r.placing = true;
    r.command(read(5, 0, 4096));
    let c = r.completed(5);
    assert_eq!(c.len(), 1);
    assert_eq!((c[0].what.status, c[0].what.placed), (Outcome::Good, 4096));
    assert!(c[0].what.data.is_empty());
    assert_eq!(r.placed.get(&5), Some(&vec![0xa5; 4096]));
    let mut rc16 = read(6, 0, 32);
    rc16.cdb = vec![0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0];
    r.command(rc16);
    let c = r.completed(6);
    assert_eq!(c.len(), 1);
    assert_eq!((c[0].what.placed, c[0].what.data.len()), (0, 32));
    assert!(!r.placed.contains_key(&6));
    assert_eq!(r.status_of("disk").stats.bytes_read, before + 4096 + 32);
}
