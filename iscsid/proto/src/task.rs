//! SCSI tasks: one kernel command carried over iSCSI (RFC 7143 sections
//! 11.3-11.8): the command PDU with immediate data, unsolicited Data-Out,
//! Data-Out answering R2Ts, Data-In, status and sense.

use std::time::Instant;

use super::negotiate::Params;
use super::pdu::status::{ACA_ACTIVE, BUSY, CHECK_CONDITION, GOOD, TASK_ABORTED, TASK_SET_FULL};
use super::pdu::{
    attr, scsi_rsp, DataIn, DataOut, Digests, Pdu, R2t, ScsiCommand, ScsiResponse, RESERVED_TAG,
};
use crate::scsi::{Direction, Outcome, SENSE_LEN};
use crate::tx::{Shared, TxQueue};

/// Who a command belongs to: kernel tags are 32 bits; the initiator's
/// own commands (REPORT LUNS after a re-login) have bit 32 set, so the
/// two can never be confused.
pub type Tag = u64;

/// The bit that marks the initiator's own commands.
pub const INTERNAL_TAG: Tag = 1 << 32;

/// A command as the engine hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScsiTask {
    /// Echoed in the completion: the kernel's tag, or one of the
    /// initiator's own commands (see [`Tag`]).
    pub tag: Tag,
    /// The 8-byte LUN field.
    pub lun: u64,
    pub cdb: Vec<u8>,
    pub dir: Direction,
    pub datalen: u32,
    /// All write data (the relay fetched it); empty otherwise. Shared with
    /// the send queue, which writes it from here.
    pub data: Shared,
    /// When the command times out: None when the kernel hands it over;
    /// set when it first goes on the wire and kept across reissues on
    /// later connections, so reconnecting never restarts the timer.
    pub deadline: Option<Instant>,
}

/// What goes back to the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub tag: Tag,
    /// The command's direction, for the error counters.
    pub dir: Direction,
    pub status: Outcome,
    pub sense: Vec<u8>,
    /// Read data the core gathered itself.
    pub data: Vec<u8>,
    /// Read data bytes that went through [`Placement`] instead (then
    /// `data` is empty).
    pub placed: u32,
}

/// Where a command's read data goes as it arrives, when the shell has a
/// buffer of its own for it (iscsid: the command's slot in the data
/// arena): each Data-In's data is copied there straight from the receive
/// buffer, instead of being gathered by the core and copied again.
pub trait Placement {
    /// Copies `data` to `offset` of `tag`'s buffer. False if there is no
    /// such buffer or it is too short; the core then gathers that
    /// command's data itself (if it is the first data of the command).
    fn place(&mut self, tag: Tag, offset: usize, data: &[u8]) -> bool;
}

/// No buffers of the shell's: the core gathers all read data.
pub struct Gather;

impl Placement for Gather {
    fn place(&mut self, _: Tag, _: usize, _: &[u8]) -> bool {
        false
    }
}

impl Completion {
    pub fn status_only(tag: Tag, dir: Direction, status: Outcome) -> Completion {
        Completion {
            tag,
            dir,
            status,
            sense: Vec::new(),
            data: Vec::new(),
            placed: 0,
        }
    }
}

/// What every PDU a task sends depends on.
#[derive(Debug, Clone, Copy)]
pub struct Wire<'a> {
    pub params: &'a Params,
    pub expstatsn: u32,
    pub digests: Digests,
}

#[derive(Debug)]
pub struct Task {
    pub req: ScsiTask,
    pub itt: u32,
    pub cmdsn: u32,
    /// Read data gathered so far, unless it is placed.
    rx: Vec<u8>,
    /// Read data bytes received so far, gathered or placed.
    rx_len: usize,
    /// The read data goes through the shell's `Placement`.
    placed: bool,
    next_datasn: u32,
    /// When we give up and abort (the same as `req.deadline`).
    pub deadline: Instant,
    next_r2tsn: u32,
    /// Bytes R2Ts asked for so far: never more than the command has, so a
    /// target cannot make us queue Data-Out without end.
    r2t_bytes: u64,
}

