//! Byte-level helpers shared by the PDU codecs: big-endian fields at fixed
//! BHS offsets, padding, and the Additional Header Segment walk.
//!
//! BHS offsets are constants below 48 into a `[u8; BHS_LEN]`, so indexing
//! them cannot fail whatever the bytes say; everything whose length comes
//! off the wire goes through `get` and checked arithmetic instead.

use super::{PduError, BHS_LEN};

/// One PDU body's view of the BHS. `put` fills everything but the opcode
/// byte's low six bits, TotalAHSLength and DataSegmentLength, which the
/// caller owns because they depend on the AHS and data actually sent.
pub(super) trait Body: Sized {
    fn put(&self, b: &mut [u8; BHS_LEN]);
    fn get(b: &[u8; BHS_LEN], ahs: &[u8], data: Vec<u8>) -> Result<Self, PduError>;
}

pub(super) const IMMEDIATE: u8 = 0x40;
pub(super) const FINAL: u8 = 0x80;

pub(super) fn get16(b: &[u8; BHS_LEN], o: usize) -> u16 {
    u16::from_be_bytes([b[o], b[o + 1]])
}

pub(super) fn get32(b: &[u8; BHS_LEN], o: usize) -> u32 {
    u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

pub(super) fn get64(b: &[u8; BHS_LEN], o: usize) -> u64 {
    (u64::from(get32(b, o)) << 32) | u64::from(get32(b, o + 4))
}

pub(super) fn put16(b: &mut [u8; BHS_LEN], o: usize, v: u16) {
    b[o..o + 2].copy_from_slice(&v.to_be_bytes());
}

pub(super) fn put32(b: &mut [u8; BHS_LEN], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_be_bytes());
}

pub(super) fn put64(b: &mut [u8; BHS_LEN], o: usize, v: u64) {
    b[o..o + 8].copy_from_slice(&v.to_be_bytes());
}

pub(super) fn flag(b: &[u8; BHS_LEN], o: usize, mask: u8) -> bool {
    b[o] & mask != 0
}

pub(super) fn bit(set: bool, mask: u8) -> u8 {
    if set {
        mask
    } else {
        0
    }
}

/// Bytes of padding after `n` bytes to reach a 4-byte boundary.
pub(super) fn pad_len(n: usize) -> usize {
    n.wrapping_neg() & 3
}

/// The opcode-independent checks every no-data PDU shares.
pub(super) fn no_data(opcode: u8, data: &[u8]) -> Result<(), PduError> {
    if data.is_empty() {
        Ok(())
    } else {
        Err(PduError::UnexpectedData {
            opcode,
            len: data.len(),
        })
    }
}

/// AHS types (RFC 7143 section 11.2.2).
pub(super) const AHS_EXTENDED_CDB: u8 = 1;
pub(super) const AHS_BIDI_READ_LEN: u8 = 2;
/// Bytes before the AHS-specific field: AHSLength (2) and AHSType (1).
pub(super) const AHS_HEAD: usize = 3;

/// Walks the AHS area. Each item is the AHS type and its AHSLength bytes
/// of AHS-specific data (which starts with a reserved byte for both types
/// RFC 7143 defines). Stops after the first error.
pub(super) struct AhsIter<'a> {
    buf: &'a [u8],
    off: usize,
}

impl<'a> AhsIter<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        AhsIter { buf, off: 0 }
    }

    fn fail(&mut self, e: PduError) -> Option<Result<(u8, &'a [u8]), PduError>> {
        self.off = self.buf.len();
        Some(Err(e))
    }
}

