//! The demo: tgtd on loopback with RAM disks, iscsid with the vscsi
//! emulator in place of /dev/vscsi0, `iscsictl reload`, the disks the
//! "kernel" attached, data written and read back and checked against the
//! target's backing file, a file system on an iSCSI disk (the disk as a
//! file through FUSE, mkfs.ext4, loop-mounted, a file written and read
//! back after a remount, e2fsck), `iscsictl show`, then everything stopped.

use std::io::{Read, Seek, SeekFrom};
use std::process::ExitCode;
use std::sync::Arc;
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
    // Shared: the FUSE file system below serves the disks from it too.
    let emu = Arc::new(Emulator::listen(&dev).map_err(|e| format!("emulator: {e}"))?);
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
    #[cfg(target_os = "linux")]
    fs_demo::file_system(
        &emu,
        disks.iter().find(|d| d.lun == 2).unwrap_or(disk),
        &dir,
    )?;
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

/// The file system part: FUSE and loop devices as used here are Linux's.
#[cfg(target_os = "linux")]
mod fs_demo {
    use std::path::Path;
    use std::sync::Arc;

    use regress::emulator::{DiskInfo, Emulator};
    use regress::fusedisk::{e2fsck, mkfs_ext4, FsMount, FuseMount, LoopDev};
    use regress::harness::Scratch;

    /// What the demo writes on the file system.
    const FS_FILE: &str = "hello.txt";
    const FS_BIG_FILE: &str = "random.bin";
    const FS_BIG_LEN: usize = 4 << 20;

    /// A file system on `disk`: its file through FUSE, mkfs.ext4, e2fsck, a
    /// loop device, mount, files written, unmount, mount again, read back,
    /// unmount, e2fsck. The guards undo every step, also when one fails.
    pub fn file_system(emu: &Arc<Emulator>, disk: &DiskInfo, dir: &Scratch) -> Result<(), String> {
        let at = dir.join("disks");
        let mnt = dir.join("mnt");
        for d in [&at, &mnt] {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let fuse = FuseMount::mount(Arc::clone(emu), &at).map_err(|e| format!("FUSE: {e}"))?;
        let file = fuse.file(disk);
        println!(
        "== file system on {}: its file {} (FUSE; every read and write is an sd(4) command over iSCSI)",
        disk.name,
        file.display()
    );
        println!("   mkfs.ext4 {}", file.display());
        mkfs_ext4(&file)?;
        fsck(&file)?;
        let text = format!("written on {} through iscsid\n", disk.name);
        let mut big = vec![0u8; FS_BIG_LEN];
        getrandom::getrandom(&mut big).map_err(|e| e.to_string())?;
        {
            let lo = LoopDev::attach(&file, true)?;
            println!(
                "   losetup: {} on the disk file; mount -t ext4 {} {}",
                lo.dev.display(),
                lo.dev.display(),
                mnt.display()
            );
            let m = FsMount::mount(&lo.dev, &mnt, "ext4")?;
            std::fs::write(mnt.join(FS_FILE), &text).map_err(|e| e.to_string())?;
            std::fs::write(mnt.join(FS_BIG_FILE), &big).map_err(|e| e.to_string())?;
            println!(
                "   wrote {FS_FILE} and {FS_BIG_FILE} ({} MiB of random data); umount",
                FS_BIG_LEN >> 20
            );
            m.unmount()?;
        }
        {
            let lo = LoopDev::attach(&file, true)?;
            let m = FsMount::mount(&lo.dev, &mnt, "ext4")?;
            let t = std::fs::read_to_string(mnt.join(FS_FILE)).map_err(|e| e.to_string())?;
            let b = std::fs::read(mnt.join(FS_BIG_FILE)).map_err(|e| e.to_string())?;
            if t != text || b != big {
                return Err("files read back after the remount differ".into());
            }
            println!(
                "   mounted again: {FS_FILE} says {:?}, {FS_BIG_FILE} identical",
                t.trim_end()
            );
            m.unmount()?;
        }
        fsck(&file)?;
        let s = fuse.stats();
        println!(
        "   through FUSE: {} reads ({} KiB), {} writes ({} KiB), {} SYNCHRONIZE CACHE, at most {} at once",
        s.reads,
        s.bytes_read >> 10,
        s.writes,
        s.bytes_written >> 10,
        s.syncs,
        s.peak_concurrent
    );
        fuse.unmount().map_err(|e| format!("FUSE unmount: {e}"))?;
        println!("   loop device detached, FUSE unmounted");
        Ok(())
    }

    fn fsck(file: &Path) -> Result<(), String> {
        let out = e2fsck(file)?;
        println!("   e2fsck -fn: {}", out.lines().last().unwrap_or("").trim());
        Ok(())
    }
}
