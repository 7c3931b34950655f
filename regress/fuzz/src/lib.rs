//! Helpers shared by the fuzz targets: a byte cursor for structured
//! inputs, key/value lists carved out of raw bytes, and a scripted iSCSI
//! target (`rig`) that drives a `Session` the way the unit tests do.

pub mod rig;

/// Reads a fuzz input front to back; every read past the end yields zeros
/// or an empty slice, so a target never has to special-case short inputs.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    data: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub fn new(data: &'a [u8]) -> Cursor<'a> {
        Cursor { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// Exactly `N` bytes, zero-padded at the end of the input.
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        let src = self.take(N);
        a[..src.len()].copy_from_slice(src);
        a
    }

    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// Splits raw bytes into rounds of key/value pairs without requiring
/// well-formed text, so the state machines behind the text decoder are
/// reached directly: 0xff separates rounds, NUL separates pairs, the first
/// '=' separates key from value; invalid UTF-8 is replaced.
pub fn kv_rounds(data: &[u8]) -> Vec<Vec<(String, String)>> {
    data.split(|&b| b == 0xff)
        .map(|round| {
            round
                .split(|&b| b == 0)
                .filter(|p| !p.is_empty())
                .map(|pair| {
                    let (k, v) = match pair.iter().position(|&b| b == b'=') {
                        Some(i) => (&pair[..i], &pair[i + 1..]),
                        None => (pair, &[][..]),
                    };
                    (
                        String::from_utf8_lossy(k).into_owned(),
                        String::from_utf8_lossy(v).into_owned(),
                    )
                })
                .collect()
        })
        .collect()
}

/// Splits `data` into pieces whose sizes come from `seed` (1..=max each,
/// cycling through a small xorshift sequence), for feeding stream decoders
/// in arbitrary chunks. `max` must be at least 1.
pub fn chunk_sizes(seed: u8, max: usize, total: usize) -> Vec<usize> {
    let mut x = u32::from(seed) | 0x100;
    let mut out = Vec::new();
    let mut left = total;
    while left > 0 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let n = (x as usize % max.max(1)) + 1;
        let n = n.min(left);
        out.push(n);
        left -= n;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_pads_past_the_end() {
        let mut c = Cursor::new(&[1, 2, 3]);
        assert_eq!(c.u16(), 0x0102);
        assert_eq!(c.u16(), 0x0300);
        assert_eq!(c.array::<2>(), [0, 0]);
        assert!(c.is_empty());
    }

    #[test]
    fn kv_rounds_split_on_ff_and_nul() {
        let r = kv_rounds(b"a=1\0b\0\xffc==x");
        assert_eq!(
            r,
            vec![
                vec![("a".into(), "1".into()), ("b".into(), String::new())],
                vec![("c".into(), "=x".into())],
            ]
        );
    }

    #[test]
    fn chunk_sizes_cover_the_total() {
        for seed in [0u8, 1, 77, 255] {
            let s = chunk_sizes(seed, 7, 100);
            assert_eq!(s.iter().sum::<usize>(), 100);
            assert!(s.iter().all(|&n| (1..=7).contains(&n)));
        }
        assert!(chunk_sizes(3, 5, 0).is_empty());
    }
}