/// Something the target did wrong with a task; the connection must go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskError {
    NotARead,
    NotAWrite,
    R2tSn {
        expected: u32,
        got: u32,
    },
    R2tOverrun {
        asked: u64,
        datalen: u64,
    },
    DataSn {
        expected: u32,
        got: u32,
    },
    Overrun {
        offset: u32,
        len: usize,
        expected: u32,
    },
    BadR2t {
        offset: u32,
        len: u32,
        datalen: u32,
    },
    BurstTooLong {
        len: u32,
        max: u32,
    },
    /// Data-In not continuing where the previous one ended.
    Offset {
        expected: u32,
        got: u32,
    },
    Sense,
    /// The shell took a command's first read data and refused later data.
    Placement {
        offset: usize,
    },
}

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskError::NotARead => write!(f, "Data-In for a command that reads nothing"),
            TaskError::NotAWrite => write!(f, "R2T for a command that writes nothing"),
            TaskError::DataSn { expected, got } => {
                write!(f, "DataSN {got}, expected {expected}")
            }
            TaskError::Overrun {
                offset,
                len,
                expected,
            } => write!(
                f,
                "Data-In of {len} bytes at offset {offset} past the expected {expected}"
            ),
            TaskError::BadR2t {
                offset,
                len,
                datalen,
            } => write!(f, "R2T for {len} bytes at {offset}, command has {datalen}"),
            TaskError::R2tSn { expected, got } => write!(f, "R2TSN {got}, expected {expected}"),
            TaskError::R2tOverrun { asked, datalen } => {
                write!(f, "R2Ts asked for {asked} bytes of a {datalen}-byte write")
            }
            TaskError::BurstTooLong { len, max } => {
                write!(f, "R2T for {len} bytes, MaxBurstLength is {max}")
            }
            TaskError::Offset { expected, got } => {
                write!(f, "Data-In at offset {got}, expected {expected}")
            }
            TaskError::Sense => write!(f, "malformed sense data"),
            TaskError::Placement { offset } => {
                write!(f, "no room for read data at offset {offset}")
            }
        }
    }
}

impl std::error::Error for TaskError {}

impl Task {
    /// A task going on the wire. `deadline` applies unless the command
    /// already has one from an earlier connection.
    pub fn new(mut req: ScsiTask, itt: u32, cmdsn: u32, deadline: Instant) -> Task {
        let deadline = *req.deadline.get_or_insert(deadline);
        Task {
            req,
            itt,
            cmdsn,
            rx: Vec::new(),
            rx_len: 0,
            placed: false,
            next_datasn: 0,
            deadline,
            next_r2tsn: 0,
            r2t_bytes: 0,
        }
    }

    /// The SCSI Command PDU, then any unsolicited Data-Out (RFC 7143
    /// section 4.2.5.2): immediate data up to FirstBurstLength and the
    /// target's MaxRecvDataSegmentLength, then Data-Out PDUs until
    /// FirstBurstLength if InitialR2T=No.
    /// Writes the command and its unsolicited data; returns the PDUs.
    pub fn issue(&self, w: Wire<'_>, out: &mut TxQueue) -> u64 {
        let (p, expstatsn, dig) = (w.params, w.expstatsn, w.digests);
        let t = &self.req;
        let write = t.dir == Direction::Write;
        let total = if write { t.data.len() as u32 } else { 0 };
        let first_burst = p.first_burst.min(total);
        let sent = if write && p.immediate_data {
            first_burst.min(p.max_xmit_dsl)
        } else {
            0
        };
        let unsolicited = write && !p.initial_r2t && sent < first_burst;
        let cmd = Pdu::ScsiCommand(ScsiCommand {
            immediate: false,
            final_: !unsolicited,
            read: t.dir == Direction::Read,
            write,
            // SIMPLE: commands from the kernel may be reordered, as with
            // any tagged queueing HBA.
            attr: attr::SIMPLE,
            lun: t.lun,
            itt: self.itt,
            expected_len: t.datalen,
            cmdsn: self.cmdsn,
            expstatsn,
            cdb: t.cdb.clone(),
            bidi_read_len: None,
            data: Vec::new(),
        });
        // The data goes from the command's buffer straight to the wire.
        cmd.encode_shared(dig, &t.data, 0..sent as usize, out);
        if unsolicited {
            1 + self.data_out(sent, first_burst - sent, RESERVED_TAG, w, out)
        } else {
            1
        }
    }

