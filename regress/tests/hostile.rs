//! iscsid against a target that misbehaves on purpose (regress::badtarget):
//! after every fault the daemon is still running, the session comes back,
//! the emulated kernel's I/O returns the right data within its command
//! timeout, and acknowledged writes are on the target's RAM disk.

use std::time::{Duration, Instant};

use iscsid::proto::pdu::{tmf, tmf_rsp};
use regress::badtarget::{BadConfig, BadTarget, Fault, BLOCK, IQN_BAD};
use regress::emulator::{DiskInfo, EmuConfig, Emulator};
use regress::harness::{pattern, wait_for, Ctl, Daemon, Scratch};

/// Longest any one emulated I/O may take, retries included; a hang
/// shows up as EmuError::Timeout instead of a stuck test.
const IO_LIMIT: Duration = Duration::from_secs(15);

struct Bed {
    // Field order is drop order: the daemon logs out before the target goes.
    ctl: Ctl,
    daemon: Daemon,
    emu: Emulator,
    tgt: BadTarget,
    _dir: Scratch,
}

impl Bed {
    /// The bad target, the emulator and iscsid with one session ("bad")
    /// to the target's first portal; `extra` goes into the target block.
    fn new(cfg: BadConfig, extra: &str) -> Bed {
        Self::with(BadTarget::start(cfg).expect("bad target"), extra)
    }

    fn with(tgt: BadTarget, extra: &str) -> Bed {
        let dir = Scratch::new("hostile");
        let dev = dir.join("vscsi0.sock");
        let emu = Emulator::listen_with(
            &dev,
            EmuConfig {
                io_timeout: IO_LIMIT,
                ..EmuConfig::default()
            },
        )
        .expect("emulator");
        let daemon = Daemon::start(&dev);
        let ctl = daemon.ctl();
        ctl.write_config(&format!(
            "target bad {{\n\ttargetaddr 127.0.0.1 port {}\n\ttargetname \"{IQN_BAD}\"\n{extra}}}\n",
            tgt.port
        ));
        let out = ctl.ok(&["reload"]);
        assert!(out.contains("command successful"), "{out}");
        Bed {
            ctl,
            daemon,
            emu,
            tgt,
            _dir: dir,
        }
    }

    fn context(&self) -> String {
        format!(
            "show:\n{}\ntarget notes:\n{}\niscsid log:\n{}",
            String::from_utf8_lossy(&self.ctl.run(&["show", "session", "bad"]).stdout),
            self.tgt.notes().join("\n"),
            self.daemon.log_text()
        )
    }

    fn disks(&self, n: usize) -> Vec<DiskInfo> {
        match self
            .emu
            .wait_disks(|d| d.len() >= n, Duration::from_secs(15))
        {
            Ok(d) => d,
            Err(e) => panic!("expected {n} disks: {e:?}\n{}", self.context()),
        }
    }

    fn show(&self) -> String {
        self.ctl.ok(&["show", "session", "bad"])
    }

    /// Waits until the session is logged in after `n` logins in all.
    fn wait_logins(&self, n: u64) -> String {
        let want = format!("; {n} logins");
        let got = wait_for(Duration::from_secs(15), || {
            let s = self.show();
            (s.contains("logged in") && s.contains(&want)).then_some(s)
        });
        got.unwrap_or_else(|| panic!("never logged in {n} times\n{}", self.context()))
    }

    /// The daemon and both of its children are still running.
    fn assert_alive(&mut self) {
        assert!(self.daemon.running(), "iscsid exited\n{}", self.context());
        assert_eq!(
            self.daemon.children().len(),
            2,
            "relay or engine gone\n{}",
            self.context()
        );
    }

    fn read(&self, d: &DiskInfo, lba: u64, blocks: u32) -> Vec<u8> {
        let t = Instant::now();
        let r = self.emu.read(d, lba, blocks);
        let data = r.unwrap_or_else(|e| panic!("read at {lba}: {e}\n{}", self.context()));
        assert!(t.elapsed() < IO_LIMIT);
        data
    }

    fn write(&self, d: &DiskInfo, lba: u64, data: &[u8]) {
        if let Err(e) = self.emu.write(d, lba, data) {
            panic!("write at {lba}: {e}\n{}", self.context());
        }
    }

    /// What the target's RAM disk holds at `lba`.
    fn on_target(&self, lun: u32, lba: u64, len: usize) -> Vec<u8> {
        self.tgt
            .disk(lun, lba as usize * BLOCK, len)
            .expect("range on the RAM disk")
    }

