//! The command on Linux (see main.rs).

use std::path::PathBuf;
use std::process::ExitCode;

use getopts::Options;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use regress::fusedisk::{disk_conf, FuseRig};
use regress::harness::{Target, TargetKind};

const USAGE: &str = "\
usage: iscsi-fuse [-c iscsi.conf | -t tgt|istgt] [-w disks] mountpoint

Runs the vscsi emulator, iscsid -n on it and `iscsictl reload` of the
configuration, then mounts the attached disks at MOUNTPOINT as files named
t<target>l<lun> (the emulated vscsi target and LUN), blocks * block size
bytes each. Every read and write of those files is an sd(4) command through
iscsid to the target: use them with dd, fio, mkfs, losetup... Runs until
SIGINT/SIGTERM/SIGHUP, then unmounts (unmount file systems and detach loop
devices on top of it first) and stops iscsid. Needs root, and iscsid and
iscsictl built next to this binary (cargo build --workspace --bins).

  -c FILE   iscsi.conf(5) to load
  -t KIND   instead of -c: start a target on loopback (tgt or istgt, RAM
            backed: LUNs of 64 and 16 MiB) and a configuration for it
  -w N      disks to wait for (default: 1, or all of -t's)
  -h        this help

example:
  iscsi-fuse -t tgt /mnt/iscsi &
  mkfs.ext4 /mnt/iscsi/t0l1
  mount -o loop /mnt/iscsi/t0l1 /mnt/fs
";

pub fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("iscsi-fuse: {e}");
            ExitCode::from(1)
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut o = Options::new();
    o.optopt("c", "", "iscsi.conf to load", "FILE");
    o.optopt("t", "", "start a loopback target", "KIND");
    o.optopt("w", "", "disks to wait for", "N");
    o.optflag("h", "help", "help");
    let m = o.parse(&args).map_err(|e| format!("{e}\n{USAGE}"))?;
    if m.opt_present("h") {
        print!("{USAGE}");
        return Ok(());
    }
    let [mnt] = m.free.as_slice() else {
        return Err(format!("one mount point expected\n{USAGE}"));
    };
    if !nix::unistd::geteuid().is_root() {
        return Err("must run as root (iscsid's privilege separation, mount(2))".into());
    }
    // Signals are caught from here on, so that a ^C during start-up still
    // finds everything torn down by the drops below.
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP]).map_err(|e| e.to_string())?;
    let (target, conf) = match (m.opt_str("c"), m.opt_str("t")) {
        (Some(c), None) => (
            None,
            std::fs::read_to_string(&c).map_err(|e| format!("{c}: {e}"))?,
        ),
        (None, Some(k)) => {
            let kind = match k.as_str() {
                "tgt" => TargetKind::Tgt,
                "istgt" => TargetKind::Istgt,
                _ => return Err(format!("-t {k}: tgt or istgt\n{USAGE}")),
            };
            let t = Target::start(kind);
            let conf = disk_conf(&t);
            (Some(t), conf)
        }
        _ => return Err(format!("one of -c and -t is needed\n{USAGE}")),
    };
    let want = match m.opt_str("w") {
        Some(w) => w.parse().map_err(|_| format!("-w {w}: a number"))?,
        None => target.as_ref().map_or(1, |t| t.disk_luns().len()),
    };
    let mnt = PathBuf::from(mnt);
    std::fs::create_dir_all(&mnt).map_err(|e| format!("{}: {e}", mnt.display()))?;
    let rig = FuseRig::start_at(&conf, want, Some(&mnt))?;
    if let Some(t) = &target {
        println!("target: {:?} on {}", t.kind, t.addr());
    }
    for d in rig.emu.disks() {
        println!(
            "{}: {} <{}, {}, {}> {} blocks of {} bytes",
            rig.fuse.file(&d).display(),
            d.name,
            d.vendor,
            d.product,
            d.revision,
            d.blocks,
            d.block_size
        );
    }
    println!("ready; ^C (SIGINT), SIGTERM or SIGHUP to unmount and stop");
    if let Some(sig) = signals.forever().next() {
        println!("signal {sig}: unmounting and stopping");
    }
    drop(rig);
    drop(target);
    Ok(())
}
