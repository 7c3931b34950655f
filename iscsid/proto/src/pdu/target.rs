//! PDUs the target sends (RFC 7143 sections 11.4, 11.6, 11.7.2, 11.8,
//! 11.9, 11.11, 11.13, 11.15, 11.17, 11.19).

use super::initiator::{login_flags, CONTINUE, TRANSIT};
use super::wire::{bit, flag, get16, get32, get64, put16, put32, put64, Body, FINAL};
use super::{op, PduError, BHS_LEN, RESERVED_TAG};

/// StatSN, ExpCmdSN and MaxCmdSN sit at the same offsets in every target PDU.
fn put_sns(b: &mut [u8; BHS_LEN], statsn: u32, expcmdsn: u32, maxcmdsn: u32) {
    put32(b, 24, statsn);
    put32(b, 28, expcmdsn);
    put32(b, 32, maxcmdsn);
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NopIn {
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub statsn: u32,
    pub expcmdsn: u32,
    pub maxcmdsn: u32,
    pub data: Vec<u8>,
}

impl Body for NopIn {
    fn put(&self, b: &mut [u8; BHS_LEN]) {
        b[1] = FINAL;
        put64(b, 8, self.lun);
        put32(b, 16, self.itt);
        put32(b, 20, self.ttt);
        put_sns(b, self.statsn, self.expcmdsn, self.maxcmdsn);
    }

    fn get(b: &[u8; BHS_LEN], _ahs: &[u8], data: Vec<u8>) -> Result<Self, PduError> {
        Ok(NopIn {
            lun: get64(b, 8),
            itt: get32(b, 16),
            ttt: get32(b, 20),
            statsn: get32(b, 24),
            expcmdsn: get32(b, 28),
            maxcmdsn: get32(b, 32),
            data,
        })
    }
}

const RSP_BIDI_OVERFLOW: u8 = 0x10;
const RSP_BIDI_UNDERFLOW: u8 = 0x08;
const RSP_OVERFLOW: u8 = 0x04;
const RSP_UNDERFLOW: u8 = 0x02;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScsiResponse {
    pub bidi_overflow: bool,
    pub bidi_underflow: bool,
    pub overflow: bool,
    pub underflow: bool,
    /// iSCSI service response, see `scsi_rsp`.
    pub response: u8,
    /// SCSI status, see `status`.
    pub status: u8,
    pub itt: u32,
    pub snack_tag: u32,
    pub statsn: u32,
    pub expcmdsn: u32,
    pub maxcmdsn: u32,
    pub expdatasn: u32,
    pub bidi_residual: u32,
    pub residual: u32,
    /// SenseLength, sense data and any response data, as on the wire.
    pub data: Vec<u8>,
}

impl ScsiResponse {
    /// The sense data: the data segment opens with a 2-byte SenseLength
    /// (RFC 7143 section 11.4.7.1). No data segment means no sense.
    pub fn sense(&self) -> Result<&[u8], PduError> {
        match self.data.as_slice() {
            [] => Ok(&[]),
            [_] => Err(PduError::SenseTruncated),
            [hi, lo, rest @ ..] => {
                let declared = usize::from(u16::from_be_bytes([*hi, *lo]));
                rest.get(..declared).ok_or(PduError::SenseLength {
                    declared,
                    available: rest.len(),
                })
            }
        }
    }
}

impl Body for ScsiResponse {
    fn put(&self, b: &mut [u8; BHS_LEN]) {
        b[1] = FINAL
            | bit(self.bidi_overflow, RSP_BIDI_OVERFLOW)
            | bit(self.bidi_underflow, RSP_BIDI_UNDERFLOW)
            | bit(self.overflow, RSP_OVERFLOW)
            | bit(self.underflow, RSP_UNDERFLOW);
        b[2] = self.response;
        b[3] = self.status;
        put32(b, 16, self.itt);
        put32(b, 20, self.snack_tag);
        put_sns(b, self.statsn, self.expcmdsn, self.maxcmdsn);
        put32(b, 36, self.expdatasn);
        put32(b, 40, self.bidi_residual);
        put32(b, 44, self.residual);
    }

    fn get(b: &[u8; BHS_LEN], _ahs: &[u8], data: Vec<u8>) -> Result<Self, PduError> {
        let p = ScsiResponse {
            bidi_overflow: flag(b, 1, RSP_BIDI_OVERFLOW),
            bidi_underflow: flag(b, 1, RSP_BIDI_UNDERFLOW),
            overflow: flag(b, 1, RSP_OVERFLOW),
            underflow: flag(b, 1, RSP_UNDERFLOW),
            response: b[2],
            status: b[3],
            itt: get32(b, 16),
            snack_tag: get32(b, 20),
            statsn: get32(b, 24),
            expcmdsn: get32(b, 28),
            maxcmdsn: get32(b, 32),
            expdatasn: get32(b, 36),
            bidi_residual: get32(b, 40),
            residual: get32(b, 44),
            data,
        };
        // RFC 7143 section 11.4.1: each pair of residual bits is exclusive.
        if (p.overflow && p.underflow) || (p.bidi_overflow && p.bidi_underflow) {
            return Err(PduError::ResidualFlags {
                opcode: op::SCSI_RESPONSE,
            });
        }
        Ok(p)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskMgmtRsp {
    /// See `tmf_rsp`.
    pub response: u8,
    pub itt: u32,
    pub statsn: u32,
    pub expcmdsn: u32,
    pub maxcmdsn: u32,
}

impl Body for TaskMgmtRsp {
    fn put(&self, b: &mut [u8; BHS_LEN]) {
        b[1] = FINAL;
        b[2] = self.response;
        put32(b, 16, self.itt);
        put_sns(b, self.statsn, self.expcmdsn, self.maxcmdsn);
    }

    fn get(b: &[u8; BHS_LEN], _ahs: &[u8], _data: Vec<u8>) -> Result<Self, PduError> {
        Ok(TaskMgmtRsp {
            response: b[2],
            itt: get32(b, 16),
            statsn: get32(b, 24),
            expcmdsn: get32(b, 28),
            maxcmdsn: get32(b, 32),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoginRsp {
    pub transit: bool,
    pub cont: bool,
    pub csg: u8,
    pub nsg: u8,
    pub version_max: u8,
    pub version_active: u8,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub itt: u32,
    pub statsn: u32,
    pub expcmdsn: u32,
    pub maxcmdsn: u32,
    /// See `login_class`.
    pub status_class: u8,
    pub status_detail: u8,
    pub data: Vec<u8>,
}

impl Body for LoginRsp {
    fn put(&self, b: &mut [u8; BHS_LEN]) {
        b[1] = login_flags(self.transit, self.cont, self.csg, self.nsg);
        b[2] = self.version_max;
        b[3] = self.version_active;
        b[8..14].copy_from_slice(&self.isid);
        put16(b, 14, self.tsih);
        put32(b, 16, self.itt);
        put_sns(b, self.statsn, self.expcmdsn, self.maxcmdsn);
        b[36] = self.status_class;
        b[37] = self.status_detail;
    }

    fn get(b: &[u8; BHS_LEN], _ahs: &[u8], data: Vec<u8>) -> Result<Self, PduError> {
        Ok(LoginRsp {
            transit: flag(b, 1, TRANSIT),
            cont: flag(b, 1, CONTINUE),
            csg: (b[1] >> 2) & 3,
            nsg: b[1] & 3,
            version_max: b[2],
            version_active: b[3],
            isid: [b[8], b[9], b[10], b[11], b[12], b[13]],
            tsih: get16(b, 14),
            itt: get32(b, 16),
            statsn: get32(b, 24),
            expcmdsn: get32(b, 28),
            maxcmdsn: get32(b, 32),
            status_class: b[36],
            status_detail: b[37],
            data,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TextRsp {
    pub final_: bool,
    pub cont: bool,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub statsn: u32,
    pub expcmdsn: u32,
    pub maxcmdsn: u32,
    pub data: Vec<u8>,
}

impl Body for TextRsp {
    fn put(&self, b: &mut [u8; BHS_LEN]) {
        b[1] = bit(self.final_, FINAL) | bit(self.cont, CONTINUE);
        put64(b, 8, self.lun);
        put32(b, 16, self.itt);
        put32(b, 20, self.ttt);
        put_sns(b, self.statsn, self.expcmdsn, self.maxcmdsn);
    }

    fn get(b: &[u8; BHS_LEN], _ahs: &[u8], data: Vec<u8>) -> Result<Self, PduError> {
        Ok(TextRsp {
            final_: flag(b, 1, FINAL),
            cont: flag(b, 1, CONTINUE),
            lun: get64(b, 8),
            itt: get32(b, 16),
            ttt: get32(b, 20),
            statsn: get32(b, 24),
            expcmdsn: get32(b, 28),
            maxcmdsn: get32(b, 32),
            data,
        })
    }
}

const DATA_ACK: u8 = 0x40;
const DATA_STATUS: u8 = 0x01;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DataIn {
    pub final_: bool,
    pub ack: bool,
    pub overflow: bool,
    pub underflow: bool,
    /// S bit: this PDU also completes the command with `status`.
    pub status_present: bool,
    pub status: u8,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub statsn: u32,
    pub expcmdsn: u32,
    pub maxcmdsn: u32,
    pub datasn: u32,
    pub buffer_offset: u32,
    pub residual: u32,
    pub data: Vec<u8>,
}

impl Body for DataIn {
    fn put(&self, b: &mut [u8; BHS_LEN]) {
        b[1] = bit(self.final_, FINAL)
            | bit(self.ack, DATA_ACK)
            | bit(self.overflow, RSP_OVERFLOW)
            | bit(self.underflow, RSP_UNDERFLOW)
            | bit(self.status_present, DATA_STATUS);
        b[3] = self.status;
        put64(b, 8, self.lun);
        put32(b, 16, self.itt);
        put32(b, 20, self.ttt);
        put_sns(b, self.statsn, self.expcmdsn, self.maxcmdsn);
        put32(b, 36, self.datasn);
        put32(b, 40, self.buffer_offset);
        put32(b, 44, self.residual);
    }

    fn get(b: &[u8; BHS_LEN], _ahs: &[u8], data: Vec<u8>) -> Result<Self, PduError> {
        let p = DataIn {
            final_: flag(b, 1, FINAL),
            ack: flag(b, 1, DATA_ACK),
            overflow: flag(b, 1, RSP_OVERFLOW),
            underflow: flag(b, 1, RSP_UNDERFLOW),
            status_present: flag(b, 1, DATA_STATUS),
            status: b[3],
            lun: get64(b, 8),
            itt: get32(b, 16),
            ttt: get32(b, 20),
            statsn: get32(b, 24),
            expcmdsn: get32(b, 28),
            maxcmdsn: get32(b, 32),
            datasn: get32(b, 36),
            buffer_offset: get32(b, 40),
            residual: get32(b, 44),
            data,
        };
        if p.overflow && p.underflow {
            return Err(PduError::ResidualFlags {
                opcode: op::DATA_IN,
            });
        }
        // Status can only ride on the last PDU of the sequence (11.7).
        if p.status_present && !p.final_ {
            return Err(PduError::StatusWithoutFinal);
        }
        Ok(p)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogoutRsp {
    /// See `logout_rsp`.
    pub response: u8,
    pub itt: u32,
    pub statsn: u32,
    pub expcmdsn: u32,
    pub maxcmdsn: u32,
    pub time2wait: u16,
    pub time2retain: u16,
}

impl Body for LogoutRsp {
    fn put(&self, b: &mut [u8; BHS_LEN]) {
        b[1] = FINAL;
        b[2] = self.response;
        put32(b, 16, self.itt);
        put_sns(b, self.statsn, self.expcmdsn, self.maxcmdsn);
        put16(b, 40, self.time2wait);
        put16(b, 42, self.time2retain);
    }

    fn get(b: &[u8; BHS_LEN], _ahs: &[u8], _data: Vec<u8>) -> Result<Self, PduError> {
        Ok(LogoutRsp {
            response: b[2],
            itt: get32(b, 16),
            statsn: get32(b, 24),
            expcmdsn: get32(b, 28),
            maxcmdsn: get32(b, 32),
            time2wait: get16(b, 40),
            time2retain: get16(b, 42),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct R2t {
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub statsn: u32,
    pub expcmdsn: u32,
    pub maxcmdsn: u32,
    pub r2tsn: u32,
    pub buffer_offset: u32,
    pub desired_len: u32,
}

impl Body for R2t {
    fn put(&self, b: &mut [u8; BHS_LEN]) {
        b[1] = FINAL;
        put64(b, 8, self.lun);
        put32(b, 16, self.itt);
        put32(b, 20, self.ttt);
        put_sns(b, self.statsn, self.expcmdsn, self.maxcmdsn);
        put32(b, 36, self.r2tsn);
        put32(b, 40, self.buffer_offset);
        put32(b, 44, self.desired_len);
    }

    fn get(b: &[u8; BHS_LEN], _ahs: &[u8], _data: Vec<u8>) -> Result<Self, PduError> {
        Ok(R2t {
            lun: get64(b, 8),
            itt: get32(b, 16),
            ttt: get32(b, 20),
            statsn: get32(b, 24),
            expcmdsn: get32(b, 28),
            maxcmdsn: get32(b, 32),
            r2tsn: get32(b, 36),
            buffer_offset: get32(b, 40),
            desired_len: get32(b, 44),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AsyncMsg {
    pub lun: u64,
    pub statsn: u32,
    pub expcmdsn: u32,
    pub maxcmdsn: u32,
    /// See `async_event`.
    pub event: u8,
    pub vcode: u8,
    pub param1: u16,
    pub param2: u16,
    pub param3: u16,
    /// Sense data and/or iSCSI event data.
    pub data: Vec<u8>,
}

impl Body for AsyncMsg {
    fn put(&self, b: &mut [u8; BHS_LEN]) {
        b[1] = FINAL;
        put64(b, 8, self.lun);
        put32(b, 16, RESERVED_TAG);
        put_sns(b, self.statsn, self.expcmdsn, self.maxcmdsn);
        b[36] = self.event;
        b[37] = self.vcode;
        put16(b, 38, self.param1);
        put16(b, 40, self.param2);
        put16(b, 42, self.param3);
    }

    fn get(b: &[u8; BHS_LEN], _ahs: &[u8], data: Vec<u8>) -> Result<Self, PduError> {
        Ok(AsyncMsg {
            lun: get64(b, 8),
            statsn: get32(b, 24),
            expcmdsn: get32(b, 28),
            maxcmdsn: get32(b, 32),
            event: b[36],
            vcode: b[37],
            param1: get16(b, 38),
            param2: get16(b, 40),
            param3: get16(b, 42),
            data,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reject {
    /// See `reject`.
    pub reason: u8,
    pub statsn: u32,
    pub expcmdsn: u32,
    pub maxcmdsn: u32,
    pub datasn_r2tsn: u32,
    /// The header of the rejected PDU.
    pub data: Vec<u8>,
}

impl Body for Reject {
    fn put(&self, b: &mut [u8; BHS_LEN]) {
        b[1] = FINAL;
        b[2] = self.reason;
        put32(b, 16, RESERVED_TAG);
        put_sns(b, self.statsn, self.expcmdsn, self.maxcmdsn);
        put32(b, 36, self.datasn_r2tsn);
    }

    fn get(b: &[u8; BHS_LEN], _ahs: &[u8], data: Vec<u8>) -> Result<Self, PduError> {
        Ok(Reject {
            reason: b[2],
            statsn: get32(b, 24),
            expcmdsn: get32(b, 28),
            maxcmdsn: get32(b, 32),
            datasn_r2tsn: get32(b, 36),
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::decode_wire;
    use super::super::{
        async_event, login_class, logout_rsp, reject, status, tmf_rsp, Digests, Pdu,
    };
    use super::*;

    const PLAIN: Digests = Digests {
        header: false,
        data: false,
    };

    /// A hand-written BHS: 12 big-endian words.
    fn bhs(words: [u32; 12]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_be_bytes()).collect()
    }

    /// Decodes hand-written wire bytes and checks that encoding the result
    /// gives the same bytes back.
    fn decode(w: &[u8]) -> Pdu {
        let pdu = decode_wire(w, PLAIN).expect("decodes");
        let mut again = Vec::new();
        pdu.encode(PLAIN, &mut again);
        assert_eq!(again, w, "{} re-encoding", pdu.name());
        pdu
    }

    #[test]
    fn login_response() {
        let mut w = bhs([
            0x2387_0000, // T, CSG 1, NSG 3, Version-max 0, Version-active 0
            0x0000_0017, // 23 data bytes
            0x8012_3456,
            0x789a_0005, // ISID, TSIH 5
            0x0000_0001, // ITT
            0,
            0x0000_0007, // StatSN
            0x0000_0002, // ExpCmdSN
            0x0000_0009, // MaxCmdSN
            0x0000_0000, // Status-Class, Status-Detail
            0,
            0,
        ]);
        w.extend_from_slice(b"TargetPortalGroupTag=1\0\0");
        assert_eq!(
            decode(&w),
            Pdu::LoginRsp(LoginRsp {
                transit: true,
                cont: false,
                csg: 1,
                nsg: 3,
                version_max: 0,
                version_active: 0,
                isid: [0x80, 0x12, 0x34, 0x56, 0x78, 0x9a],
                tsih: 5,
                itt: 1,
                statsn: 7,
                expcmdsn: 2,
                maxcmdsn: 9,
                status_class: login_class::SUCCESS,
                status_detail: 0,
                data: b"TargetPortalGroupTag=1\0".to_vec(),
            })
        );
        // A failed login: class 2 (initiator error), detail 1.
        let mut w = bhs([0x2300_0000, 0, 0, 0, 1, 0, 7, 2, 9, 0x0201_0000, 0, 0]);
        let Pdu::LoginRsp(r) = decode(&w) else {
            panic!("not a Login Response")
        };
        assert_eq!((r.status_class, r.status_detail), (2, 1));
        assert!(!r.transit && r.csg == 0 && r.nsg == 0);
        w[1] = 0x44; // C with CSG 1
        let Pdu::LoginRsp(r) = decode(&w) else {
            panic!("not a Login Response")
        };
        assert!(r.cont && !r.transit && r.csg == 1);
    }

    #[test]
    fn scsi_response_with_sense() {
        let mut w = bhs([
            0x2180_0002, // response 0, status CHECK CONDITION
            0x0000_0014, // 20 data bytes
            0,
            0,
            0x0000_002a, // ITT
            0,           // SNACK Tag
            0x0000_0010, // StatSN
            0x0000_0011, // ExpCmdSN
            0x0000_0020, // MaxCmdSN
            0,
            0,
            0,
        ]);
        // SenseLength 18, then fixed-format sense: ILLEGAL REQUEST,
        // INVALID FIELD IN CDB (24h).
        #[rustfmt::skip]
        w.extend_from_slice(&[
            0x00, 0x12,
            0x70, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00,
            0x00, 0x00, 0x00, 0x24, 0x00, 0x00, 0x00, 0x00, 0x00,
        ]);
        let Pdu::ScsiResponse(r) = decode(&w) else {
            panic!("not a SCSI Response")
        };
        assert_eq!(r.status, status::CHECK_CONDITION);
        assert_eq!(r.response, 0);
        assert_eq!(
            (r.itt, r.statsn, r.expcmdsn, r.maxcmdsn),
            (0x2a, 0x10, 0x11, 0x20)
        );
        assert!(!r.overflow && !r.underflow && !r.bidi_overflow && !r.bidi_underflow);
        let sense = r.sense().unwrap();
        assert_eq!(sense.len(), 18);
        assert_eq!(sense[0], 0x70);
        assert_eq!(sense[2] & 0x0f, 5);
        assert_eq!(sense[12], 0x24);
    }

    #[test]
    fn scsi_response_residuals() {
        let w = bhs([
            0x2192_0000, // bidi overflow, underflow; GOOD
            0,
            0,
            0,
            0x0000_0003,
            0x0000_0001, // SNACK Tag
            0x0000_0004,
            0x0000_0005,
            0x0000_0006,
            0x0000_0002, // ExpDataSN
            0x0000_0100, // Bidi residual
            0x0000_0200, // residual
        ]);
        let Pdu::ScsiResponse(r) = decode(&w) else {
            panic!("not a SCSI Response")
        };
        assert!(r.bidi_overflow && !r.bidi_underflow && !r.overflow && r.underflow);
        assert_eq!((r.snack_tag, r.expdatasn), (1, 2));
        assert_eq!((r.bidi_residual, r.residual), (0x100, 0x200));
        assert_eq!(r.sense(), Ok(&[][..]));
    }

    #[test]
    fn data_in_with_status_and_residual() {
        let mut w = bhs([
            0x2583_0000, // F, U, S; status GOOD
            0x0000_0006, // 6 data bytes
            0,
            0,
            0x0000_002b, // ITT
            0xffff_ffff, // TTT
            0x0000_0012, // StatSN
            0x0000_0013, // ExpCmdSN
            0x0000_0022, // MaxCmdSN
            0x0000_0000, // DataSN
            0x0000_0000, // Buffer Offset
            0x0000_01fa, // Residual 506
        ]);
        w.extend_from_slice(&[1, 2, 3, 4, 5, 6, 0, 0]);
        let pdu = decode(&w);
        assert!(pdu.statsn_advances());
        assert_eq!(
            pdu,
            Pdu::DataIn(DataIn {
                final_: true,
                underflow: true,
                status_present: true,
                status: status::GOOD,
                itt: 0x2b,
                ttt: RESERVED_TAG,
                statsn: 0x12,
                expcmdsn: 0x13,
                maxcmdsn: 0x22,
                residual: 506,
                data: vec![1, 2, 3, 4, 5, 6],
                ..Default::default()
            })
        );
        // An intermediate Data-In with the A bit, no status.
        let mut w = bhs([
            0x2540_0000,
            4,
            0x0001_0000,
            0,
            0x2b,
            0x99,
            0x12,
            0x13,
            0x22,
            1,
            6,
            0,
        ]);
        w.extend_from_slice(&[7, 8, 9, 10]);
        let pdu = decode(&w);
        assert!(!pdu.statsn_advances());
        let Pdu::DataIn(d) = pdu else {
            panic!("not Data-In")
        };
        assert!(d.ack && !d.final_ && !d.status_present);
        assert_eq!(
            (d.lun, d.ttt, d.datasn, d.buffer_offset),
            (1 << 48, 0x99, 1, 6)
        );
    }

    #[test]
    fn r2t() {
        let w = bhs([
            0x3180_0000,
            0,
            0x0001_0000, // LUN 1
            0,
            0x0000_002c, // ITT
            0x0000_1001, // TTT
            0x0000_0013, // StatSN
            0x0000_0014, // ExpCmdSN
            0x0000_0023, // MaxCmdSN
            0x0000_0000, // R2TSN
            0x0000_2000, // Buffer Offset
            0x0001_0000, // Desired Data Transfer Length
        ]);
        let pdu = decode(&w);
        assert!(!pdu.statsn_advances());
        assert_eq!(
            pdu,
            Pdu::R2t(R2t {
                lun: 0x0001_0000_0000_0000,
                itt: 0x2c,
                ttt: 0x1001,
                statsn: 0x13,
                expcmdsn: 0x14,
                maxcmdsn: 0x23,
                r2tsn: 0,
                buffer_offset: 0x2000,
                desired_len: 0x1_0000,
            })
        );
    }

    #[test]
    fn nop_in_unsolicited() {
        let w = bhs([
            0x2080_0000,
            0,
            0,
            0,
            0xffff_ffff, // ITT: a target ping
            0x0000_0005, // TTT
            0x0000_0014,
            0x0000_0015,
            0x0000_0024,
            0,
            0,
            0,
        ]);
        let pdu = decode(&w);
        assert!(!pdu.statsn_advances());
        assert_eq!(pdu.itt(), RESERVED_TAG);
        assert_eq!(pdu.target_sns(), Some((0x14, 0x15, 0x24)));
        let Pdu::NopIn(n) = pdu else {
            panic!("not NOP-In")
        };
        assert_eq!(n.ttt, 5);
    }

    #[test]
    fn async_logout_request() {
        let mut w = bhs([
            0x3280_0000,
            0,
            0,
            0,
            0xffff_ffff,
            0xdead_beef, // reserved: ignored
            0x0000_0015, // StatSN
            0x0000_0016, // ExpCmdSN
            0x0000_0025, // MaxCmdSN
            0x0100_0000, // AsyncEvent 1, AsyncVCode 0, Parameter1 0
            0x0000_0005, // Parameter2 0, Parameter3 5
            0,
        ]);
        let pdu = decode_wire(&w, PLAIN).unwrap();
        assert!(pdu.statsn_advances());
        assert_eq!(
            pdu,
            Pdu::AsyncMsg(AsyncMsg {
                statsn: 0x15,
                expcmdsn: 0x16,
                maxcmdsn: 0x25,
                event: async_event::LOGOUT_REQUEST,
                param3: 5,
                ..Default::default()
            })
        );
        w[20..24].fill(0);
        assert_eq!(decode(&w), pdu);
    }

    #[test]
    fn reject_carries_rejected_header() {
        let rejected: Vec<u8> = (0..48).collect();
        let mut w = bhs([
            0x3f80_0900, // reason 9: invalid PDU field
            0x0000_0030, // 48 data bytes
            0,
            0,
            0xffff_ffff,
            0,
            0x0000_0016,
            0x0000_0017,
            0x0000_0026,
            0, // DataSN/R2TSN
            0,
            0,
        ]);
        w.extend_from_slice(&rejected);
        let pdu = decode(&w);
        assert_eq!(pdu.itt(), RESERVED_TAG);
        assert_eq!(
            pdu,
            Pdu::Reject(Reject {
                reason: reject::INVALID_PDU_FIELD,
                statsn: 0x16,
                expcmdsn: 0x17,
                maxcmdsn: 0x26,
                datasn_r2tsn: 0,
                data: rejected,
            })
        );
    }

    #[test]
    fn logout_response() {
        let w = bhs([
            0x2680_0000, // success
            0,
            0,
            0,
            0x0000_0077,
            0,
            0x0000_0017,
            0x0000_0018,
            0x0000_0027,
            0,
            0x0002_0014, // Time2Wait 2, Time2Retain 20
            0,
        ]);
        assert_eq!(
            decode(&w),
            Pdu::LogoutRsp(LogoutRsp {
                response: logout_rsp::SUCCESS,
                itt: 0x77,
                statsn: 0x17,
                expcmdsn: 0x18,
                maxcmdsn: 0x27,
                time2wait: 2,
                time2retain: 20,
            })
        );
    }

    #[test]
    fn task_management_response() {
        let w = bhs([
            0x2280_0100, // response 1: task does not exist
            0,
            0,
            0,
            0x0000_0020,
            0,
            0x0000_0018,
            0x0000_0019,
            0x0000_0028,
            0,
            0,
            0,
        ]);
        assert_eq!(
            decode(&w),
            Pdu::TaskMgmtRsp(TaskMgmtRsp {
                response: tmf_rsp::NO_TASK,
                itt: 0x20,
                statsn: 0x18,
                expcmdsn: 0x19,
                maxcmdsn: 0x28,
            })
        );
    }

    #[test]
    fn text_response() {
        let mut w = bhs([
            0x2480_0000, // F
            0x0000_001e, // 30 data bytes
            0,
            0,
            0x0000_0002,
            0xffff_ffff,
            0x0000_0019,
            0x0000_001a,
            0x0000_0029,
            0,
            0,
            0,
        ]);
        w.extend_from_slice(b"TargetAddress=10.0.0.1:3260,1\0\0\0");
        assert_eq!(
            decode(&w),
            Pdu::TextRsp(TextRsp {
                final_: true,
                cont: false,
                lun: 0,
                itt: 2,
                ttt: RESERVED_TAG,
                statsn: 0x19,
                expcmdsn: 0x1a,
                maxcmdsn: 0x29,
                data: b"TargetAddress=10.0.0.1:3260,1\0".to_vec(),
            })
        );
    }

    #[test]
    fn misbehaving_target_can_encode_forbidden_flags() {
        // Encoding never validates, so a test target can send what decode
        // must refuse.
        let mut w = Vec::new();
        Pdu::DataIn(DataIn {
            status_present: true,
            overflow: true,
            underflow: true,
            ..Default::default()
        })
        .encode(PLAIN, &mut w);
        assert_eq!(w[1], 0x07);
        let b: [u8; BHS_LEN] = w[..BHS_LEN].try_into().unwrap();
        assert_eq!(
            Pdu::decode(&b, &[], vec![]),
            Err(PduError::ResidualFlags {
                opcode: op::DATA_IN
            })
        );
    }
}
