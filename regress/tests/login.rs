//! Login and negotiation against real targets (tgtd and istgt): AuthMethod
//! None, CHAP, mutual CHAP, wrong secrets, digests, small segment and burst
//! lengths, InitialR2T and ImmediateData both ways, discovery.

use std::time::Duration;

use regress::harness::{
    pattern, roundtrip, Rig, TargetKind, CHAP_SECRET, CHAP_USER, IQN_AUTH, IQN_DISK,
    ISTGT_USE_DIGEST, MUTUAL_SECRET, MUTUAL_USER,
};

/// Disks the disk target shows: tgt has LUN 1 and 2 (LUN 0 is its
/// controller); istgt has LUN 0, 1 and 2.
fn disk_count(k: TargetKind) -> usize {
    match k {
        TargetKind::Tgt => 2,
        TargetKind::Istgt => 3,
    }
}

fn auth_block(rig: &Rig, extra: &str) -> String {
    format!(
        "target auth {{\n\ttargetaddr 127.0.0.1 port {}\n\ttargetname \"{IQN_AUTH}\"\n{extra}}}\n",
        rig.target.port
    )
}

fn param<'a>(show: &'a str, key: &str) -> &'a str {
    show.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} not in:\n{show}"))
}

fn none(k: TargetKind) {
    let rig = Rig::new(k, &[]);
    rig.reload(&rig.disk_block("disk", ""));
    let disks = rig.wait_disks(disk_count(k));
    let s = rig.wait_show("disk", "logged in", Duration::from_secs(10));
    assert!(s.contains(IQN_DISK), "{s}");
    roundtrip(&rig, &disks[0], 8, &pattern(1, 64 << 10));
}

fn chap(k: TargetKind, mutual: bool) {
    let rig = Rig::new(k, &[]);
    let mut extra = format!("\tchap name {CHAP_USER} secret \"{CHAP_SECRET}\"\n");
    if mutual {
        extra += &format!("\tchap mutual name {MUTUAL_USER} secret \"{MUTUAL_SECRET}\"\n");
    }
    rig.reload(&auth_block(&rig, &extra));
    rig.wait_show("auth", "logged in", Duration::from_secs(15));
    let n = if k == TargetKind::Tgt { 1 } else { 2 };
    let disks = rig.wait_disks(n);
    let d = disks.iter().find(|d| d.lun == 1).expect("auth LUN 1");
    rig.emu.write(d, 0, &pattern(2, 4096)).expect("write");
    assert_eq!(rig.emu.read(d, 0, 8).expect("read"), pattern(2, 4096));
}

fn wrong_secret(k: TargetKind) {
    let rig = Rig::new(k, &[]);
    rig.reload(&auth_block(
        &rig,
        &format!("\tchap name {CHAP_USER} secret \"wrongsecret123\"\n"),
    ));
    // istgt answers "authentication failure"; tgt hangs up.
    let s = rig.wait_show("auth", "authentication", Duration::from_secs(15));
    assert!(s.contains("failed"), "{s}");
    assert!(rig.emu.disks().is_empty());
    // Without any CHAP configured, the clear message says so.
    rig.reload(&auth_block(&rig, ""));
    rig.wait_show("auth", "Last error:", Duration::from_secs(15));
}

fn wrong_mutual(k: TargetKind) {
    let rig = Rig::new(k, &[]);
    let extra = format!(
        "\tchap name {CHAP_USER} secret \"{CHAP_SECRET}\"\n\tchap mutual name {MUTUAL_USER} secret \"notthesecret1\"\n"
    );
    rig.reload(&auth_block(&rig, &extra));
    // The target proves a different secret: we refuse it.
    let s = rig.wait_show("auth", "CHAP", Duration::from_secs(15));
    assert!(!s.contains("logged in"), "{s}");
    assert!(rig.emu.disks().is_empty());
}

