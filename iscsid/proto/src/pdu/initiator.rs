//! PDUs the initiator sends (RFC 7143 sections 11.3, 11.5, 11.7.1, 11.10,
//! 11.12, 11.14, 11.16, 11.18).

use super::wire::{
    self, bit, flag, get16, get32, get64, put16, put32, put64, AhsIter, Body, FINAL, IMMEDIATE,
};
use super::{PduError, BHS_CDB_LEN, BHS_LEN, MAX_CDB_LEN};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NopOut {
    pub immediate: bool,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub cmdsn: u32,
    pub expstatsn: u32,
    pub data: Vec<u8>,
}

impl Body for NopOut {
    fn put(&self, b: &mut [u8; BHS_LEN]) {
        b[0] = bit(self.immediate, IMMEDIATE);
        b[1] = FINAL;
        put64(b, 8, self.lun);
        put32(b, 16, self.itt);
        put32(b, 20, self.ttt);
        put32(b, 24, self.cmdsn);
        put32(b, 28, self.expstatsn);
    }

    fn get(b: &[u8; BHS_LEN], _ahs: &[u8], data: Vec<u8>) -> Result<Self, PduError> {
        Ok(NopOut {
            immediate: flag(b, 0, IMMEDIATE),
            lun: get64(b, 8),
            itt: get32(b, 16),
            ttt: get32(b, 20),
            cmdsn: get32(b, 24),
            expstatsn: get32(b, 28),
            data,
        })
    }
}

const CMD_READ: u8 = 0x40;
const CMD_WRITE: u8 = 0x20;
const CMD_ATTR: u8 = 0x07;

/// A SCSI Command. A CDB of up to 16 bytes travels in the BHS, zero-padded,
/// so it decodes as 16 bytes; a longer one (up to 260) puts the rest in an
/// Extended CDB AHS and decodes at its exact length.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScsiCommand {
    pub immediate: bool,
    pub final_: bool,
    pub read: bool,
    pub write: bool,
    pub attr: u8,
    pub lun: u64,
    pub itt: u32,
    pub expected_len: u32,
    pub cmdsn: u32,
    pub expstatsn: u32,
    pub cdb: Vec<u8>,
    /// Bidirectional Read Expected Data Transfer Length AHS, if present.
    pub bidi_read_len: Option<u32>,
    pub data: Vec<u8>,
}

impl ScsiCommand {
    /// CDB bytes beyond the BHS; longer CDBs than 260 bytes are cut there.
    fn cdb_tail(&self) -> &[u8] {
        let end = self.cdb.len().min(MAX_CDB_LEN);
        self.cdb.get(BHS_CDB_LEN..end).unwrap_or_default()
    }

    pub(super) fn ahs_wire_len(&self) -> usize {
        let tail = self.cdb_tail().len();
        let ext = if tail > 0 {
            wire::ahs_wire_len(tail)
        } else {
            0
        };
        let bidi = if self.bidi_read_len.is_some() {
            wire::ahs_wire_len(4)
        } else {
            0
        };
        ext + bidi
    }

    pub(super) fn put_ahs(&self, out: &mut Vec<u8>) {
        let tail = self.cdb_tail();
        if !tail.is_empty() {
            wire::put_ahs(out, wire::AHS_EXTENDED_CDB, tail);
        }
        if let Some(n) = self.bidi_read_len {
            wire::put_ahs(out, wire::AHS_BIDI_READ_LEN, &n.to_be_bytes());
        }
    }
}

impl Body for ScsiCommand {
    fn put(&self, b: &mut [u8; BHS_LEN]) {
        b[0] = bit(self.immediate, IMMEDIATE);
        b[1] = bit(self.final_, FINAL)
            | bit(self.read, CMD_READ)
            | bit(self.write, CMD_WRITE)
            | (self.attr & CMD_ATTR);
        put64(b, 8, self.lun);
        put32(b, 16, self.itt);
        put32(b, 20, self.expected_len);
        put32(b, 24, self.cmdsn);
        put32(b, 28, self.expstatsn);
        for (dst, src) in b[32..].iter_mut().zip(&self.cdb) {
            *dst = *src;
        }
    }

