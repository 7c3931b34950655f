//! The bad target's logical units: RAM disks of 512-byte blocks, and the
//! handful of SCSI commands the emulated kernel sends them.

use std::collections::BTreeMap;

use crate::emulator::scsi::{self, fixed_sense, parse_rw, report_luns_data};

pub const BLOCK: usize = 512;

const REQUEST_SENSE: u8 = 0x03;
const SYNCHRONIZE_CACHE_16: u8 = 0x91;
const GOOD: u8 = 0x00;
const CHECK_CONDITION: u8 = 0x02;

/// What a command produced: status, read data and (with CHECK
/// CONDITION) fixed sense.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u8,
    pub data: Vec<u8>,
    pub sense: Vec<u8>,
}

impl Reply {
    fn good(data: Vec<u8>) -> Reply {
        Reply {
            status: GOOD,
            data,
            sense: Vec::new(),
        }
    }

    fn check(key: u8, asc: u8, ascq: u8) -> Reply {
        Reply {
            status: CHECK_CONDITION,
            data: Vec::new(),
            sense: fixed_sense(key, asc, ascq).to_vec(),
        }
    }
}

/// The target's LUNs and its one pending unit attention (REPORTED LUNS
/// DATA HAS CHANGED, raised when a LUN is added).
#[derive(Debug, Default)]
pub struct Luns {
    pub disks: BTreeMap<u32, Vec<u8>>,
    pub unit_attention: bool,
}

fn alloc_len(cdb: &[u8], r: std::ops::Range<usize>) -> usize {
    cdb.get(r).map_or(0, |b| {
        b.iter().fold(0usize, |a, &x| (a << 8) | usize::from(x))
    })
}

fn truncated(mut data: Vec<u8>, alloc: usize) -> Vec<u8> {
    data.truncate(alloc);
    data
}

impl Luns {
    /// Checks a command before its write data arrives, so a bad one is
    /// refused without asking for the data.
    pub fn precheck(&mut self, lun: Option<u32>, cdb: &[u8]) -> Option<Reply> {
        let disk = lun.and_then(|l| self.disks.get(&l));
        let Some(disk) = disk else {
            return Some(Reply::check(scsi::SKEY_ILLEGAL_REQUEST, 0x25, 0));
        };
        let rw = parse_rw(cdb)?;
        let end = rw.lba.checked_add(u64::from(rw.blocks));
        if end.is_none_or(|e| e > (disk.len() / BLOCK) as u64) {
            return Some(Reply::check(scsi::SKEY_ILLEGAL_REQUEST, 0x21, 0));
        }
        None
    }

    /// Runs `cdb` on `lun` with the write data `out` (empty for others).
    pub fn execute(&mut self, lun: Option<u32>, cdb: &[u8], out: &[u8]) -> Reply {
        let op = cdb.first().copied().unwrap_or(0xff);
        match op {
            scsi::INQUIRY => return self.inquiry(lun, cdb),
            scsi::REPORT_LUNS => {
                let luns: Vec<u8> = self
                    .disks
                    .keys()
                    .filter_map(|&l| u8::try_from(l).ok())
                    .collect();
                return Reply::good(truncated(report_luns_data(&luns), alloc_len(cdb, 6..10)));
            }
            REQUEST_SENSE => {
                let none = fixed_sense(0, 0, 0).to_vec();
                return Reply::good(truncated(none, alloc_len(cdb, 4..5)));
            }
            _ => {}
        }
        if let Some(r) = self.precheck(lun, cdb) {
            return r;
        }
        if self.unit_attention {
            self.unit_attention = false;
            return Reply::check(scsi::SKEY_UNIT_ATTENTION, 0x3f, 0x0e);
        }
        let Some(disk) = lun.and_then(|l| self.disks.get_mut(&l)) else {
            return Reply::check(scsi::SKEY_ILLEGAL_REQUEST, 0x25, 0);
        };
        let blocks = (disk.len() / BLOCK) as u64;
        match op {
            scsi::TEST_UNIT_READY | scsi::SYNCHRONIZE_CACHE_10 | SYNCHRONIZE_CACHE_16 => {
                Reply::good(Vec::new())
            }
            scsi::READ_CAPACITY_10 => {
                let last = u32::try_from(blocks.saturating_sub(1)).unwrap_or(u32::MAX);
                let mut d = last.to_be_bytes().to_vec();
                d.extend_from_slice(&(BLOCK as u32).to_be_bytes());
                Reply::good(d)
            }
            scsi::SERVICE_ACTION_IN_16 if cdb.get(1).map(|b| b & 0x1f) == Some(0x10) => {
                let mut d = vec![0u8; 32];
                d[..8].copy_from_slice(&blocks.saturating_sub(1).to_be_bytes());
                d[8..12].copy_from_slice(&(BLOCK as u32).to_be_bytes());
                Reply::good(truncated(d, alloc_len(cdb, 10..14)))
            }
            _ => match parse_rw(cdb) {
                Some(rw) => {
                    // precheck bounded the range by the disk size.
                    let start = rw.lba as usize * BLOCK;
                    let len = rw.blocks as usize * BLOCK;
                    let Some(area) = disk.get_mut(start..start + len) else {
                        return Reply::check(scsi::SKEY_ILLEGAL_REQUEST, 0x21, 0);
                    };
                    if rw.write {
                        let n = out.len().min(len);
                        area[..n].copy_from_slice(&out[..n]);
                        Reply::good(Vec::new())
                    } else {
                        Reply::good(area.to_vec())
                    }
                }
                None => Reply::check(scsi::SKEY_ILLEGAL_REQUEST, 0x20, 0),
            },
        }
    }