    fn log_has(&self, what: &str) {
        let log = self.daemon.log_text();
        assert!(log.contains(what), "log lacks {what:?}:\n{log}");
    }
}

/// Puts `data` on the RAM disk behind iscsid's back, arms `f`, reads it
/// through iSCSI, and checks that the session had to log in again.
fn read_through_fault(f: Fault, cfg: BadConfig, extra: &str, blocks: u32, log: &str) -> Bed {
    let mut bed = Bed::new(cfg, extra);
    let disk = bed.disks(1).remove(0);
    let data = pattern(u64::from(blocks), blocks as usize * BLOCK);
    bed.tgt.fill(0, 1000 * BLOCK, &data);
    bed.tgt.arm(f.clone());
    let got = bed.read(&disk, 1000, blocks);
    assert!(got == data, "read after {f:?} returned other data");
    assert_eq!(bed.tgt.fired(), [f]);
    bed.wait_logins(2);
    bed.log_has(log);
    bed.assert_alive();
    // And the new session works as well as the old one.
    let more = pattern(99, 16 * BLOCK);
    bed.write(&disk, 5000, &more);
    assert_eq!(bed.on_target(0, 5000, more.len()), more);
    bed
}

#[test]
fn data_in_for_an_itt_never_issued() {
    read_through_fault(
        Fault::StrayDataIn,
        BadConfig::default(),
        "",
        8,
        "Data-In for unknown itt",
    );
}

#[test]
fn scsi_response_for_an_itt_never_issued() {
    read_through_fault(
        Fault::StrayResponse,
        BadConfig::default(),
        "",
        8,
        "SCSI Response for unknown itt",
    );
}

#[test]
fn skipped_datasn() {
    // 64 KiB in 8 KiB Data-In PDUs; the second one says DataSN 2.
    read_through_fault(
        Fault::SkipDataSn,
        BadConfig::default(),
        "",
        128,
        "DataSN 2, expected 1",
    );
}

#[test]
fn corrupt_data_digest() {
    let cfg = BadConfig {
        digests: true,
        ..BadConfig::default()
    };
    let bed = read_through_fault(
        Fault::CorruptDataDigest,
        cfg,
        "\theaderdigest crc32c\n\tdatadigest crc32c\n",
        32,
        "data digest error",
    );
    let logins = bed.tgt.logins();
    assert!(
        logins.iter().all(|l| l.header_digest && l.data_digest),
        "{logins:?}"
    );
    let s = bed.show();
    assert!(s.contains("DataDigest=CRC32C"), "{s}");
}

#[test]
fn connection_dropped_mid_read() {
    read_through_fault(
        Fault::DropOnRead,
        BadConfig::default(),
        "",
        16,
        "connection lost",
    );
}

/// A write whose connection dies under it is acknowledged only once it
/// is on the target, and then it is there.
fn write_through_drop(persist: bool) {
    let mut bed = Bed::new(BadConfig::default(), "");
    let disk = bed.disks(1).remove(0);
    bed.tgt.arm(Fault::DropMidWrite { persist });
    // Larger than FirstBurstLength: immediate, unsolicited and R2T data.
    let data = pattern(7 + u64::from(persist), 300 * BLOCK);
    let t = Instant::now();
    bed.write(&disk, 2048, &data);
    assert!(t.elapsed() < IO_LIMIT);
    assert!(bed.tgt.armed().is_empty(), "the fault never fired");
    assert!(
        bed.on_target(0, 2048, data.len()) == data,
        "acknowledged write is not on the target\n{}",
        bed.context()
    );
    assert!(bed.read(&disk, 2048, 300) == data);
    bed.wait_logins(2);
    bed.log_has("connection lost");
    bed.assert_alive();
}

#[test]
fn connection_dropped_before_write_data() {
    write_through_drop(false);
}

#[test]
fn connection_dropped_after_write_before_status() {
    write_through_drop(true);
}

