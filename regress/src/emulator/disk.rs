//! What the midlayer and sd(4) do around one command: retry through
//! UNIT ATTENTION and XS_RESET, judge the outcome, and turn block I/O into
//! READ/WRITE (10) or (16) within the disk's bounds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use iscsid::vscsi::{Dir, Status};

use super::link::{Callback, Conn, Req, Waiter};
use super::scsi::{self, SKEY_NO_SENSE, SKEY_RECOVERED_ERROR, SKEY_UNIT_ATTENTION};
use super::{CmdResult, DiskInfo, EmuError, Shared};

/// Runs `req`, reissuing it up to `cfg.retries` times while it ends in
/// XS_RESET or UNIT ATTENTION (`xs->retries` in the midlayer).
pub(crate) fn exec_retry(
    sh: &Shared,
    conn: &Conn,
    req: Req<'_>,
    timeout: Duration,
) -> Result<CmdResult, EmuError> {
    let mut attempt = 0;
    loop {
        let r = conn.exec(sh, req.clone(), timeout)?;
        let again = match r.status {
            Status::Reset => true,
            Status::Sense => scsi::sense_key(&r.sense) == Some(SKEY_UNIT_ATTENTION),
            Status::Done | Status::Err => false,
        };
        if !again || attempt >= sh.cfg.retries {
            return Ok(r);
        }
        attempt += 1;
    }
}

/// Success, or the error the midlayer would return for it.
pub(crate) fn judge(r: CmdResult) -> Result<CmdResult, EmuError> {
    match r.status {
        Status::Done => Ok(r),
        Status::Sense => match scsi::sense_key(&r.sense) {
            Some(SKEY_NO_SENSE | SKEY_RECOVERED_ERROR) => Ok(r),
            _ => Err(EmuError::Check { sense: r.sense }),
        },
        s => Err(EmuError::Failed(s)),
    }
}

/// Checks `blocks` at `lba` against the disk and returns the byte count.
fn span(disk: &DiskInfo, lba: u64, blocks: u32) -> Result<u32, EmuError> {
    let end = lba
        .checked_add(u64::from(blocks))
        .ok_or(EmuError::OutOfRange)?;
    if end > disk.blocks {
        return Err(EmuError::OutOfRange);
    }
    u32::try_from(u64::from(blocks) * u64::from(disk.block_size))
        .map_err(|_| EmuError::Invalid("transfer over 4 GiB"))
}

fn rw(
    sh: &Shared,
    conn: &Conn,
    disk: &DiskInfo,
    lba: u64,
    blocks: u32,
    out: Option<Arc<[u8]>>,
) -> Result<CmdResult, EmuError> {
    let datalen = span(disk, lba, blocks)?;
    let write = out.is_some();
    let cdb = scsi::rw_cdb(write, lba, blocks);
    let req = Req {
        target: disk.target,
        lun: disk.lun,
        cdb: &cdb,
        dir: if write { Dir::Write } else { Dir::Read },
        datalen,
        out: out.unwrap_or_else(|| Arc::from(&[][..])),
    };
    judge_rw(exec_retry(sh, conn, req, sh.cfg.io_timeout)?)
}

/// `judge`, and a read or write must move every byte.
pub(crate) fn judge_rw(r: CmdResult) -> Result<CmdResult, EmuError> {
    let r = judge(r)?;
    if r.resid != 0 {
        return Err(EmuError::Short { resid: r.resid });
    }
    Ok(r)
}

/// Starts a read (`out` None) or write of `blocks` at `lba` without
/// waiting, for an opening or for the completion, and without retries.
pub(crate) fn start_rw(
    sh: &Shared,
    conn: &Conn,
    disk: &DiskInfo,
    lba: u64,
    blocks: u32,
    out: Option<Arc<[u8]>>,
    done: Callback,
) -> Result<(), EmuError> {
    let datalen = span(disk, lba, blocks)?;
    if blocks == 0 {
        return Err(EmuError::Invalid("zero-length transfer"));
    }
    let write = out.is_some();
    let cdb = scsi::rw_cdb(write, lba, blocks);
    let req = Req {
        target: disk.target,
        lun: disk.lun,
        cdb: &cdb,
        dir: if write { Dir::Write } else { Dir::Read },
        datalen,
        out: out.unwrap_or_else(|| Arc::from(&[][..])),
    };
    conn.start(sh, req, Instant::now(), Waiter::Call(done))
}

