//! Serial number arithmetic (RFC 1982, SERIAL_BITS = 32), which RFC 7143
//! requires for CmdSN, StatSN, DataSN and R2TSN comparisons.

/// `a < b` in serial arithmetic.
pub fn lt(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000_0000
}

/// `a > b` in serial arithmetic.
pub fn gt(a: u32, b: u32) -> bool {
    lt(b, a)
}

pub fn le(a: u32, b: u32) -> bool {
    a == b || lt(a, b)
}

pub fn ge(a: u32, b: u32) -> bool {
    a == b || gt(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps() {
        assert!(lt(1, 2));
        assert!(lt(0xffff_fff0, 5));
        assert!(gt(5, 0xffff_fff0));
        assert!(!lt(5, 5));
        assert!(le(5, 5) && ge(5, 5));
        assert!(!gt(0x8000_0000 + 1, 1) || lt(1, 0x8000_0000));
        assert!(gt(0x7fff_ffff, 0));
        assert!(lt(0x8000_0001, 0));
    }
}
