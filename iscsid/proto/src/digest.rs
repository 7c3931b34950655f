//! CRC32C header and data digests (RFC 7143 section 13.1; test vectors from
//! its CRC examples appendix, B.4 in RFC 3720).
//!
//! The RFC describes the digest bit-reflected and complemented, which is
//! exactly what the `crc32c` crate computes; the resulting `u32` goes on the
//! wire least significant byte first (32 zero bytes give 0x8a9136aa, sent
//! as `aa 36 91 8a`).

/// Bytes a digest takes on the wire.
pub const DIGEST_LEN: usize = 4;

/// CRC32C of one buffer.
pub fn crc32c(data: &[u8]) -> u32 {
    ::crc32c::crc32c(data)
}

/// CRC32C of the concatenation of `parts`, without concatenating them:
/// lets the header digest cover BHS and AHS, and the data digest cover
/// data and padding, wherever they live.
pub fn crc32c_parts(parts: &[&[u8]]) -> u32 {
    parts
        .iter()
        .fold(0, |crc, part| ::crc32c::crc32c_append(crc, part))
}

/// The four wire bytes of a digest.
pub fn to_wire(crc: u32) -> [u8; DIGEST_LEN] {
    crc.to_le_bytes()
}

/// A digest from its four wire bytes.
pub fn from_wire(bytes: [u8; DIGEST_LEN]) -> u32 {
    u32::from_le_bytes(bytes)
}

/// Appends the wire form of `crc` to `out`.
pub fn put_digest(out: &mut Vec<u8>, crc: u32) {
    out.extend_from_slice(&to_wire(crc));
}

/// Reads a digest from the first four bytes of `bytes`; `None` if shorter.
pub fn get_digest(bytes: &[u8]) -> Option<u32> {
    match bytes {
        [a, b, c, d, ..] => Some(from_wire([*a, *b, *c, *d])),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SCSI Read (10) command PDU of the RFC's CRC examples.
    const RFC_READ_PDU: [u8; 48] = [
        0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00,
        0x00, 0x18, 0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00,
    ];

    fn wire_of(data: &[u8]) -> [u8; 4] {
        to_wire(crc32c(data))
    }

    #[test]
    fn rfc_vectors_in_wire_order() {
        assert_eq!(wire_of(&[0u8; 32]), [0xaa, 0x36, 0x91, 0x8a]);
        assert_eq!(wire_of(&[0xffu8; 32]), [0x43, 0xab, 0xa8, 0x62]);
        let up: Vec<u8> = (0u8..32).collect();
        assert_eq!(wire_of(&up), [0x4e, 0x79, 0xdd, 0x46]);
        let down: Vec<u8> = (0u8..32).rev().collect();
        assert_eq!(wire_of(&down), [0x5c, 0xdb, 0x3f, 0x11]);
        assert_eq!(wire_of(&RFC_READ_PDU), [0x56, 0x3a, 0x96, 0xd9]);
    }

    #[test]
    fn rfc_vectors_as_values() {
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62a8_ab43);
        assert_eq!(crc32c(&RFC_READ_PDU), 0xd996_3a56);
    }

    #[test]
    fn parts_equal_whole() {
        for split in [0, 1, 3, 4, 17, 47, 48] {
            let (a, b) = RFC_READ_PDU.split_at(split);
            assert_eq!(crc32c_parts(&[a, b]), 0xd996_3a56, "split at {split}");
        }
        assert_eq!(
            crc32c_parts(&[&RFC_READ_PDU[..10], &[], &RFC_READ_PDU[10..]]),
            0xd996_3a56
        );
        assert_eq!(crc32c_parts(&[]), crc32c(&[]));
    }

    #[test]
    fn wire_round_trip() {
        let mut out = vec![0x99];
        put_digest(&mut out, 0x8a91_36aa);
        assert_eq!(out, [0x99, 0xaa, 0x36, 0x91, 0x8a]);
        assert_eq!(get_digest(&out[1..]), Some(0x8a91_36aa));
        assert_eq!(get_digest(&out[2..]), None);
        assert_eq!(get_digest(&[]), None);
        assert_eq!(from_wire([0x56, 0x3a, 0x96, 0xd9]), 0xd996_3a56);
    }
}