pub(crate) fn read(
    sh: &Shared,
    conn: &Conn,
    disk: &DiskInfo,
    lba: u64,
    blocks: u32,
) -> Result<Vec<u8>, EmuError> {
    if blocks == 0 {
        span(disk, lba, 0)?;
        return Ok(Vec::new());
    }
    Ok(rw(sh, conn, disk, lba, blocks, None)?.data)
}

pub(crate) fn write(
    sh: &Shared,
    conn: &Conn,
    disk: &DiskInfo,
    lba: u64,
    data: &[u8],
) -> Result<(), EmuError> {
    let bs = disk.block_size as usize;
    if data.len().checked_rem(bs) != Some(0) {
        return Err(EmuError::Invalid(
            "write length is not a multiple of the block size",
        ));
    }
    let blocks =
        u32::try_from(data.len() / bs).map_err(|_| EmuError::Invalid("transfer over 4 GiB"))?;
    if blocks == 0 {
        span(disk, lba, 0)?;
        return Ok(());
    }
    rw(sh, conn, disk, lba, blocks, Some(Arc::from(data))).map(|_| ())
}

pub(crate) fn flush(sh: &Shared, conn: &Conn, disk: &DiskInfo) -> Result<(), EmuError> {
    let cdb = scsi::synchronize_cache_10();
    let req = Req {
        target: disk.target,
        lun: disk.lun,
        cdb: &cdb,
        dir: Dir::None,
        datalen: 0,
        out: Arc::from(&[][..]),
    };
    judge(exec_retry(sh, conn, req, sh.cfg.io_timeout)?).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(status: Status, sense: [u8; 18]) -> CmdResult {
        CmdResult {
            status,
            sense,
            data: vec![1],
            resid: 0,
        }
    }

    #[test]
    fn judge_like_the_midlayer() {
        assert!(judge(res(Status::Done, [0; 18])).is_ok());
        let rec = scsi::fixed_sense(SKEY_RECOVERED_ERROR, 0x18, 0);
        assert_eq!(judge(res(Status::Sense, rec)).unwrap().data, vec![1]);
        let med = scsi::fixed_sense(3, 0x11, 0);
        assert!(matches!(
            judge(res(Status::Sense, med)),
            Err(EmuError::Check { sense }) if sense == med
        ));
        // Unparseable sense is still a check condition.
        assert!(matches!(
            judge(res(Status::Sense, [0; 18])),
            Err(EmuError::Check { .. })
        ));
        assert!(matches!(
            judge(res(Status::Err, [0; 18])),
            Err(EmuError::Failed(Status::Err))
        ));
        assert!(matches!(
            judge(res(Status::Reset, [0; 18])),
            Err(EmuError::Failed(Status::Reset))
        ));
    }

    #[test]
    fn span_bounds() {
        let d = DiskInfo {
            name: "sd0".into(),
            target: 0,
            lun: 0,
            vendor: String::new(),
            product: String::new(),
            revision: String::new(),
            block_size: 512,
            blocks: 100,
            openings: 16,
        };
        assert_eq!(span(&d, 0, 100).unwrap(), 51200);
        assert!(matches!(span(&d, 99, 2), Err(EmuError::OutOfRange)));
        assert!(matches!(span(&d, u64::MAX, 1), Err(EmuError::OutOfRange)));
        let big = DiskInfo {
            blocks: u64::MAX,
            ..d
        };
        assert!(matches!(span(&big, 0, 1 << 23), Err(EmuError::Invalid(_))));
    }
}
