//! The LUNs behind a session may change while it is down: a LUN removed,
//! or resized. The kernel probes new LUNs when asked, but keeps the disks
//! it has at the sizes it read. So after every re-login the initiator asks
//! the target itself (REPORT LUNS, then READ CAPACITY(16) for each disk the
//! kernel has) and has the kernel detach what is gone and attach again what
//! changed size. What the kernel has is learnt from the READ CAPACITY
//! answers it got.

use std::collections::BTreeMap;
use std::time::Instant;

use log::{debug, info};

use super::{Action, Initiator, SessionId};
use crate::lun;
use crate::scsi::{self, Direction, Outcome};
use crate::task::{Completion, ScsiTask, Tag, INTERNAL_TAG};

const REPORT_LUNS: u8 = 0xa0;
const READ_CAPACITY_10: u8 = 0x25;
const SERVICE_ACTION_IN_16: u8 = 0x9e;
const SA_READ_CAPACITY_16: u8 = 0x10;
/// READ CAPACITY(10)'s last LBA when the disk needs READ CAPACITY(16).
const RC10_TOO_BIG: u32 = 0xffff_ffff;
/// REPORT LUNS header, and each LUN entry.
const REPORT_LUNS_HEADER: usize = 8;
const LUN_ENTRY: usize = 8;
/// LUNs a REPORT LUNS answer may list for us.
const REPORT_LUNS_MAX: u32 = 1024;
const RC16_LEN: u32 = 32;
/// A unit attention (the power-on/reset one every login meets) makes
/// the command worth sending again, this often.
const UNIT_ATTENTION_RETRIES: u8 = 3;

/// A disk's size as READ CAPACITY gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub blocks: u64,
    pub block_size: u32,
}

/// One of the initiator's own commands.
#[derive(Debug, Clone)]
pub struct Internal {
    what: Query,
    retries: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Query {
    ReportLuns,
    Capacity(u32),
}

/// What the session knows of the kernel's disks.
#[derive(Debug, Default)]
pub struct LunState {
    /// LUN -> the size the kernel read.
    pub capacity: BTreeMap<u32, Capacity>,
    /// Kernel READ CAPACITY commands in flight: tag -> (LUN, opcode).
    probes: BTreeMap<Tag, (u32, u8)>,
    /// Our own commands in flight.
    internal: BTreeMap<Tag, Internal>,
    next_internal: u32,
}

fn is_read_capacity(cdb: &[u8]) -> bool {
    match cdb {
        [READ_CAPACITY_10, ..] => true,
        [SERVICE_ACTION_IN_16, sa, ..] => sa & 0x1f == SA_READ_CAPACITY_16,
        _ => false,
    }
}

/// The size in a READ CAPACITY answer, either form.
fn parse_capacity(cdb0: u8, d: &[u8]) -> Option<Capacity> {
    let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    match cdb0 {
        READ_CAPACITY_10 if d.len() >= 8 => {
            let last = be32(&d[0..4]);
            (last != RC10_TOO_BIG).then(|| Capacity {
                blocks: u64::from(last) + 1,
                block_size: be32(&d[4..8]),
            })
        }
        SERVICE_ACTION_IN_16 if d.len() >= 12 => {
            let mut l = [0u8; 8];
            l.copy_from_slice(&d[0..8]);
            Some(Capacity {
                blocks: u64::from_be_bytes(l).checked_add(1)?,
                block_size: be32(&d[8..12]),
            })
        }
        _ => None,
    }
}

/// The LUNs of a REPORT LUNS answer that the kernel can address.
fn parse_report_luns(d: &[u8]) -> Option<Vec<u32>> {
    let len = d.get(0..4)?;
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let body = d.get(REPORT_LUNS_HEADER..)?;
    let body = &body[..body.len().min(len)];
    Some(
        body.chunks_exact(LUN_ENTRY)
            .filter_map(|e| {
                let mut f = [0u8; 8];
                f.copy_from_slice(e);
                lun::decode(u64::from_be_bytes(f))
            })
            .collect(),
    )
}

fn cdb(q: Query) -> Vec<u8> {
    match q {
        Query::ReportLuns => {
            let alloc = REPORT_LUNS_HEADER as u32 + LUN_ENTRY as u32 * REPORT_LUNS_MAX;
            let a = alloc.to_be_bytes();
            vec![REPORT_LUNS, 0, 0, 0, 0, 0, a[0], a[1], a[2], a[3], 0, 0]
        }
        Query::Capacity(_) => {
            let a = RC16_LEN.to_be_bytes();
            let mut c = vec![0u8; 16];
            c[0] = SERVICE_ACTION_IN_16;
            c[1] = SA_READ_CAPACITY_16;
            c[10..14].copy_from_slice(&a);
            c
        }
    }
}

impl LunState {
    /// Whether the core reads `tag`'s answer itself: its own commands and
    /// the kernel's READ CAPACITY, whose answers tell LUN sizes.
    pub fn reads_data_of(&self, tag: Tag) -> bool {
        is_internal(tag) || self.probes.contains_key(&tag)
    }