impl<'a> Iterator for AhsIter<'a> {
    type Item = Result<(u8, &'a [u8]), PduError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.buf.get(self.off..).filter(|r| !r.is_empty())?;
        let offset = self.off;
        let [hi, lo, ahs_type, ..] = *rest else {
            return self.fail(PduError::AhsPastEnd { offset, len: 0 });
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        if len == 0 {
            return self.fail(PduError::AhsZeroLength { offset });
        }
        let Some(specific) = rest.get(AHS_HEAD..AHS_HEAD + len) else {
            return self.fail(PduError::AhsPastEnd { offset, len });
        };
        // AHS_HEAD + len <= rest.len() here, so the padded step stays in range
        // except for missing trailing padding, which the next call reports.
        let step = AHS_HEAD + len;
        self.off = offset + step + pad_len(step);
        Some(Ok((ahs_type, specific)))
    }
}

/// Validates the AHS structure without interpreting it.
pub(super) fn check_ahs(ahs: &[u8]) -> Result<(), PduError> {
    AhsIter::new(ahs).try_for_each(|r| r.map(|_| ()))
}

/// Appends one AHS (with its padding) holding a reserved byte then `body`.
pub(super) fn put_ahs(out: &mut Vec<u8>, ahs_type: u8, body: &[u8]) {
    let len = 1 + body.len();
    // Callers bound `body` far below u16::MAX (extended CDB <= 244 bytes).
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.push(ahs_type);
    out.push(0);
    out.extend_from_slice(body);
    out.resize(out.len() + pad_len(AHS_HEAD + len), 0);
}

/// Size on the wire of an AHS built by `put_ahs` with a `body_len` body.
pub(super) fn ahs_wire_len(body_len: usize) -> usize {
    let n = AHS_HEAD + 1 + body_len;
    n + pad_len(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding() {
        assert_eq!(
            (0..9).map(pad_len).collect::<Vec<_>>(),
            [0, 3, 2, 1, 0, 3, 2, 1, 0]
        );
        assert_eq!(pad_len(usize::MAX), 1);
    }

    #[test]
    fn fields_are_big_endian() {
        let mut b = [0u8; BHS_LEN];
        put16(&mut b, 0, 0x0102);
        put32(&mut b, 2, 0x0304_0506);
        put64(&mut b, 40, 0x1112_1314_1516_1718);
        assert_eq!(&b[..6], &[1, 2, 3, 4, 5, 6]);
        assert_eq!(&b[40..], &[0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18]);
        assert_eq!(get16(&b, 0), 0x0102);
        assert_eq!(get32(&b, 2), 0x0304_0506);
        assert_eq!(get64(&b, 40), 0x1112_1314_1516_1718);
    }

    #[test]
    fn ahs_walk() {
        let mut ahs = Vec::new();
        put_ahs(&mut ahs, AHS_BIDI_READ_LEN, &0x1234u32.to_be_bytes());
        put_ahs(&mut ahs, AHS_EXTENDED_CDB, &[9, 8]);
        assert_eq!(ahs, [0, 5, 2, 0, 0, 0, 0x12, 0x34, 0, 3, 1, 0, 9, 8, 0, 0]);
        assert_eq!(ahs.len(), ahs_wire_len(4) + ahs_wire_len(2));
        let items: Vec<_> = AhsIter::new(&ahs).collect();
        assert_eq!(
            items,
            [
                Ok((2, &[0u8, 0, 0, 0x12, 0x34][..])),
                Ok((1, &[0u8, 9, 8][..]))
            ]
        );
    }

    #[test]
    fn ahs_malformed() {
        assert_eq!(check_ahs(&[]), Ok(()));
        assert_eq!(
            check_ahs(&[0, 0, 1, 0]),
            Err(PduError::AhsZeroLength { offset: 0 })
        );
        assert_eq!(
            check_ahs(&[0, 1, 1, 0, 0, 9, 1, 0]),
            Err(PduError::AhsPastEnd { offset: 4, len: 9 })
        );
        assert_eq!(
            check_ahs(&[0xff, 0xff, 1, 0]),
            Err(PduError::AhsPastEnd {
                offset: 0,
                len: 0xffff
            })
        );
        assert_eq!(
            check_ahs(&[0, 1, 1, 0, 7]),
            Err(PduError::AhsPastEnd { offset: 4, len: 0 })
        );
        // The iterator stops after an error instead of resynchronising.
        let mut it = AhsIter::new(&[0, 0, 1, 0, 0, 1, 1, 0]);
        assert!(matches!(it.next(), Some(Err(_))));
        assert_eq!(it.next(), None);
    }
}
