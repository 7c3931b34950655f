//! vscsi(4) LUN numbers <-> the 8-byte SAM LUN field.
//!
//! The kernel names a LUN by a plain number (from REPORT LUNS byte 1 or a
//! scan of 0..7). We send numbers below 256 with peripheral device
//! addressing (as base does) and 256..16383 with flat space addressing, the
//! two single-level forms targets use. Larger numbers have no single-level
//! encoding; such commands fail with ILLEGAL REQUEST instead of killing the
//! daemon as base does.

/// Encodes a vscsi LUN, or None if it has no single-level form.
pub fn encode(lun: u32) -> Option<u64> {
    match lun {
        0..=255 => Some(u64::from(lun) << 48),
        256..=0x3fff => Some((0x4000 | u64::from(lun)) << 48),
        _ => None,
    }
}

/// Decodes a single-level LUN field (peripheral or flat space).
pub fn decode(field: u64) -> Option<u32> {
    let first = (field >> 48) as u16;
    if field & 0x0000_ffff_ffff_ffff != 0 {
        return None;
    }
    match first >> 14 {
        0 if first >> 8 == 0 => Some(u32::from(first & 0xff)),
        1 => Some(u32::from(first & 0x3fff)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(encode(0), Some(0));
        assert_eq!(encode(1), Some(0x0001_0000_0000_0000));
        assert_eq!(encode(255), Some(0x00ff_0000_0000_0000));
        assert_eq!(encode(256), Some(0x4100_0000_0000_0000));
        assert_eq!(encode(0x3fff), Some(0x7fff_0000_0000_0000));
        assert_eq!(encode(0x4000), None);
        for l in [0, 1, 7, 255, 256, 1000, 0x3fff] {
            assert_eq!(decode(encode(l).unwrap()), Some(l));
        }
        // Bus identifier set in peripheral addressing, second level present.
        assert_eq!(decode(0x0101_0000_0000_0000), None);
        assert_eq!(decode(0x0001_0001_0000_0000), None);
    }
}