    /// A kernel command is going to the target.
    pub fn note_command(&mut self, t: &ScsiTask, lun: u32) {
        if is_read_capacity(&t.cdb) {
            self.probes.insert(t.tag, (lun, t.cdb[0]));
        }
    }

    /// Forgets what a lost connection took with it: our own commands are
    /// asked again after the next login.
    pub fn connection_lost(&mut self) {
        self.internal.clear();
    }

    fn internal_task(&mut self, q: Query, retries: u8) -> ScsiTask {
        self.next_internal = self.next_internal.wrapping_add(1);
        let tag = INTERNAL_TAG | Tag::from(self.next_internal);
        self.internal.insert(tag, Internal { what: q, retries });
        let lun = match q {
            Query::ReportLuns => 0,
            Query::Capacity(l) => l,
        };
        let len = match q {
            Query::ReportLuns => REPORT_LUNS_HEADER as u32 + LUN_ENTRY as u32 * REPORT_LUNS_MAX,
            Query::Capacity(_) => RC16_LEN,
        };
        ScsiTask {
            tag,
            lun: lun::encode(lun).unwrap_or(0),
            cdb: cdb(q),
            dir: Direction::Read,
            datalen: len,
            data: Default::default(),
            deadline: None,
        }
    }
}

/// Is this completion one of the initiator's own commands?
pub fn is_internal(tag: Tag) -> bool {
    tag & INTERNAL_TAG != 0
}

impl Initiator {
    /// After a re-login: ask what the target has now.
    pub(super) fn recheck_luns(&mut self, sid: SessionId, now: Instant) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if s.vscsi_target.is_none() || s.luns_state.capacity.is_empty() {
            return;
        }
        debug!("{}: asking for the LUNs after the re-login", s.name());
        let t = s
            .luns_state
            .internal_task(Query::ReportLuns, UNIT_ATTENTION_RETRIES);
        if let Some(c) = s.conn.as_mut() {
            c.session.submit(t, now);
        }
    }