    fn get(b: &[u8; BHS_LEN], ahs: &[u8], data: Vec<u8>) -> Result<Self, PduError> {
        let mut cdb = b[32..].to_vec();
        let mut ext_seen = false;
        let mut bidi_read_len = None;
        for item in AhsIter::new(ahs) {
            let (ahs_type, spec) = item?;
            let invalid = PduError::AhsInvalid {
                ahs_type,
                len: spec.len(),
            };
            match ahs_type {
                wire::AHS_EXTENDED_CDB => {
                    // The AHS-specific field opens with a reserved byte.
                    let tail = spec.get(1..).unwrap_or_default();
                    if ext_seen || BHS_CDB_LEN + tail.len() > MAX_CDB_LEN {
                        return Err(invalid);
                    }
                    ext_seen = true;
                    cdb.extend_from_slice(tail);
                }
                wire::AHS_BIDI_READ_LEN => match *spec {
                    [_, x0, x1, x2, x3] if bidi_read_len.is_none() => {
                        bidi_read_len = Some(u32::from_be_bytes([x0, x1, x2, x3]));
                    }
                    _ => return Err(invalid),
                },
                // Reserved and vendor AHS types carry nothing we act on.
                _ => {}
            }
        }
        Ok(ScsiCommand {
            immediate: flag(b, 0, IMMEDIATE),
            final_: flag(b, 1, FINAL),
            read: flag(b, 1, CMD_READ),
            write: flag(b, 1, CMD_WRITE),
            attr: b[1] & CMD_ATTR,
            lun: get64(b, 8),
            itt: get32(b, 16),
            expected_len: get32(b, 20),
            cmdsn: get32(b, 24),
            expstatsn: get32(b, 28),
            cdb,
            bidi_read_len,
            data,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskMgmtReq {
    pub immediate: bool,
    /// Function code (7 bits), see `tmf`.
    pub function: u8,
    pub lun: u64,
    pub itt: u32,
    /// Referenced Task Tag.
    pub rtt: u32,
    pub cmdsn: u32,
    pub expstatsn: u32,
    pub refcmdsn: u32,
    pub expdatasn: u32,
}

impl Body for TaskMgmtReq {
    fn put(&self, b: &mut [u8; BHS_LEN]) {
        b[0] = bit(self.immediate, IMMEDIATE);
        b[1] = FINAL | (self.function & 0x7f);
        put64(b, 8, self.lun);
        put32(b, 16, self.itt);
        put32(b, 20, self.rtt);
        put32(b, 24, self.cmdsn);
        put32(b, 28, self.expstatsn);
        put32(b, 32, self.refcmdsn);
        put32(b, 36, self.expdatasn);
    }

    fn get(b: &[u8; BHS_LEN], _ahs: &[u8], _data: Vec<u8>) -> Result<Self, PduError> {
        Ok(TaskMgmtReq {
            immediate: flag(b, 0, IMMEDIATE),
            function: b[1] & 0x7f,
            lun: get64(b, 8),
            itt: get32(b, 16),
            rtt: get32(b, 20),
            cmdsn: get32(b, 24),
            expstatsn: get32(b, 28),
            refcmdsn: get32(b, 32),
            expdatasn: get32(b, 36),
        })
    }
}

pub(super) const TRANSIT: u8 = 0x80;
pub(super) const CONTINUE: u8 = 0x40;

/// Packs T, C, CSG and NSG into a Login PDU's byte 1.
pub(super) fn login_flags(transit: bool, cont: bool, csg: u8, nsg: u8) -> u8 {
    bit(transit, TRANSIT) | bit(cont, CONTINUE) | ((csg & 3) << 2) | (nsg & 3)
}

/// A Login Request; always sent immediate (RFC 7143 section 11.12).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoginReq {
    pub transit: bool,
    pub cont: bool,
    pub csg: u8,
    pub nsg: u8,
    pub version_max: u8,
    pub version_min: u8,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub itt: u32,
    pub cid: u16,
    pub cmdsn: u32,
    pub expstatsn: u32,
    pub data: Vec<u8>,
}

impl Body for LoginReq {
    fn put(&self, b: &mut [u8; BHS_LEN]) {
        b[0] = IMMEDIATE;
        b[1] = login_flags(self.transit, self.cont, self.csg, self.nsg);
        b[2] = self.version_max;
        b[3] = self.version_min;
        b[8..14].copy_from_slice(&self.isid);
        put16(b, 14, self.tsih);
        put32(b, 16, self.itt);
        put16(b, 20, self.cid);
        put32(b, 24, self.cmdsn);
        put32(b, 28, self.expstatsn);
    }

    fn get(b: &[u8; BHS_LEN], _ahs: &[u8], data: Vec<u8>) -> Result<Self, PduError> {
        Ok(LoginReq {
            transit: flag(b, 1, TRANSIT),
            cont: flag(b, 1, CONTINUE),
            csg: (b[1] >> 2) & 3,
            nsg: b[1] & 3,
            version_max: b[2],
            version_min: b[3],
            isid: [b[8], b[9], b[10], b[11], b[12], b[13]],
            tsih: get16(b, 14),
            itt: get32(b, 16),
            cid: get16(b, 20),
            cmdsn: get32(b, 24),
            expstatsn: get32(b, 28),
            data,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TextReq {
    pub immediate: bool,
    pub final_: bool,
    pub cont: bool,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub cmdsn: u32,
    pub expstatsn: u32,
    pub data: Vec<u8>,
}

impl Body for TextReq {
    fn put(&self, b: &mut [u8; BHS_LEN]) {
        b[0] = bit(self.immediate, IMMEDIATE);
        b[1] = bit(self.final_, FINAL) | bit(self.cont, CONTINUE);
        put64(b, 8, self.lun);
        put32(b, 16, self.itt);
        put32(b, 20, self.ttt);
        put32(b, 24, self.cmdsn);
        put32(b, 28, self.expstatsn);
    }

    fn get(b: &[u8; BHS_LEN], _ahs: &[u8], data: Vec<u8>) -> Result<Self, PduError> {
        Ok(TextReq {
            immediate: flag(b, 0, IMMEDIATE),
            final_: flag(b, 1, FINAL),
            cont: flag(b, 1, CONTINUE),
            lun: get64(b, 8),
            itt: get32(b, 16),
            ttt: get32(b, 20),
            cmdsn: get32(b, 24),
            expstatsn: get32(b, 28),
            data,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DataOut {
    pub final_: bool,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub expstatsn: u32,
    pub datasn: u32,
    pub buffer_offset: u32,
    pub data: Vec<u8>,
}

impl Body for DataOut {
    fn put(&self, b: &mut [u8; BHS_LEN]) {
        b[1] = bit(self.final_, FINAL);
        put64(b, 8, self.lun);
        put32(b, 16, self.itt);
        put32(b, 20, self.ttt);
        put32(b, 28, self.expstatsn);
        put32(b, 36, self.datasn);
        put32(b, 40, self.buffer_offset);
    }

    fn get(b: &[u8; BHS_LEN], _ahs: &[u8], data: Vec<u8>) -> Result<Self, PduError> {
        Ok(DataOut {
            final_: flag(b, 1, FINAL),
            lun: get64(b, 8),
            itt: get32(b, 16),
            ttt: get32(b, 20),
            expstatsn: get32(b, 28),
            datasn: get32(b, 36),
            buffer_offset: get32(b, 40),
            data,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogoutReq {
    pub immediate: bool,
    /// Reason code (7 bits), see `logout_reason`.
    pub reason: u8,
    pub itt: u32,
    pub cid: u16,
    pub cmdsn: u32,
    pub expstatsn: u32,
}

impl Body for LogoutReq {
    fn put(&self, b: &mut [u8; BHS_LEN]) {
        b[0] = bit(self.immediate, IMMEDIATE);
        b[1] = FINAL | (self.reason & 0x7f);
        put32(b, 16, self.itt);
        put16(b, 20, self.cid);
        put32(b, 24, self.cmdsn);
        put32(b, 28, self.expstatsn);
    }

    fn get(b: &[u8; BHS_LEN], _ahs: &[u8], _data: Vec<u8>) -> Result<Self, PduError> {
        Ok(LogoutReq {
            immediate: flag(b, 0, IMMEDIATE),
            reason: b[1] & 0x7f,
            itt: get32(b, 16),
            cid: get16(b, 20),
            cmdsn: get32(b, 24),
            expstatsn: get32(b, 28),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snack {
    /// SNACK type (4 bits), see `snack`.
    pub snack_type: u8,
    pub lun: u64,
    pub itt: u32,
    /// Target Transfer Tag or SNACK Tag.
    pub ttt: u32,
    pub expstatsn: u32,
    pub begrun: u32,
    pub runlength: u32,
}

impl Body for Snack {
    fn put(&self, b: &mut [u8; BHS_LEN]) {
        b[1] = FINAL | (self.snack_type & 0x0f);
        put64(b, 8, self.lun);
        put32(b, 16, self.itt);
        put32(b, 20, self.ttt);
        put32(b, 28, self.expstatsn);
        put32(b, 40, self.begrun);
        put32(b, 44, self.runlength);
    }

    fn get(b: &[u8; BHS_LEN], _ahs: &[u8], _data: Vec<u8>) -> Result<Self, PduError> {
        Ok(Snack {
            snack_type: b[1] & 0x0f,
            lun: get64(b, 8),
            itt: get32(b, 16),
            ttt: get32(b, 20),
            expstatsn: get32(b, 28),
            begrun: get32(b, 40),
            runlength: get32(b, 44),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::decode_wire;
    use super::super::{logout_reason, snack, tmf, Digests, Pdu, RESERVED_TAG};
    use super::*;

    const PLAIN: Digests = Digests {
        header: false,
        data: false,
    };

    /// Encodes `pdu`, compares with `expected`, and decodes it back.
    fn check(pdu: Pdu, expected: &[u8]) {
        let mut w = Vec::new();
        pdu.encode(PLAIN, &mut w);
        assert_eq!(w, expected, "{} encoding", pdu.name());
        assert_eq!(decode_wire(expected, PLAIN), Ok(pdu));
    }

    #[test]
    fn scsi_read_is_the_rfc_crc_example() {
        // RFC 7143 appendix B.4: READ(10) of 2 blocks, ITT 0x14000000,
        // CmdSN 0x14, ExpStatSN 0x18, header digest 56 3a 96 d9.
        #[rustfmt::skip]
        let expected = [
            0x01, 0xc0, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00,
            0x14, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x04, 0x00,
            0x00, 0x00, 0x00, 0x14,
            0x00, 0x00, 0x00, 0x18,
            0x28, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00,
            0x02, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00,
            0x56, 0x3a, 0x96, 0xd9,
        ];
        let cmd = ScsiCommand {
            final_: true,
            read: true,
            itt: 0x1400_0000,
            expected_len: 1024,
            cmdsn: 0x14,
            expstatsn: 0x18,
            cdb: vec![0x28, 0, 0, 0, 0, 0, 0, 0, 2, 0],
            ..Default::default()
        };
        let dig = Digests {
            header: true,
            data: true,
        };
        let mut w = Vec::new();
        Pdu::ScsiCommand(cmd.clone()).encode(dig, &mut w);
        assert_eq!(w, expected);
        // The 10-byte CDB comes back zero-padded to the BHS's 16 bytes.
        let mut padded = cmd;
        padded.cdb.resize(16, 0);
        assert_eq!(decode_wire(&w, dig), Ok(Pdu::ScsiCommand(padded)));
    }

    #[test]
    fn scsi_write_with_extended_cdb_and_immediate_data() {
        let cdb: Vec<u8> = (0u8..32).map(|i| if i == 0 { 0x7f } else { i }).collect();
        #[rustfmt::skip]
        let expected = [
            0x01, 0xa1, 0x00, 0x00, // F|W, ATTR simple
            0x05, 0x00, 0x00, 0x05, // 5 AHS words, 5 data bytes
            0x00, 0x01, 0x00, 0x00, // LUN 1
            0x00, 0x00, 0x00, 0x00,
            0x0a, 0x0b, 0x0c, 0x0d, // ITT
            0x00, 0x00, 0x02, 0x00, // EDTL 512
            0x00, 0x00, 0x00, 0x01, // CmdSN
            0x00, 0x00, 0x00, 0x02, // ExpStatSN
            0x7f, 0x01, 0x02, 0x03, // CDB[0..16]
            0x04, 0x05, 0x06, 0x07,
            0x08, 0x09, 0x0a, 0x0b,
            0x0c, 0x0d, 0x0e, 0x0f,
            0x00, 0x11, 0x01, 0x00, // AHSLength 17, Extended CDB, reserved
            0x10, 0x11, 0x12, 0x13, // CDB[16..32]
            0x14, 0x15, 0x16, 0x17,
            0x18, 0x19, 0x1a, 0x1b,
            0x1c, 0x1d, 0x1e, 0x1f,
            0x01, 0x02, 0x03, 0x04, // data
            0x05, 0x00, 0x00, 0x00, // data + padding
        ];
        check(
            Pdu::ScsiCommand(ScsiCommand {
                final_: true,
                write: true,
                attr: 1,
                lun: 0x0001_0000_0000_0000,
                itt: 0x0a0b_0c0d,
                expected_len: 512,
                cmdsn: 1,
                expstatsn: 2,
                cdb,
                data: vec![1, 2, 3, 4, 5],
                ..Default::default()
            }),
            &expected,
        );
    }

    #[test]
    fn cdb_lengths() {
        for len in 1..=MAX_CDB_LEN {
            let cdb: Vec<u8> = (0..len).map(|i| i as u8 ^ 0x5a).collect();
            let pdu = Pdu::ScsiCommand(ScsiCommand {
                cdb: cdb.clone(),
                bidi_read_len: (len % 2 == 0).then_some(len as u32),
                ..Default::default()
            });
            let mut w = Vec::new();
            pdu.encode(PLAIN, &mut w);
            let Ok(Pdu::ScsiCommand(got)) = decode_wire(&w, PLAIN) else {
                panic!("len {len} did not decode");
            };
            assert_eq!(&got.cdb[..len], &cdb[..]);
            assert_eq!(got.cdb.len(), len.max(16));
            assert!(got.cdb[len..].iter().all(|b| *b == 0));
            assert_eq!(got.bidi_read_len, (len % 2 == 0).then_some(len as u32));
        }
        // Over-long CDBs are cut at 260 rather than overflowing the AHS.
        let pdu = Pdu::ScsiCommand(ScsiCommand {
            cdb: vec![1; 300],
            ..Default::default()
        });
        let mut w = Vec::new();
        pdu.encode(PLAIN, &mut w);
        let Ok(Pdu::ScsiCommand(got)) = decode_wire(&w, PLAIN) else {
            panic!("no decode");
        };
        assert_eq!(got.cdb, vec![1; MAX_CDB_LEN]);
    }

    #[test]
    fn extended_cdb_32_round_trip_with_digests() {
        let cdb: Vec<u8> = (100..132).collect();
        let pdu = Pdu::ScsiCommand(ScsiCommand {
            final_: true,
            read: true,
            attr: 1,
            itt: 7,
            expected_len: 4096,
            cdb,
            ..Default::default()
        });
        let dig = Digests {
            header: true,
            data: true,
        };
        let mut w = Vec::new();
        pdu.encode(dig, &mut w);
        assert_eq!(w.len(), 48 + 20 + 4);
        assert_eq!(w[4], 5);
        assert_eq!(decode_wire(&w, dig), Ok(pdu));
    }

    fn cmd_bhs(ahs_words: u8) -> [u8; BHS_LEN] {
        let mut b = [0u8; BHS_LEN];
        b[0] = 0x01;
        b[4] = ahs_words;
        b
    }

    #[test]
    fn bad_command_ahs() {
        let two_ext = [0, 2, 1, 0, 0xaa, 0, 0, 0, 0, 2, 1, 0, 0xbb, 0, 0, 0];
        assert_eq!(
            Pdu::decode(&cmd_bhs(4), &two_ext, vec![]),
            Err(PduError::AhsInvalid {
                ahs_type: 1,
                len: 2
            })
        );
        let short_bidi = [0, 4, 2, 0, 0, 0, 1, 0];
        assert_eq!(
            Pdu::decode(&cmd_bhs(2), &short_bidi, vec![]),
            Err(PduError::AhsInvalid {
                ahs_type: 2,
                len: 4
            })
        );
        // 16 + 245 = 261 CDB bytes is one too many.
        let mut huge = vec![0u8; 252];
        huge[..3].copy_from_slice(&[0, 246, 1]);
        assert_eq!(
            Pdu::decode(&cmd_bhs(63), &huge, vec![]),
            Err(PduError::AhsInvalid {
                ahs_type: 1,
                len: 246
            })
        );
        huge.truncate(248);
        huge[1] = 245;
        let Ok(Pdu::ScsiCommand(c)) = Pdu::decode(&cmd_bhs(62), &huge, vec![]) else {
            panic!("260-byte CDB refused");
        };
        assert_eq!(c.cdb.len(), MAX_CDB_LEN);
        // AHS past the area.
        assert_eq!(
            Pdu::decode(&cmd_bhs(1), &[0, 8, 1, 0], vec![]),
            Err(PduError::AhsPastEnd { offset: 0, len: 8 })
        );
    }

    #[test]
    fn data_out() {
        #[rustfmt::skip]
        let expected = [
            0x05, 0x80, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x03,
            0x00, 0x02, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x10, // ITT
            0x00, 0x00, 0x12, 0x34, // TTT
            0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x07, // ExpStatSN
            0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x03, // DataSN
            0x00, 0x00, 0x20, 0x00, // Buffer Offset
            0x00, 0x00, 0x00, 0x00,
            0xde, 0xad, 0xbe, 0x00,
        ];
        check(
            Pdu::DataOut(DataOut {
                final_: true,
                lun: 0x0002_0000_0000_0000,
                itt: 0x10,
                ttt: 0x1234,
                expstatsn: 7,
                datasn: 3,
                buffer_offset: 0x2000,
                data: vec![0xde, 0xad, 0xbe],
            }),
            &expected,
        );
    }

    #[test]
    fn login_request() {
        let mut expected = vec![
            0x43, 0x87, 0x00, 0x00, // immediate, T, CSG 1, NSG 3
            0x00, 0x00, 0x00, 0x12, // 18 data bytes
            0x80, 0x12, 0x34, 0x56, // ISID
            0x78, 0x9a, 0x00, 0x00, // ISID, TSIH 0
            0x00, 0x00, 0x00, 0x01, // ITT
            0x00, 0x01, 0x00, 0x00, // CID 1
            0x00, 0x00, 0x00, 0x01, // CmdSN
            0x00, 0x00, 0x00, 0x00, // ExpStatSN
        ];
        expected.extend_from_slice(&[0; 16]);
        expected.extend_from_slice(b"HeaderDigest=None\0\0\0");
        check(
            Pdu::LoginReq(LoginReq {
                transit: true,
                cont: false,
                csg: 1,
                nsg: 3,
                isid: [0x80, 0x12, 0x34, 0x56, 0x78, 0x9a],
                itt: 1,
                cid: 1,
                cmdsn: 1,
                data: b"HeaderDigest=None\0".to_vec(),
                ..Default::default()
            }),
            &expected,
        );
    }

    #[test]
    fn login_is_always_immediate() {
        let mut w = Vec::new();
        Pdu::LoginReq(LoginReq::default()).encode(PLAIN, &mut w);
        assert_eq!(w[0], 0x43);
        // CSG/NSG are two bits each; stray high bits cannot leak into T/C.
        let mut w = Vec::new();
        Pdu::LoginReq(LoginReq {
            csg: 0xff,
            nsg: 0xfc,
            ..Default::default()
        })
        .encode(PLAIN, &mut w);
        assert_eq!(w[1], 0x0c);
    }

    #[test]
    fn nop_out() {
        let mut expected = vec![
            0x40, 0x80, 0x00, 0x00, // immediate
            0x00, 0x00, 0x00, 0x00, //
            0x00, 0x00, 0x00, 0x00, //
            0x00, 0x00, 0x00, 0x00, //
            0x00, 0x00, 0x00, 0x55, // ITT
            0xff, 0xff, 0xff, 0xff, // TTT
            0x00, 0x00, 0x00, 0x09, // CmdSN
            0x00, 0x00, 0x00, 0x04, // ExpStatSN
        ];
        expected.extend_from_slice(&[0; 16]);
        check(
            Pdu::NopOut(NopOut {
                immediate: true,
                itt: 0x55,
                ttt: RESERVED_TAG,
                cmdsn: 9,
                expstatsn: 4,
                ..Default::default()
            }),
            &expected,
        );
    }

    #[test]
    fn text_request() {
        let mut expected = vec![
            0x04, 0x80, 0x00, 0x00, // F
            0x00, 0x00, 0x00, 0x10, // 16 data bytes
            0x00, 0x00, 0x00, 0x00, //
            0x00, 0x00, 0x00, 0x00, //
            0x00, 0x00, 0x00, 0x02, // ITT
            0xff, 0xff, 0xff, 0xff, // TTT
            0x00, 0x00, 0x00, 0x03, // CmdSN
            0x00, 0x00, 0x00, 0x04, // ExpStatSN
        ];
        expected.extend_from_slice(&[0; 16]);
        expected.extend_from_slice(b"SendTargets=All\0");
        check(
            Pdu::TextReq(TextReq {
                final_: true,
                itt: 2,
                ttt: RESERVED_TAG,
                cmdsn: 3,
                expstatsn: 4,
                data: b"SendTargets=All\0".to_vec(),
                ..Default::default()
            }),
            &expected,
        );
        // C bit without F.
        let mut w = Vec::new();
        Pdu::TextReq(TextReq {
            cont: true,
            ..Default::default()
        })
        .encode(PLAIN, &mut w);
        assert_eq!(w[1], 0x40);
    }

    #[test]
    fn logout_request() {
        let mut expected = vec![
            0x46, 0x80, 0x00, 0x00, // immediate, close session
            0x00, 0x00, 0x00, 0x00, //
            0x00, 0x00, 0x00, 0x00, //
            0x00, 0x00, 0x00, 0x00, //
            0x00, 0x00, 0x00, 0x77, // ITT
            0x00, 0x01, 0x00, 0x00, // CID
            0x00, 0x00, 0x00, 0x0a, // CmdSN
            0x00, 0x00, 0x00, 0x0b, // ExpStatSN
        ];
        expected.extend_from_slice(&[0; 16]);
        check(
            Pdu::LogoutReq(LogoutReq {
                immediate: true,
                reason: logout_reason::CLOSE_SESSION,
                itt: 0x77,
                cid: 1,
                cmdsn: 10,
                expstatsn: 11,
            }),
            &expected,
        );
        let mut w = Vec::new();
        Pdu::LogoutReq(LogoutReq {
            reason: logout_reason::REMOVE_FOR_RECOVERY,
            ..Default::default()
        })
        .encode(PLAIN, &mut w);
        assert_eq!(&w[..2], &[0x06, 0x82]);
    }

    #[test]
    fn task_management_request() {
        let mut expected = vec![
            0x42, 0x81, 0x00, 0x00, // immediate, ABORT TASK
            0x00, 0x00, 0x00, 0x00, //
            0x00, 0x01, 0x00, 0x00, // LUN 1
            0x00, 0x00, 0x00, 0x00, //
            0x00, 0x00, 0x00, 0x20, // ITT
            0x00, 0x00, 0x00, 0x10, // Referenced Task Tag
            0x00, 0x00, 0x00, 0x05, // CmdSN
            0x00, 0x00, 0x00, 0x06, // ExpStatSN
            0x00, 0x00, 0x00, 0x04, // RefCmdSN
            0x00, 0x00, 0x00, 0x00, // ExpDataSN
        ];
        expected.extend_from_slice(&[0; 8]);
        check(
            Pdu::TaskMgmtReq(TaskMgmtReq {
                immediate: true,
                function: tmf::ABORT_TASK,
                lun: 0x0001_0000_0000_0000,
                itt: 0x20,
                rtt: 0x10,
                cmdsn: 5,
                expstatsn: 6,
                refcmdsn: 4,
                expdatasn: 0,
            }),
            &expected,
        );
    }

    #[test]
    fn snack_request() {
        let mut expected = vec![
            0x10, 0x81, 0x00, 0x00, // Status SNACK
            0x00, 0x00, 0x00, 0x00, //
            0x00, 0x00, 0x00, 0x00, //
            0x00, 0x00, 0x00, 0x00, //
            0xff, 0xff, 0xff, 0xff, // ITT
            0x00, 0x00, 0x00, 0x00, // TTT / SNACK Tag
            0x00, 0x00, 0x00, 0x00, //
            0x00, 0x00, 0x00, 0x0c, // ExpStatSN
        ];
        expected.extend_from_slice(&[0; 8]);
        expected.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 2]); // BegRun, RunLength
        check(
            Pdu::Snack(Snack {
                snack_type: snack::STATUS,
                lun: 0,
                itt: RESERVED_TAG,
                ttt: 0,
                expstatsn: 12,
                begrun: 8,
                runlength: 2,
            }),
            &expected,
        );
    }

    #[test]
    fn reserved_bits_are_ignored_and_masked() {
        // Reserved bytes 2-3 and 32-47 of a NOP-Out set: still decodes.
        let mut b = [0u8; BHS_LEN];
        b[0] = 0x00;
        b[1] = 0x80;
        b[2] = 0xff;
        b[40] = 0xff;
        let Ok(Pdu::NopOut(n)) = Pdu::decode(&b, &[], vec![]) else {
            panic!("reserved bits refused");
        };
        assert_eq!(n, NopOut::default());
        // Out-of-range field values do not spill into neighbouring bits.
        let mut w = Vec::new();
        Pdu::TaskMgmtReq(TaskMgmtReq {
            function: 0xff,
            ..Default::default()
        })
        .encode(PLAIN, &mut w);
        assert_eq!(w[1], 0xff);
        w.clear();
        Pdu::ScsiCommand(ScsiCommand {
            attr: 0xff,
            ..Default::default()
        })
        .encode(PLAIN, &mut w);
        assert_eq!(w[1], 0x07);
        w.clear();
        Pdu::Snack(Snack {
            snack_type: 0xff,
            ..Default::default()
        })
        .encode(PLAIN, &mut w);
        assert_eq!(w[1], 0x8f);
    }
}