fn digests(k: TargetKind) {
    // tgt answers None to a CRC32C-only offer unless it prefers CRC32C.
    let tparams: &[(&str, &str)] = match k {
        TargetKind::Tgt => &[
            ("HeaderDigest", "CRC32C,None"),
            ("DataDigest", "CRC32C,None"),
        ],
        TargetKind::Istgt => &[],
    };
    let rig = Rig::new(k, tparams);
    rig.reload(&rig.disk_block("disk", "\theaderdigest crc32c\n\tdatadigest crc32c\n"));
    let disks = rig.wait_disks(disk_count(k));
    let s = rig.show("disk");
    assert_eq!(param(&s, "HeaderDigest"), "CRC32C", "{s}");
    assert_eq!(param(&s, "DataDigest"), "CRC32C", "{s}");
    roundtrip(&rig, &disks[0], 4096, &pattern(3, 1 << 20));
}

/// A digest we require and the target does not give is a clear login
/// failure, never a session without it.
#[test]
fn tgt_digest_required_but_refused() {
    let rig = Rig::new(TargetKind::Tgt, &[("HeaderDigest", "None")]);
    rig.reload(&rig.disk_block("disk", "\theaderdigest crc32c\n"));
    let s = rig.wait_show("disk", "HeaderDigest", Duration::from_secs(10));
    assert!(s.contains("failed"), "{s}");
    assert!(rig.emu.disks().is_empty());
    // "any" takes what the target prefers and works.
    rig.reload(&rig.disk_block("disk", "\theaderdigest any\n\tdatadigest any\n"));
    let disks = rig.wait_disks(2);
    assert_eq!(param(&rig.show("disk"), "HeaderDigest"), "None");
    roundtrip(&rig, &disks[0], 0, &pattern(8, 65536));
}

/// istgt with `UseDigest Header Data` answers Reject to our offer of
/// None: we log in again offering CRC32C, and `show` says why.
#[test]
fn istgt_digest_none_rejected() {
    let rig = Rig::new(TargetKind::Istgt, &[(ISTGT_USE_DIGEST, "Header Data")]);
    rig.reload(&rig.disk_block("disk", ""));
    let disks = rig.wait_disks(disk_count(TargetKind::Istgt));
    let s = rig.wait_show("disk", "logged in", Duration::from_secs(10));
    assert_eq!(
        param(&s, "HeaderDigest"),
        "CRC32C (the target rejected None)"
    );
    assert_eq!(param(&s, "DataDigest"), "CRC32C (the target rejected None)");
    roundtrip(&rig, &disks[0], 0, &pattern(12, 65536));
    let log = rig.daemon.log_text();
    assert!(log.contains("target rejected digest None"), "{log}");
}

fn small_segments(k: TargetKind) {
    let tparams: &[(&str, &str)] = match k {
        TargetKind::Tgt => &[
            ("MaxRecvDataSegmentLength", "512"),
            ("MaxXmitDataSegmentLength", "512"),
        ],
        TargetKind::Istgt => &[("MaxRecvDataSegmentLength", "512")],
    };
    let rig = Rig::new(k, tparams);
    rig.reload(&rig.disk_block("disk", "\tmaxrecvdatasegmentlength 512\n"));
    let disks = rig.wait_disks(disk_count(k));
    let s = rig.show("disk");
    assert_eq!(param(&s, "MaxRecvDataSegmentLength"), "512", "{s}");
    assert_eq!(param(&s, "MaxXmitDataSegmentLength"), "512", "{s}");
    roundtrip(&rig, &disks[0], 100, &pattern(4, 256 << 10));
}

