//! REQPROBE and REQDETACH, run one at a time on their own thread as the
//! kernel runs them on `systq`: scsiconf's probe of a target and its LUNs,
//! and sd(4)'s attach.

use std::sync::mpsc::Receiver;
use std::sync::Arc;

use iscsid::vscsi::{Dir, Status};

use super::disk::exec_retry;
use super::link::{Conn, Req};
use super::scsi::{
    self, Inquiry, INQUIRY_LEN, REPORT_LUNS_LEN, SKEY_ILLEGAL_REQUEST, SKEY_NOT_READY, T_DIRECT,
    T_NODEVICE,
};
use super::topo::{BUSWIDTH, LUNS};
use super::{CmdResult, EmuError, Shared};

pub(crate) enum Task {
    Probe { target: i32, lun: i32 },
    Detach { target: i32, lun: i32 },
}

/// The task queue of one open of the device; ends when it closes.
pub(crate) fn run(sh: Arc<Shared>, conn: Arc<Conn>, rx: Receiver<Task>) {
    for t in rx {
        // Queued tasks only act while the device is open (RUNNING).
        if conn.is_alive() {
            match t {
                Task::Probe { target, lun } => probe(&sh, &conn, target, lun),
                Task::Detach { target, lun } => detach(&sh, &conn, target, lun),
            }
        }
        sh.task_done();
    }
}

/// `scsi_detach(bus, target, lun, DETACH_FORCE)`: link by link, each first
/// shut down (its commands waited for), then gone. Tasks queued behind it
/// wait meanwhile, as on the kernel's one `systq` thread.
fn detach(sh: &Shared, conn: &Conn, target: i32, lun: i32) {
    let links = sh.topo().links_matching(target, lun);
    for (t, l) in links {
        conn.shut_link((t, l));
        sh.detach(t, l);
    }
}

/// `scsi_probe(bus, target, lun)` with its wildcards.
fn probe(sh: &Shared, conn: &Conn, target: i32, lun: i32) {
    let targets = match (target, lun) {
        (-1, -1) => 0..BUSWIDTH,
        (t, _) if t >= 0 && (t as u32) < BUSWIDTH => t as u32..t as u32 + 1,
        _ => return,
    };
    for t in targets {
        let r = match lun {
            -1 => probe_target(sh, conn, t),
            l if l >= 0 => probe_link(sh, conn, t, l as u32, false).map(|_| ()),
            _ => Ok(()),
        };
        if matches!(r, Err(EmuError::NotConnected)) {
            return;
        }
    }
}

fn cmd(
    sh: &Shared,
    conn: &Conn,
    target: u32,
    lun: u32,
    cdb: &[u8],
    datalen: u32,
) -> Result<CmdResult, EmuError> {
    let dir = if datalen == 0 { Dir::None } else { Dir::Read };
    let req = Req {
        target,
        lun,
        cdb,
        dir,
        datalen,
        out: Arc::from(&[][..]),
    };
    exec_retry(sh, conn, req, sh.cfg.probe_timeout)
}

/// Only a closed device stops a probe; any other failure is the device's
/// answer, judged by the caller.
fn keep_going<T>(r: Result<T, EmuError>) -> Result<Option<T>, EmuError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(EmuError::NotConnected) => Err(EmuError::NotConnected),
        Err(_) => Ok(None),
    }
}