    /// One of our own commands finished.
    pub(super) fn internal_done(&mut self, sid: SessionId, c: Completion, now: Instant) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        let Some(q) = s.luns_state.internal.remove(&c.tag) else {
            return;
        };
        let ua = c.status == Outcome::Sense
            && c.sense
                .get(2)
                .is_some_and(|k| k & 0x0f == scsi::KEY_UNIT_ATTENTION);
        if ua && q.retries > 0 {
            let t = s.luns_state.internal_task(q.what, q.retries - 1);
            if let Some(conn) = s.conn.as_mut() {
                conn.session.submit(t, now);
            }
            return;
        }
        if c.status != Outcome::Good {
            debug!("{}: {:?} ended {:?}", s.name(), q.what, c.status);
            return;
        }
        let Some(target) = s.vscsi_target else { return };
        match q.what {
            Query::ReportLuns => {
                let Some(now_there) = parse_report_luns(&c.data) else {
                    return;
                };
                let had: Vec<u32> = s.luns_state.capacity.keys().copied().collect();
                for l in had {
                    if now_there.contains(&l) {
                        let t = s
                            .luns_state
                            .internal_task(Query::Capacity(l), UNIT_ATTENTION_RETRIES);
                        if let Some(conn) = s.conn.as_mut() {
                            conn.session.submit(t, now);
                        }
                    } else {
                        info!("{}: lun {l} is gone, detaching it", s.name());
                        s.luns_state.capacity.remove(&l);
                        s.luns.remove(&l);
                        self.actions.push_back(Action::Detach {
                            target,
                            lun: Some(l),
                        });
                    }
                }
            }
            Query::Capacity(l) => {
                let Some(new) = parse_capacity(SERVICE_ACTION_IN_16, &c.data) else {
                    return;
                };
                let Some(old) = s.luns_state.capacity.get(&l).copied() else {
                    return;
                };
                if old != new {
                    info!(
                        "{}: lun {l} changed from {} to {} blocks of {}, attaching it again",
                        s.name(),
                        old.blocks,
                        new.blocks,
                        new.block_size
                    );
                    s.luns_state.capacity.remove(&l);
                    self.actions.push_back(Action::Detach {
                        target,
                        lun: Some(l),
                    });
                    self.actions.push_back(Action::Probe {
                        target,
                        lun: Some(l),
                    });
                }
            }
        }
    }
}

/// Notes the size a kernel READ CAPACITY read.
pub fn kernel_completion(st: &mut LunState, c: &Completion) {
    let Some((lun, op)) = st.probes.remove(&c.tag) else {
        return;
    };
    if c.status == Outcome::Good {
        if let Some(cap) = parse_capacity(op, &c.data) {
            st.capacity.insert(lun, cap);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_both_forms() {
        let rc10 = [0, 0, 0x3f, 0xff, 0, 0, 2, 0];
        assert_eq!(
            parse_capacity(READ_CAPACITY_10, &rc10),
            Some(Capacity {
                blocks: 0x4000,
                block_size: 512
            })
        );
        // Saturated: the kernel asks READ CAPACITY(16) next.
        assert_eq!(parse_capacity(READ_CAPACITY_10, &[0xff; 8]), None);
        let mut rc16 = [0u8; 32];
        rc16[..8].copy_from_slice(&0x1_0000_0000u64.to_be_bytes());
        rc16[8..12].copy_from_slice(&4096u32.to_be_bytes());
        assert_eq!(
            parse_capacity(SERVICE_ACTION_IN_16, &rc16),
            Some(Capacity {
                blocks: 0x1_0000_0001,
                block_size: 4096
            })
        );
        assert_eq!(parse_capacity(SERVICE_ACTION_IN_16, &rc16[..11]), None);
        assert_eq!(parse_capacity(SERVICE_ACTION_IN_16, &[0xff; 12]), None);
    }

    #[test]
    fn report_luns_within_its_length() {
        let mut d = vec![0, 0, 0, 24, 0, 0, 0, 0];
        for l in [0u32, 3, 300] {
            d.extend_from_slice(&lun::encode(l).unwrap().to_be_bytes());
        }
        // An entry past the list length is not read.
        d.extend_from_slice(&lun::encode(7).unwrap().to_be_bytes());
        assert_eq!(parse_report_luns(&d), Some(vec![0, 3, 300]));
        assert_eq!(parse_report_luns(&d[..3]), None);
        assert!(is_read_capacity(&cdb(Query::Capacity(1))));
        assert!(!is_read_capacity(&cdb(Query::ReportLuns)));
    }
}