fn r2t_modes(k: TargetKind, initial_r2t: bool, immediate: bool) {
    let yn = |b| if b { "Yes" } else { "No" };
    let tparams: Vec<(&str, &str)> = match k {
        TargetKind::Tgt => vec![
            ("InitialR2T", yn(initial_r2t)),
            ("ImmediateData", yn(immediate)),
        ],
        TargetKind::Istgt => vec![],
    };
    let rig = Rig::new(k, &tparams);
    let extra = format!(
        "\tinitialr2t {}\n\timmediatedata {}\n",
        yn(initial_r2t).to_lowercase(),
        yn(immediate).to_lowercase()
    );
    rig.reload(&rig.disk_block("disk", &extra));
    let disks = rig.wait_disks(disk_count(k));
    let s = rig.show("disk");
    // InitialR2T is OR, ImmediateData is AND: istgt insists on Yes/Yes.
    let want_r2t = initial_r2t || k == TargetKind::Istgt;
    assert_eq!(param(&s, "InitialR2T"), yn(want_r2t), "{s}");
    assert_eq!(param(&s, "ImmediateData"), yn(immediate), "{s}");
    for (i, len) in [512usize, 4096, 65536, 300 << 10, 1 << 20]
        .into_iter()
        .enumerate()
    {
        roundtrip(
            &rig,
            &disks[0],
            2048 * i as u64,
            &pattern(10 + i as u64, len),
        );
    }
}

fn small_burst(k: TargetKind) {
    let rig = Rig::new(k, &[]);
    rig.reload(&rig.disk_block(
        "disk",
        "\tmaxburstlength 4096\n\tfirstburstlength 2048\n\tinitialr2t no\n",
    ));
    let disks = rig.wait_disks(disk_count(k));
    let s = rig.show("disk");
    assert_eq!(param(&s, "MaxBurstLength"), "4096", "{s}");
    assert_eq!(param(&s, "FirstBurstLength"), "2048", "{s}");
    // 1 MiB in bursts of 4 KiB: 256 R2Ts for one command.
    roundtrip(&rig, &disks[0], 0, &pattern(5, 1 << 20));
    roundtrip(&rig, &disks[0], 7777, &pattern(6, 12800));
}

fn discovery(k: TargetKind) {
    let rig = Rig::new(k, &[]);
    rig.ctl.write_config("# empty\n");
    let out = rig.ctl.ok(&["discover", &rig.target.addr()]);
    assert!(out.contains(&format!("TargetName: {IQN_DISK}")), "{out}");
    assert!(out.contains(&format!("TargetName: {IQN_AUTH}")), "{out}");
    assert!(
        out.contains(&format!("127.0.0.1:{}", rig.target.port)),
        "{out}"
    );
    // A discovery entry creates the sessions it finds.
    let conf = format!(
        "target disc {{\n\tdiscovery\n\ttargetaddr 127.0.0.1 port {}\n}}\n",
        rig.target.port
    );
    rig.reload(&conf);
    let disks = rig.wait_disks(disk_count(k));
    let name = format!("disc/{IQN_DISK}");
    rig.wait_show(&name, "logged in", Duration::from_secs(10));
    roundtrip(&rig, &disks[0], 0, &pattern(7, 8192));
    // Reloading asks the portal again and adds nothing twice.
    rig.reload(&conf);
    std::thread::sleep(Duration::from_secs(1));
    let summary = rig.ctl.ok(&["show", "summary"]);
    assert_eq!(summary.matches("disc/").count(), 2, "{summary}");
    assert_eq!(rig.emu.disks().len(), disk_count(k));
    // Taking the discovery entry away takes its sessions with it.
    rig.reload("# nothing\n");
    rig.emu
        .wait_disks(|d| d.is_empty(), Duration::from_secs(15))
        .expect("disks detached");
}

macro_rules! both {
    ($($name:ident => $body:expr;)*) => {
        mod tgt { use super::*; $( #[test] fn $name() { let k = TargetKind::Tgt; $body(k) } )* }
        mod istgt { use super::*; $( #[test] fn $name() { let k = TargetKind::Istgt; $body(k) } )* }
    };
}

both! {
    auth_none => none;
    chap_one_way => |k| chap(k, false);
    chap_mutual => |k| chap(k, true);
    chap_wrong_secret => wrong_secret;
    chap_wrong_mutual_secret => wrong_mutual;
    digests_crc32c => digests;
    mrdsl_512 => small_segments;
    initial_r2t_yes_immediate_no => |k| r2t_modes(k, true, false);
    initial_r2t_no_immediate_yes => |k| r2t_modes(k, false, true);
    initial_r2t_no_immediate_no => |k| r2t_modes(k, false, false);
    small_max_burst => small_burst;
    discovery_sendtargets => discovery;
}
