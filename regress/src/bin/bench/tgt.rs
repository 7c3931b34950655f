//! What the benchmark adds to the harness's tgtd with tgtadm: more null
//! LUNs on the disk target (the scale section), and a target of its own
//! for the digest rows.

use regress::harness::{Backend, Target};

use crate::{BenchError, LUN};

/// The harness's disk target (`IQN_DISK`), as tgtadm numbers it.
pub const DISK_TID: &str = "1";
/// The digest rows' target; the harness uses tids 1 and 2.
const DIGEST_TID: &str = "3";
pub const IQN_DIGEST: &str = "iqn.2026-11.org.example:digest";
/// tgt's bstype null ignores its path; the harness names it so.
const NULL_BACKING: &str = "/dev/null/nullbs";
/// What the digest target prefers. tgt answers None to an offer of
/// CRC32C alone unless the target prefers CRC32C (regress/tests/login.rs);
/// on the disk target that preference would also give the libiscsi
/// baseline (which offers None,CRC32C) header digests in the plain rows.
const DIGEST_PREFERENCE: &str = "CRC32C,None";

fn adm(t: &Target, args: &[&str], what: &'static str) -> Result<(), BenchError> {
    if t.tgtadm(args) {
        Ok(())
    } else {
        Err(BenchError::Tgtadm(what))
    }
}

/// A logical unit `lun` of target `tid`, backed as `backend` (a RAM-file
/// LUN shares the disk target's LUN backing file).
fn add_lun(t: &Target, tid: &str, lun: u32, backend: Backend) -> Result<(), BenchError> {
    let l = lun.to_string();
    let null = format!("{NULL_BACKING}{tid}.{lun}");
    let file = t.disk_file(LUN).to_string_lossy().into_owned();
    let mut args = vec!["--op", "new", "--mode", "logicalunit"];
    args.extend(["--tid", tid, "--lun", &l]);
    match backend {
        Backend::Null => args.extend(["--bstype", "null", "-b", &null]),
        Backend::RamFile => args.extend(["-b", &file]),
    }
    adm(t, &args, "add a LUN")
}

/// A bstype-null LUN `lun` on the disk target.
pub fn add_null_lun(t: &Target, lun: u32) -> Result<(), BenchError> {
    add_lun(t, DISK_TID, lun, Backend::Null)
}

/// `IQN_DIGEST` with LUN `LUN` backed as `backend`, preferring CRC32C
/// digests.
pub fn add_digest_target(t: &Target, backend: Backend) -> Result<(), BenchError> {
    let target = [
        "--op", "new", "--mode", "target", "--tid", DIGEST_TID, "-T", IQN_DIGEST,
    ];
    adm(t, &target, "add the digest target")?;
    add_lun(t, DIGEST_TID, LUN, backend)?;
    let bind = [
        "--op", "bind", "--mode", "target", "--tid", DIGEST_TID, "-I", "ALL",
    ];
    adm(t, &bind, "bind the digest target")?;
    for key in ["HeaderDigest", "DataDigest"] {
        let update = [
            "--op",
            "update",
            "--mode",
            "target",
            "--tid",
            DIGEST_TID,
            "--name",
            key,
            "--value",
            DIGEST_PREFERENCE,
        ];
        adm(t, &update, "set the digest target's digests")?;
    }
    Ok(())
}