#[test]
fn acknowledged_writes_survive_drops_under_load() {
    let mut bed = Bed::new(BadConfig::default(), "");
    let disk = bed.disks(1).remove(0);
    bed.tgt.arm(Fault::DropMidWrite { persist: false });
    bed.tgt.arm(Fault::DropMidWrite { persist: true });
    let acked: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::default();
    std::thread::scope(|sc| {
        for t in 0..4u64 {
            let (bed, disk, acked) = (&bed, &disk, &acked);
            sc.spawn(move || {
                for j in 0..12u64 {
                    let lba = t * 1000 + j * 32;
                    if bed.emu.write(disk, lba, &pattern(lba, 32 * BLOCK)).is_ok() {
                        acked.lock().expect("acked").push(lba);
                    }
                }
            });
        }
    });
    let acked = acked.into_inner().expect("acked");
    assert_eq!(acked.len(), 48, "writes failed\n{}", bed.context());
    for lba in acked {
        assert!(
            bed.on_target(0, lba, 32 * BLOCK) == pattern(lba, 32 * BLOCK),
            "acknowledged write at {lba} is not on the target"
        );
    }
    assert!(bed.tgt.armed().is_empty(), "{:?}", bed.tgt.armed());
    bed.wait_logins(3);
    bed.assert_alive();
}

#[test]
fn async_logout_request() {
    let mut bed = Bed::new(BadConfig::default(), "");
    let disk = bed.disks(1).remove(0);
    bed.tgt.arm(Fault::AsyncLogout);
    assert!(bed.tgt.wait_fired(Duration::from_secs(5)));
    // The daemon logs out, waits DefaultTime2Wait (2 s) and comes back.
    let s = bed.wait_logins(2);
    assert!(s.contains("TargetAddr: 127.0.0.1:"), "{s}");
    bed.log_has("target requests logout");
    let data = pattern(3, 8 * BLOCK);
    bed.write(&disk, 64, &data);
    assert_eq!(bed.read(&disk, 64, 8), data);
    assert!(
        bed.tgt.notes().iter().any(|n| n.contains("logged out")),
        "no Logout Request reached the target\n{}",
        bed.context()
    );
    bed.assert_alive();
}

#[test]
fn async_connection_drop() {
    let mut bed = Bed::new(BadConfig::default(), "");
    let disk = bed.disks(1).remove(0);
    bed.tgt.arm(Fault::AsyncDrop);
    assert!(bed.tgt.wait_fired(Duration::from_secs(5)));
    bed.wait_logins(2);
    bed.log_has("target dropped the connection");
    let data = pattern(4, 8 * BLOCK);
    bed.write(&disk, 64, &data);
    assert_eq!(bed.read(&disk, 64, 8), data);
    bed.assert_alive();
}

#[test]
fn login_redirect_to_second_portal() {
    let tgt = BadTarget::start(BadConfig::default()).expect("bad target");
    tgt.redirect(Some(false));
    let mut bed = Bed::with(tgt, "");
    let disk = bed.disks(1).remove(0);
    let logins = bed.tgt.logins();
    assert_eq!(logins.len(), 1, "{logins:?}");
    assert_eq!(logins[0].portal, 1, "logged in on the second portal");
    let s = bed.show();
    assert!(
        s.contains(&format!("TargetAddr: 127.0.0.1:{}", bed.tgt.port2)),
        "{s}"
    );
    assert!(
        bed.tgt.notes().iter().any(|n| n.contains("redirected")),
        "{}",
        bed.context()
    );
    bed.log_has("redirected to 127.0.0.1");
    let data = pattern(5, 16 * BLOCK);
    bed.write(&disk, 10, &data);
    assert_eq!(bed.on_target(0, 10, data.len()), data);
    bed.assert_alive();
}

#[test]
fn permanent_redirect_survives_reconnect() {
    let tgt = BadTarget::start(BadConfig::default()).expect("bad target");
    tgt.redirect(Some(true));
    let mut bed = Bed::with(tgt, "");
    let disk = bed.disks(1).remove(0);
    // Lose the connection: the new login goes straight to the new portal.
    bed.tgt.arm(Fault::DropOnRead);
    let data = pattern(6, 8 * BLOCK);
    bed.tgt.fill(0, 0, &data);
    assert_eq!(bed.read(&disk, 0, 8), data);
    bed.wait_logins(2);
    let portals: Vec<usize> = bed.tgt.logins().iter().map(|l| l.portal).collect();
    assert_eq!(portals, [1, 1]);
    let redirected = bed
        .tgt
        .notes()
        .iter()
        .filter(|n| n.starts_with("login redirected"))
        .count();
    assert_eq!(
        redirected,
        1,
        "asked the old portal again\n{}",
        bed.context()
    );
    bed.assert_alive();
}