    /// Data-Out PDUs for `len` bytes at `offset`, each at most the target's
    /// MaxRecvDataSegmentLength, DataSN from 0, F on the last.
    /// Data-Out PDUs for `len` bytes from `offset`; returns how many.
    fn data_out(&self, offset: u32, len: u32, ttt: u32, w: Wire<'_>, out: &mut TxQueue) -> u64 {
        let (p, expstatsn, dig) = (w.params, w.expstatsn, w.digests);
        let mss = p.max_xmit_dsl.max(1);
        let end = offset + len;
        let mut pos = offset;
        let mut datasn = 0;
        while pos < end {
            let n = mss.min(end - pos);
            let pdu = Pdu::DataOut(DataOut {
                final_: pos + n == end,
                lun: self.req.lun,
                itt: self.itt,
                ttt,
                expstatsn,
                datasn,
                buffer_offset: pos,
                data: Vec::new(),
            });
            pdu.encode_shared(dig, &self.req.data, pos as usize..(pos + n) as usize, out);
            pos += n;
            datasn += 1;
        }
        u64::from(datasn)
    }

    /// Answers an R2T with the Data-Out it asks for.
    /// Returns the Data-Out PDUs written.
    pub fn r2t(&mut self, r: &R2t, w: Wire<'_>, out: &mut TxQueue) -> Result<u64, TaskError> {
        let (offset, len, ttt) = (r.buffer_offset, r.desired_len, r.ttt);
        let p = w.params;
        if self.req.dir != Direction::Write {
            return Err(TaskError::NotAWrite);
        }
        if r.r2tsn != self.next_r2tsn {
            return Err(TaskError::R2tSn {
                expected: self.next_r2tsn,
                got: r.r2tsn,
            });
        }
        self.next_r2tsn = self.next_r2tsn.wrapping_add(1);
        self.r2t_bytes += u64::from(len);
        if self.r2t_bytes > self.req.data.len() as u64 {
            return Err(TaskError::R2tOverrun {
                asked: self.r2t_bytes,
                datalen: self.req.data.len() as u64,
            });
        }
        let datalen = self.req.data.len() as u32;
        if len == 0 || offset.checked_add(len).is_none_or(|e| e > datalen) {
            return Err(TaskError::BadR2t {
                offset,
                len,
                datalen,
            });
        }
        if len > p.max_burst {
            return Err(TaskError::BurstTooLong {
                len,
                max: p.max_burst,
            });
        }
        Ok(self.data_out(offset, len, ttt, w, out))
    }

    /// Takes a Data-In and its data (`data`, which the session keeps in
    /// its receive buffer). Returns the completion if it carries status.
    pub fn data_in(
        &mut self,
        d: &DataIn,
        data: &[u8],
        place: &mut dyn Placement,
    ) -> Result<Option<Completion>, TaskError> {
        if self.req.dir != Direction::Read && !data.is_empty() {
            return Err(TaskError::NotARead);
        }
        if d.datasn != self.next_datasn {
            return Err(TaskError::DataSn {
                expected: self.next_datasn,
                got: d.datasn,
            });
        }
        self.next_datasn = self.next_datasn.wrapping_add(1);
        let len = data.len();
        if len > 0 {
            // DataPDUInOrder=Yes always (we offer Yes to an OR): each PDU
            // continues where the last ended. A hole would otherwise reach
            // the kernel as zeros in a read that claims success.
            let have = self.rx_len;
            if d.buffer_offset as usize != have {
                return Err(TaskError::Offset {
                    expected: u32::try_from(have).unwrap_or(u32::MAX),
                    got: d.buffer_offset,
                });
            }
            if have
                .checked_add(len)
                .is_none_or(|e| e > self.req.datalen as usize)
            {
                return Err(TaskError::Overrun {
                    offset: d.buffer_offset,
                    len,
                    expected: self.req.datalen,
                });
            }
            if have == 0 {
                self.placed = place.place(self.req.tag, 0, data);
            } else if self.placed && !place.place(self.req.tag, have, data) {
                return Err(TaskError::Placement { offset: have });
            }
            if !self.placed {
                // One allocation for the whole transfer.
                if have == 0 {
                    self.rx.reserve_exact(self.req.datalen as usize);
                }
                self.rx.extend_from_slice(data);
            }
            self.rx_len = have + len;
        }
        if d.status_present {
            return Ok(Some(self.complete_with(d.status, &[])?));
        }
        Ok(None)
    }