    fn inquiry(&self, lun: Option<u32>, cdb: &[u8]) -> Reply {
        let alloc = alloc_len(cdb, 3..5);
        if cdb.get(1).is_some_and(|b| b & 1 != 0) {
            // EVPD: only the list of supported pages.
            if cdb.get(2) != Some(&0) {
                return Reply::check(scsi::SKEY_ILLEGAL_REQUEST, 0x24, 0);
            }
            return Reply::good(truncated(vec![0, 0, 0, 1, 0], alloc));
        }
        let mut d = vec![0u8; 36];
        let present = lun.is_some_and(|l| self.disks.contains_key(&l));
        // Qualifier 3, type 0x1f: no logical unit here.
        d[0] = if present { scsi::T_DIRECT } else { 0x7f };
        d[2] = 0x05; // SPC-3: the kernel asks REPORT LUNS
        d[3] = 0x02;
        d[4] = 31;
        d[7] = 0x02; // CmdQue
        d[8..16].copy_from_slice(b"BADTGT  ");
        d[16..32].copy_from_slice(b"RAM DISK        ");
        d[32..36].copy_from_slice(b"0001");
        Reply::good(truncated(d, alloc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::scsi::{parse_inquiry, parse_report_luns, read_10, sense_key, write_16};

    fn luns() -> Luns {
        let mut l = Luns::default();
        l.disks.insert(0, vec![0; 64 * BLOCK]);
        l
    }

    #[test]
    fn read_write_and_bounds() {
        let mut l = luns();
        let data: Vec<u8> = (0..2 * BLOCK).map(|i| i as u8).collect();
        assert_eq!(l.execute(Some(0), &write_16(10, 2), &data).status, GOOD);
        assert_eq!(l.execute(Some(0), &read_10(10, 2), &[]).data, data);
        let r = l.execute(Some(0), &read_10(63, 2), &[]);
        assert_eq!(r.status, CHECK_CONDITION);
        assert_eq!(sense_key(&r.sense), Some(scsi::SKEY_ILLEGAL_REQUEST));
        assert!(l.precheck(Some(0), &write_16(u64::MAX, 2)).is_some());
        assert!(l.precheck(Some(1), &read_10(0, 1)).is_some(), "no LUN 1");
    }

    #[test]
    fn inquiry_report_luns_and_unit_attention() {
        let mut l = luns();
        let inq = l.execute(Some(0), &scsi::inquiry(36), &[]);
        let i = parse_inquiry(&inq.data).expect("inquiry");
        assert_eq!((i.qualifier, i.device_type, i.version), (0, 0, 5));
        let none = l.execute(Some(3), &scsi::inquiry(36), &[]);
        assert_eq!(none.data[0], 0x7f);
        l.disks.insert(1, vec![0; 8 * BLOCK]);
        l.unit_attention = true;
        // INQUIRY and REPORT LUNS do not report it.
        let rl = l.execute(Some(0), &scsi::report_luns(0, 1024), &[]);
        let entries = parse_report_luns(&rl.data).expect("report luns");
        assert_eq!(entries.len(), 2);
        let ua = l.execute(Some(0), &scsi::test_unit_ready(), &[]);
        assert_eq!(sense_key(&ua.sense), Some(scsi::SKEY_UNIT_ATTENTION));
        assert_eq!(scsi::asc_ascq(&ua.sense), Some((0x3f, 0x0e)));
        assert_eq!(
            l.execute(Some(0), &scsi::test_unit_ready(), &[]).status,
            GOOD
        );
        let rc = l.execute(Some(1), &scsi::read_capacity_16(32), &[]);
        assert_eq!(scsi::parse_read_capacity_16(&rc.data), Some((7, 512)));
    }
}