#[test]
fn silent_target_for_a_while() {
    // Four seconds without a word, a command outstanding: slower than
    // usual, but the same session and the right data.
    let mut bed = Bed::new(BadConfig::default(), "");
    let disk = bed.disks(1).remove(0);
    let data = pattern(8, 8 * BLOCK);
    bed.tgt.fill(0, 300 * BLOCK, &data);
    bed.tgt.arm(Fault::Stall(Duration::from_secs(4)));
    let t = Instant::now();
    assert_eq!(bed.read(&disk, 300, 8), data);
    assert!(t.elapsed() >= Duration::from_secs(4), "{:?}", t.elapsed());
    let s = bed.show();
    assert!(s.contains("; 1 logins") && s.contains("logged in"), "{s}");
    assert_eq!(bed.tgt.connections(), 1);
    bed.assert_alive();
}

/// Short timers, so that the tests of what they do take seconds.
const PING_TIMERS: &str = "\tnopinterval 1\n\tnoptimeout 2\n";
const TMF_TIMERS: &str = "\tcommandtimeout 2\n\ttmftimeout 1\n";

#[test]
fn dead_target_is_detected_by_ping() {
    let mut bed = Bed::new(BadConfig::default(), PING_TIMERS);
    let disk = bed.disks(1).remove(0);
    let data = pattern(9, 8 * BLOCK);
    bed.tgt.fill(0, 400 * BLOCK, &data);
    bed.tgt.arm(Fault::Stall(Duration::from_secs(60)));
    let t = Instant::now();
    // One ping interval and one ping timeout find the dead connection;
    // the command is reissued on the next one.
    assert_eq!(bed.read(&disk, 400, 8), data);
    bed.wait_logins(2);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    bed.log_has("NOP-Out timeout");
    assert_eq!(bed.read(&disk, 400, 8), data);
    bed.assert_alive();
}

/// A READ the target never answers, with the task management steps
/// answered (or not) as armed; the read must still return the data.
fn unanswered_read(faults: &[Fault], log: &[&str], logins: u64) -> Bed {
    let mut bed = Bed::new(BadConfig::default(), TMF_TIMERS);
    let disk = bed.disks(1).remove(0);
    let data = pattern(12, 8 * BLOCK);
    bed.tgt.fill(0, 600 * BLOCK, &data);
    bed.tgt.arm(Fault::SwallowRead);
    for f in faults {
        bed.tgt.arm(f.clone());
    }
    assert_eq!(bed.read(&disk, 600, 8), data);
    assert!(bed.tgt.armed().is_empty(), "unfired: {:?}", bed.tgt.armed());
    bed.wait_logins(logins);
    for l in log {
        bed.log_has(l);
    }
    bed.assert_alive();
    bed
}

#[test]
fn unanswered_command_is_aborted() {
    unanswered_read(&[], &["ABORT TASK"], 1);
}

#[test]
fn failed_abort_escalates_to_lun_reset() {
    unanswered_read(
        &[Fault::AnswerTmf {
            function: tmf::ABORT_TASK,
            response: tmf_rsp::NOT_SUPPORTED,
        }],
        &["ABORT TASK", "LOGICAL UNIT RESET"],
        1,
    );
}

#[test]
fn unanswered_resets_escalate_to_a_new_connection() {
    // A target that answers pings but never the command nor any task
    // management: every step times out, then the connection goes.
    let bed = unanswered_read(
        &[
            Fault::IgnoreTmf {
                function: tmf::ABORT_TASK,
            },
            Fault::IgnoreTmf {
                function: tmf::LOGICAL_UNIT_RESET,
            },
            Fault::IgnoreTmf {
                function: tmf::TARGET_WARM_RESET,
            },
        ],
        &["ABORT TASK", "LOGICAL UNIT RESET", "TARGET WARM RESET"],
        2,
    );
    assert!(bed.tgt.connections() >= 2);
}

/// A block whose settings change while a command is in flight: the
/// session logs in again and the command is sent again there, not handed
/// back to the kernel with XS_RESET.
#[test]
fn commands_are_held_across_a_changed_block() {
    let bed = Bed::new(BadConfig::default(), "");
    let disk = bed.disks(1).remove(0);
    let data = pattern(14, 8 * BLOCK);
    bed.tgt.fill(0, 700 * BLOCK, &data);
    bed.tgt.arm(Fault::Stall(Duration::from_secs(2)));
    std::thread::scope(|sc| {
        let reader = sc.spawn(|| bed.read(&disk, 700, 8));
        wait_for(IO_LIMIT, || bed.tgt.armed().is_empty().then_some(())).expect("the stall fired");
        bed.ctl.write_config(&format!(
            "target bad {{\n\ttargetaddr 127.0.0.1 port {}\n\ttargetname \"{IQN_BAD}\"\n\tmaxburstlength 32768\n}}\n",
            bed.tgt.port
        ));
        bed.ctl.ok(&["reload"]);
        assert!(
            reader.join().expect("reader") == data,
            "read returned other data"
        );
    });
    bed.wait_logins(2);
    let stats = bed.ctl.ok(&["show", "vscsi", "stats"]);
    assert!(
        stats.contains(" 0 resets"),
        "a command went back to the kernel:\n{stats}"
    );
    bed.log_has("configuration changed");
}