/// `scsi_probe_target` (scsiconf.c 1.255): LUN 0 first, then the LUNs
/// REPORT LUNS names (SPC and later; `scsi_get_target_luns` takes entries
/// whose first byte is 0 and their second byte as the LUN), or a dumb scan
/// of 0..8 that stops at a LUN that aliases LUN 0.
fn probe_target(sh: &Shared, conn: &Conn, target: u32) -> Result<(), EmuError> {
    probe_link(sh, conn, target, 0, false)?;
    let Some(inq0) = sh.link_inquiry(target, 0) else {
        return Ok(());
    };
    let version = scsi::parse_inquiry(&inq0).map_or(0, |i| i.version);
    let mut reported = None;
    if version >= 3 {
        let cdb = scsi::report_luns(0, REPORT_LUNS_LEN);
        let r = keep_going(cmd(sh, conn, target, 0, &cdb, REPORT_LUNS_LEN))?;
        let key = r.as_ref().and_then(|r| scsi::sense_key(&r.sense));
        reported = match r {
            // The buffer is zeroed first: what the target did not send
            // reads as no entries.
            Some(r) if r.status == Status::Done => Some(
                scsi::parse_report_luns(&r.data)
                    .map(|e| e.iter().filter_map(scsi::lun_of_entry).collect())
                    .unwrap_or_default(),
            ),
            // SCSI_IGNORE_ILLEGAL_REQUEST and SCSI_IGNORE_NOT_READY make
            // these a success with the zeroed buffer: no LUN past 0, and
            // no dumb scan either (scsi_get_target_luns).
            Some(r)
                if r.status == Status::Sense
                    && matches!(key, Some(SKEY_ILLEGAL_REQUEST | SKEY_NOT_READY)) =>
            {
                Some(Vec::new())
            }
            _ => None,
        };
    }
    let dumb = reported.is_none();
    for lun in reported.unwrap_or_else(|| (0..LUNS).collect()) {
        if probe_link(sh, conn, target, lun, dumb)? == Found::Alias {
            break;
        }
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum Found {
    Attached,
    Nothing,
    /// A dumb-scanned LUN answered exactly as LUN 0: the device ignores
    /// LUNs, so the scan stops.
    Alias,
}

/// TEST UNIT READY without caring for the answer (the midlayer ignores
/// ILLEGAL REQUEST, NOT READY and MEDIA CHANGE here).
fn tur(sh: &Shared, conn: &Conn, target: u32, lun: u32) -> Result<(), EmuError> {
    keep_going(cmd(sh, conn, target, lun, &scsi::test_unit_ready(), 0)).map(|_| ())
}

/// `scsi_probe_link`: what is at (target, lun), and attach it.
fn probe_link(
    sh: &Shared,
    conn: &Conn,
    target: u32,
    lun: u32,
    dumbscan: bool,
) -> Result<Found, EmuError> {
    if sh.has_link(target, lun) {
        return Ok(Found::Attached);
    }
    if lun == 0 {
        // Clears a pending UNIT ATTENTION before the INQUIRY.
        tur(sh, conn, target, lun)?;
    }
    let cdb = scsi::inquiry(INQUIRY_LEN as u16);
    let Some(r) = keep_going(cmd(sh, conn, target, lun, &cdb, INQUIRY_LEN as u32))? else {
        return Ok(Found::Nothing);
    };
    if r.status != Status::Done {
        return Ok(Found::Nothing);
    }
    let raw = r.data;
    let Some(inq) = scsi::parse_inquiry(&raw) else {
        return Ok(Found::Nothing);
    };
    let present = match inq.qualifier {
        0 => inq.device_type != T_NODEVICE,
        // LU not connected: kept only at LUN 0, so REPORT LUNS can run.
        1 => lun == 0 && inq.device_type == T_NODEVICE,
        _ => false,
    };
    if !present {
        return Ok(Found::Nothing);
    }
    if dumbscan && lun != 0 && sh.link_inquiry(target, 0).as_deref() == Some(&raw[..]) {
        return Ok(Found::Alias);
    }
    // "If the device can't use tags, >1 opening may confuse it": the link
    // made with the bus's openings keeps one (scsi_probe_link).
    let tagged = inq.tagged() && !scsi::notags_quirk(&raw);
    let openings = if tagged { sh.cfg.openings } else { 1 };
    conn.set_openings(target, lun, openings);
    tur(sh, conn, target, lun)?;
    if inq.qualifier == 0 && inq.device_type == T_DIRECT {
        attach_disk(sh, conn, target, lun, raw, &inq, openings)?;
    } else {
        sh.attach_device(conn, target, lun, raw, &inq, openings);
    }
    Ok(Found::Attached)
}

#[allow(clippy::too_many_arguments)]
/// sd(4)'s attach: READ CAPACITY(10), and (16) when (10) saturates. A disk
/// that will not tell its size still attaches, with no blocks ("drive
/// offline").
fn attach_disk(
    sh: &Shared,
    conn: &Conn,
    target: u32,
    lun: u32,
    raw: Vec<u8>,
    inq: &Inquiry,
    openings: usize,
) -> Result<(), EmuError> {
    let mut geom = (0, 0);
    let rc = keep_going(cmd(sh, conn, target, lun, &scsi::read_capacity_10(), 8))?;
    let rc10 = rc
        .filter(|r| r.status == Status::Done)
        .and_then(|r| scsi::parse_read_capacity_10(&r.data));
    if let Some((last, bs)) = rc10 {
        if last == u32::MAX {
            let len = scsi::READ_CAPACITY_16_LEN;
            let cdb = scsi::read_capacity_16(len);
            let rc = keep_going(cmd(sh, conn, target, lun, &cdb, len))?;
            let rc16 = rc
                .filter(|r| r.status == Status::Done)
                .and_then(|r| scsi::parse_read_capacity_16(&r.data));
            if let Some((last, bs)) = rc16 {
                geom = (bs, last.saturating_add(1));
            }
        } else {
            geom = (bs, u64::from(last) + 1);
        }
    }
    sh.attach_disk(conn, target, lun, raw, inq, openings, geom.0, geom.1);
    Ok(())
}
