//! The demo: tgtd on loopback with RAM disks, iscsid with the vscsi
//! emulator in place of /dev/vscsi0, `iscsictl reload`, the disks the
//! "kernel" attached, data written and read back and checked against the
//! target's backing file, `iscsictl show`, then everything stopped.

use std::io::{Read, Seek, SeekFrom};
use std::process::ExitCode;
use std::time::Duration;

use regress::emulator::Emulator;
use regress::harness::{Daemon, Scratch, Target, TargetKind, IQN_DISK};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::from(1)
        }
    }
}

fn run() -> Result<(), String> {
    println!("== starting tgtd on loopback (RAM-backed LUNs in /dev/shm)");
    let tgt = Target::start(TargetKind::Tgt);
    println!("   portal 127.0.0.1:{}, target {IQN_DISK}", tgt.port);
    let dir = Scratch::new("demo");
    let dev = dir.join("vscsi0.sock");
    let emu = Emulator::listen(&dev).map_err(|e| format!("emulator: {e}"))?;
    println!(
        "== starting iscsid -d -n {} (vscsi emulator)",
        dev.display()
    );
    let daemon = Daemon::start(&dev);
    let ctl = daemon.ctl();
    let conf = format!(
        "# iscsi.conf for the demo\ntarget demo {{\n\ttargetaddr 127.0.0.1 port {}\n\ttargetname \"{IQN_DISK}\"\n}}\n",
        tgt.port
    );
    ctl.write_config(&conf);
    println!("== iscsi.conf\n{conf}");
    println!("== iscsictl reload");
    print!("{}", ctl.ok(&["reload"]));
    let disks = emu
        .wait_disks(|d| d.len() >= 2, Duration::from_secs(20))
        .map_err(|e| format!("disks did not attach: {e:?}"))?;
    println!("== disks attached by the emulated kernel");
    for d in &disks {
        println!(
            "   {} at vscsi0 targ {} lun {}: <{}, {}, {}> {} blocks of {} bytes",
            d.name, d.target, d.lun, d.vendor, d.product, d.revision, d.blocks, d.block_size
        );
    }
    let disk = &disks[0];
    let mut data = vec![0u8; 1 << 20];
    getrandom::getrandom(&mut data).map_err(|e| e.to_string())?;
    let lba = 2048;
    println!(
        "== writing 1 MiB of random data to {} at LBA {lba}",
        disk.name
    );
    emu.write(disk, lba, &data)
        .map_err(|e| format!("write: {e:?}"))?;
    emu.flush(disk).map_err(|e| format!("flush: {e:?}"))?;
    let back = emu
        .read(disk, lba, (data.len() / disk.block_size as usize) as u32)
        .map_err(|e| format!("read: {e:?}"))?;
    if back != data {
        return Err("read back differs from what was written".into());
    }
    println!("   read back through iSCSI: identical");
    let mut f = std::fs::File::open(tgt.disk_file(disk.lun)).map_err(|e| e.to_string())?;
    let mut onfile = vec![0u8; data.len()];
    f.seek(SeekFrom::Start(lba * u64::from(disk.block_size)))
        .and_then(|_| f.read_exact(&mut onfile))
        .map_err(|e| e.to_string())?;
    if onfile != data {
        return Err("target's backing file differs from what was written".into());
    }
    println!(
        "   target's backing file {}: identical",
        tgt.disk_file(disk.lun).display()
    );
    println!("== iscsictl show");
    print!("{}", ctl.ok(&["show"]));
    println!("== iscsictl show summary");
    print!("{}", ctl.ok(&["show", "summary"]));
    println!("== iscsictl show vscsi stats");
    print!("{}", ctl.ok(&["show", "vscsi", "stats"]));
    println!("== stopping iscsid, tgtd");
    drop(daemon);
    drop(tgt);
    println!("== demo done");
    Ok(())
}