#[test]
fn luns_changed_while_the_session_was_down() {
    let cfg = BadConfig {
        luns: vec![(0, 16384), (1, 2048)],
        ..BadConfig::default()
    };
    let mut bed = Bed::new(cfg, "");
    let disks = bed.disks(2);
    assert!(
        disks.iter().any(|d| d.lun == 0 && d.blocks == 16384),
        "{disks:?}"
    );
    // While the connection is down, LUN 1 goes and LUN 0 shrinks; the
    // target says nothing about it.
    bed.tgt.remove_lun(1);
    bed.tgt.resize_lun(0, 8192);
    bed.tgt.arm(Fault::AsyncDrop);
    bed.wait_logins(2);
    let got = bed
        .emu
        .wait_disks(
            |d| d.len() == 1 && d[0].lun == 0 && d[0].blocks == 8192,
            IO_LIMIT,
        )
        .unwrap_or_else(|e| panic!("disks not updated: {e:?}\n{}", bed.context()));
    let data = pattern(13, 8 * BLOCK);
    bed.write(&got[0], 8000, &data);
    assert_eq!(bed.on_target(0, 8000, data.len()), data);
    bed.log_has("lun 1 is gone");
    bed.log_has("lun 0 changed from 16384 to 8192 blocks");
    bed.assert_alive();
}

#[test]
fn new_lun_after_reported_luns_changed() {
    let mut bed = Bed::new(BadConfig::default(), "");
    let disk = bed.disks(1).remove(0);
    assert_eq!(disk.lun, 0);
    bed.tgt.add_lun(1, 2048);
    // The next command meets the unit attention; it is retried, and the
    // daemon has the bus rescanned.
    let data = pattern(10, 4 * BLOCK);
    bed.tgt.fill(0, 0, &data);
    assert_eq!(bed.read(&disk, 0, 4), data);
    let disks = bed.disks(2);
    let new = disks
        .iter()
        .find(|d| d.lun == 1)
        .unwrap_or_else(|| panic!("no LUN 1: {disks:?}"));
    assert_eq!((new.blocks, new.block_size), (2048, 512));
    let more = pattern(11, 64 * BLOCK);
    bed.write(new, 100, &more);
    assert_eq!(bed.on_target(1, 100, more.len()), more);
    assert_eq!(bed.on_target(0, 100, more.len()), vec![0; more.len()]);
    let s = bed.show();
    assert!(s.contains("; 1 logins"), "a rescan needs no new login\n{s}");
    bed.assert_alive();
}

#[test]
fn reads_under_load_through_faults() {
    let mut bed = Bed::new(BadConfig::default(), "");
    let disk = bed.disks(1).remove(0);
    let image = pattern(12, 4096 * BLOCK);
    bed.tgt.fill(0, 0, &image);
    for f in [Fault::SkipDataSn, Fault::StrayDataIn, Fault::DropOnRead] {
        bed.tgt.arm(f);
    }
    std::thread::scope(|sc| {
        for t in 0..4u64 {
            let (bed, disk, image) = (&bed, &disk, &image);
            sc.spawn(move || {
                for j in 0..10u64 {
                    let lba = (t * 10 + j) * 97 % 4000;
                    let got = bed.read(disk, lba, 64);
                    let at = lba as usize * BLOCK;
                    assert!(got == image[at..at + 64 * BLOCK], "read at {lba} differs");
                }
            });
        }
    });
    assert!(bed.tgt.armed().is_empty(), "{:?}", bed.tgt.armed());
    // Two faults may hit the same doomed connection: 3 or 4 logins.
    let n = bed.tgt.logins().len();
    assert!((3..=4).contains(&n), "{n} logins\n{}", bed.context());
    bed.wait_logins(n as u64);
    bed.assert_alive();
}