    /// Takes the SCSI Response.
    pub fn response(&mut self, r: &ScsiResponse) -> Result<Completion, TaskError> {
        if r.response != scsi_rsp::COMPLETED {
            // The target could not execute the command: let the midlayer retry.
            return Ok(Completion::status_only(
                self.req.tag,
                self.req.dir,
                Outcome::Retry,
            ));
        }
        let sense = r.sense().map_err(|_| TaskError::Sense)?;
        self.complete_with(r.status, sense)
    }

    fn complete_with(&mut self, status: u8, sense: &[u8]) -> Result<Completion, TaskError> {
        let data = std::mem::take(&mut self.rx);
        let (status, sense) = match status {
            GOOD => (Outcome::Good, Vec::new()),
            CHECK_CONDITION if !sense.is_empty() => (Outcome::Sense, fixed_sense(sense)),
            // No sense to interpret (istgt does this for LBA out of
            // range): a retry would fail the same way, so fail it now.
            CHECK_CONDITION => (Outcome::Failed, Vec::new()),
            BUSY | TASK_SET_FULL | ACA_ACTIVE | TASK_ABORTED => (Outcome::Retry, Vec::new()),
            _ => (Outcome::Failed, Vec::new()),
        };
        let placed = if self.placed { self.rx_len as u32 } else { 0 };
        Ok(Completion {
            tag: self.req.tag,
            dir: self.req.dir,
            status,
            sense,
            data,
            placed,
        })
    }
}

/// vscsi(4) carries fixed-format sense only (18 bytes); targets may send
/// descriptor format (SPC-4 4.5.2), which is converted.
pub fn fixed_sense(s: &[u8]) -> Vec<u8> {
    let code = s.first().copied().unwrap_or(0) & 0x7f;
    if code != 0x72 && code != 0x73 {
        return s[..s.len().min(SENSE_LEN)].to_vec();
    }
    let mut f = vec![0u8; SENSE_LEN];
    f[0] = if code == 0x72 { 0x70 } else { 0x71 };
    f[2] = s.get(1).copied().unwrap_or(0) & 0x0f;
    f[7] = 10;
    f[12] = s.get(2).copied().unwrap_or(0);
    f[13] = s.get(3).copied().unwrap_or(0);
    // The information descriptor (type 0), if any, fills INFORMATION.
    let extra = usize::from(s.get(7).copied().unwrap_or(0));
    let descs = s.get(8..(8 + extra).min(s.len())).unwrap_or(&[]);
    let mut i = 0;
    while i + 2 <= descs.len() {
        let (ty, len) = (descs[i], usize::from(descs[i + 1]));
        if ty == 0 && len >= 0x0a && i + 12 <= descs.len() {
            let info = &descs[i + 4..i + 12];
            if info[..4].iter().all(|&b| b == 0) {
                f[0] |= 0x80;
                f[3..7].copy_from_slice(&info[4..8]);
            }
        }
        i += 2 + len;
    }
    f
}

/// Sense key, ASC and ASCQ of fixed or descriptor sense.
pub fn sense_codes(s: &[u8]) -> Option<(u8, u8, u8)> {
    let f = fixed_sense(s);
    if f.len() < 14 {
        return None;
    }
    Some((f[2] & 0x0f, f[12], f[13]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_sense_becomes_fixed() {
        // ILLEGAL REQUEST, LBA OUT OF RANGE, information 0x1234.
        let d = [
            0x72, 0x05, 0x21, 0x00, 0, 0, 0, 12, 0x00, 0x0a, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34,
        ];
        let f = fixed_sense(&d);
        assert_eq!(f.len(), SENSE_LEN);
        assert_eq!(f[0], 0xf0);
        assert_eq!(f[2], 0x05);
        assert_eq!(&f[3..7], &[0, 0, 0x12, 0x34]);
        assert_eq!((f[12], f[13]), (0x21, 0x00));
        assert_eq!(sense_codes(&d), Some((5, 0x21, 0)));
        // Fixed sense passes through, cut to 18 bytes.
        let mut fx = vec![0x70, 0, 0x06, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x3f, 0x0e];
        fx.resize(32, 0xee);
        assert_eq!(fixed_sense(&fx).len(), SENSE_LEN);
        assert_eq!(sense_codes(&fx), Some((6, 0x3f, 0x0e)));
        // Hostile: descriptor lengths past the end.
        let h = [0x72, 0x06, 0x29, 0x00, 0, 0, 0, 200, 0x00, 0xff];
        assert_eq!(sense_codes(&h), Some((6, 0x29, 0)));
        assert_eq!(sense_codes(&[]), None);
    }
}
