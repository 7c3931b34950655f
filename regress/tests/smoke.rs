//! End to end against tgtd: log in, see the disks, write and read back.

use std::time::Duration;

use regress::emulator::Emulator;
use regress::harness::{Daemon, Scratch, Target, TargetKind, IQN_DISK};

#[test]
fn tgt_disks_attach_and_carry_data() {
    let tgt = Target::start(TargetKind::Tgt);
    let dir = Scratch::new("smoke");
    let emu_path = dir.join("vscsi.sock");
    let emu = Emulator::listen(&emu_path).expect("emulator");
    let d = Daemon::start(&emu_path);
    let ctl = d.ctl();
    ctl.write_config(&format!(
        "target disk {{\n targetaddr 127.0.0.1 port {}\n targetname \"{IQN_DISK}\"\n}}\n",
        tgt.port
    ));
    let out = ctl.ok(&["reload"]);
    assert!(out.contains("command successful"), "{out}");
    let disks = emu
        .wait_disks(|d| d.len() >= 2, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("no disks: {e:?}\n{}", d.log_text()));
    assert_eq!(disks.len(), 2, "{disks:?}");
    let data: Vec<u8> = (0..65536u32).map(|i| (i * 7 + 3) as u8).collect();
    emu.write(&disks[0], 100, &data).expect("write");
    let back = emu.read(&disks[0], 100, 128).expect("read");
    assert_eq!(back, data);
    println!("{}", ctl.ok(&["show"]));
}
