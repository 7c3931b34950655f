//! Cuts PDUs out of a TCP byte stream and checks their digests.
//!
//! The framer owns one receive buffer. The connection reads straight into
//! [`Framer::spare`] (no intermediate copy), then [`Framer::next`] hands out
//! complete PDUs; the only copy on the way is the data segment moving into
//! the PDU's own `Vec`, and not even that for a Data-In when the caller
//! asks to copy it straight to its destination (`hold_data_in`). Once a header has been validated, `spare` offers
//! room for the whole rest of that PDU, so a large Data-In arrives in as
//! few reads as the kernel allows.

use std::fmt;
use std::ops::Range;

use super::digest::{self, DIGEST_LEN};
use super::pdu::{op, Digests, Pdu, PduError, BHS_LEN};

/// MaxRecvDataSegmentLength in force during login (RFC 7143 section 13.12).
pub const LOGIN_MAX_DATA: u32 = 8192;

/// Why the framer could not produce a PDU.
///
/// In the digest variants `expected` is the CRC computed over the received
/// bytes and `got` is the digest that came with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The header is corrupt, so its lengths cannot be trusted either: the
    /// stream is out of sync and the caller must drop the connection. The
    /// framer keeps reporting this error.
    HeaderDigest { expected: u32, got: u32 },
    /// The data segment is corrupt but framing is intact: the PDU (with
    /// the corrupt data) is returned for task-level recovery and the next
    /// call continues with the following PDU.
    DataDigest {
        pdu: Box<Pdu>,
        expected: u32,
        got: u32,
    },
    /// DataSegmentLength exceeds what we declared we accept. Fatal like a
    /// header digest error: the framer keeps reporting it.
    DataTooLong { len: u32, max: u32 },
    /// The PDU was framed correctly but does not decode; it has been
    /// consumed and the stream stays in sync.
    Pdu(PduError),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::HeaderDigest { expected, got } => {
                write!(f, "header digest {got:#010x}, computed {expected:#010x}")
            }
            FrameError::DataDigest { pdu, expected, got } => write!(
                f,
                "{} data digest {got:#010x}, computed {expected:#010x}",
                pdu.name()
            ),
            FrameError::DataTooLong { len, max } => {
                write!(f, "DataSegmentLength {len} exceeds our maximum {max}")
            }
            FrameError::Pdu(e) => write!(f, "malformed PDU: {e}"),
        }
    }
}

impl std::error::Error for FrameError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FrameError::Pdu(e) => Some(e),
            _ => None,
        }
    }
}

impl From<PduError> for FrameError {
    fn from(e: PduError) -> Self {
        FrameError::Pdu(e)
    }
}

/// Layout of the PDU at the front of the buffer, once its header is valid.
#[derive(Debug, Clone, Copy)]
struct Layout {
    bhs: [u8; BHS_LEN],
    ahs_len: usize,
    data_start: usize,
    data_len: usize,
    /// Data plus padding: what the data digest covers.
    padded_len: usize,
    total: usize,
}

/// Reassembles PDUs from a byte stream.
pub struct Framer {
    /// Bytes `start..end` are received and unconsumed; `end..` is spare.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max_data: u32,
    dig: Digests,
    /// Cache of the validated header at `start`, so a PDU arriving in many
    /// reads is parsed and header-digested once.
    pending: Option<Layout>,
    /// Data-In PDUs come back without their data, which stays in `buf`
    /// at `held` (see [`Framer::hold_data_in`]).
    hold_data_in: bool,
    held: Range<usize>,
}

impl Framer {
    /// `max_data` is the largest DataSegmentLength accepted (our
    /// MaxRecvDataSegmentLength; [`LOGIN_MAX_DATA`] during login).
    pub fn new(max_data: u32) -> Framer {
        Framer {
            buf: Vec::new(),
            start: 0,
            end: 0,
            max_data,
            dig: Digests::default(),
            pending: None,
            hold_data_in: false,
            held: 0..0,
        }
    }

    /// From now on a Data-In comes back from [`Framer::next`] with no data:
    /// its data segment stays in the receive buffer, [`Framer::held`],
    /// for the caller to copy straight to where it belongs.
    pub fn hold_data_in(&mut self) {
        self.hold_data_in = true;
    }

    /// The data of the Data-In the last [`Framer::next`] returned (empty
    /// after any other PDU). Valid until the next call that takes `&mut`.
    pub fn held(&self) -> &[u8] {
        self.buf.get(self.held.clone()).unwrap_or_default()
    }

    /// Digests apply from the next PDU not yet returned by [`Framer::next`].
    pub fn set_digests(&mut self, d: Digests) {
        self.dig = d;
        self.pending = None;
    }

    pub fn digests(&self) -> Digests {
        self.dig
    }

    pub fn set_max_data(&mut self, n: u32) {
        self.max_data = n;
        self.pending = None;
    }

    pub fn max_data(&self) -> u32 {
        self.max_data
    }

    /// Space to read into without copying: a writable slice of at least
    /// `min` bytes (and never empty, so a read into it cannot look like
    /// EOF; more if the PDU being received needs more) at the end of the
    /// buffer. Call [`Framer::filled`] with the bytes written.
    pub fn spare(&mut self, min: usize) -> &mut [u8] {
        let want = min.max(self.missing()).max(1);
        if self.buf.len() - self.end < want {
            self.compact();
            if self.buf.len() - self.end < want {
                self.buf.resize(self.end.saturating_add(want), 0);
            }
        }
        self.buf.get_mut(self.end..).unwrap_or_default()
    }

    /// Records that `n` bytes were written at the start of the last
    /// [`Framer::spare`] slice.
    pub fn filled(&mut self, n: usize) {
        self.end = self.end.saturating_add(n).min(self.buf.len());
    }

    /// Appends `bytes` (a copy; the connection should use `spare`).
    pub fn push(&mut self, bytes: &[u8]) {
        let n = bytes.len();
        if let Some(dst) = self.spare(n).get_mut(..n) {
            dst.copy_from_slice(bytes);
            self.filled(n);
        }
    }

    /// Gives the buffer back while nothing is in it: an idle connection
    /// holds no receive memory; the next read grows it again.
    pub fn release_if_empty(&mut self) {
        if self.start == self.end {
            self.buf = Vec::new();
            self.start = 0;
            self.end = 0;
        }
    }

    /// Bytes of receive buffer held.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Received bytes not yet returned as PDUs.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// One complete PDU, or `None` if more bytes are needed.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Pdu>, FrameError> {
        let layout = match self.pending {
            Some(l) => l,
            None => match self.parse_header()? {
                Some(l) => {
                    self.pending = Some(l);
                    l
                }
                None => return Ok(None),
            },
        };
        let Some(raw) = self.avail().get(..layout.total) else {
            return Ok(None);
        };
        let ahs = raw
            .get(BHS_LEN..BHS_LEN + layout.ahs_len)
            .unwrap_or_default();
        let padded = raw
            .get(layout.data_start..layout.data_start + layout.padded_len)
            .unwrap_or_default();
        let hold = self.hold_data_in && layout.bhs[0] & 0x3f == op::DATA_IN;
        let bad_digest = if self.dig.data && layout.data_len > 0 {
            let expected = digest::crc32c(padded);
            let got = raw
                .get(layout.data_start + layout.padded_len..)
                .and_then(digest::get_digest);
            (got != Some(expected)).then(|| (expected, got.unwrap_or_default()))
        } else {
            None
        };
        let (decoded, held) = if hold {
            let at = self.start + layout.data_start;
            (
                Pdu::decode_data_in_header(&layout.bhs, ahs, layout.data_len),
                at..at + layout.data_len,
            )
        } else {
            let data = padded.get(..layout.data_len).unwrap_or_default().to_vec();
            (Pdu::decode(&layout.bhs, ahs, data), 0..0)
        };
        self.held = held;
        // The held bytes stay where they are: consuming moves only indices.
        self.consume(layout.total);
        let pdu = decoded?;
        match bad_digest {
            Some((expected, got)) => Err(FrameError::DataDigest {
                pdu: Box::new(pdu),
                expected,
                got,
            }),
            None => Ok(Some(pdu)),
        }
    }

    fn avail(&self) -> &[u8] {
        self.buf.get(self.start..self.end).unwrap_or_default()
    }

    /// Validates the header at the front of the buffer, if all there.
    fn parse_header(&self) -> Result<Option<Layout>, FrameError> {
        let avail = self.avail();
        let Some(front) = avail.get(..BHS_LEN) else {
            return Ok(None);
        };
        let mut bhs = [0u8; BHS_LEN];
        bhs.copy_from_slice(front);
        let ahs_len = Pdu::ahs_len(&bhs);
        let header_len = BHS_LEN + ahs_len;
        let mut data_start = header_len;
        if self.dig.header {
            data_start += DIGEST_LEN;
            let Some(header) = avail.get(..data_start) else {
                return Ok(None);
            };
            let (covered, wire) = header.split_at(header_len);
            let expected = digest::crc32c(covered);
            let got = digest::get_digest(wire);
            if got != Some(expected) {
                return Err(FrameError::HeaderDigest {
                    expected,
                    got: got.unwrap_or_default(),
                });
            }
        }
        let len = Pdu::data_segment_len(&bhs);
        if len > self.max_data {
            return Err(FrameError::DataTooLong {
                len,
                max: self.max_data,
            });
        }
        // len <= 2^24, so none of this can overflow even on 32-bit targets.
        let data_len = len as usize;
        let padded_len = data_len + (data_len.wrapping_neg() & 3);
        let ddigest = if self.dig.data && data_len > 0 {
            DIGEST_LEN
        } else {
            0
        };
        Ok(Some(Layout {
            bhs,
            ahs_len,
            data_start,
            data_len,
            padded_len,
            total: data_start + padded_len + ddigest,
        }))
    }

    /// Bytes still to arrive before the PDU at the front can be returned
    /// (or, while its header is not validated yet, examined).
    fn missing(&self) -> usize {
        let need = match (self.pending, self.avail().get(4)) {
            (Some(l), _) => l.total,
            (None, Some(words)) if self.buffered() >= BHS_LEN => {
                let digest = if self.dig.header { DIGEST_LEN } else { 0 };
                BHS_LEN + usize::from(*words) * 4 + digest
            }
            (None, _) => BHS_LEN,
        };
        need.saturating_sub(self.buffered())
    }

    fn consume(&mut self, n: usize) {
        self.start = self.start.saturating_add(n).min(self.end);
        self.pending = None;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Moves unconsumed bytes to the front so spare room is contiguous.
    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::{DataIn, LoginRsp, NopIn, NopOut, R2t, ScsiCommand, ScsiResponse, TextRsp};

    const ALL_DIGESTS: [Digests; 4] = [
        Digests {
            header: false,
            data: false,
        },
        Digests {
            header: true,
            data: false,
        },
        Digests {
            header: false,
            data: true,
        },
        Digests {
            header: true,
            data: true,
        },
    ];

    fn samples() -> Vec<Pdu> {
        vec![
            Pdu::NopIn(NopIn {
                itt: RESERVED,
                ttt: 7,
                statsn: 1,
                expcmdsn: 2,
                maxcmdsn: 3,
                ..Default::default()
            }),
            Pdu::DataIn(DataIn {
                final_: true,
                status_present: true,
                underflow: true,
                itt: 9,
                residual: 3,
                datasn: 4,
                data: vec![1, 2, 3, 4, 5],
                ..Default::default()
            }),
            Pdu::ScsiCommand(ScsiCommand {
                final_: true,
                write: true,
                itt: 10,
                cdb: (0..32).collect(),
                bidi_read_len: Some(99),
                data: vec![0xab; 7],
                ..Default::default()
            }),
            Pdu::TextRsp(TextRsp {
                final_: true,
                itt: 11,
                ttt: RESERVED,
                data: b"TargetName=iqn.x\0".to_vec(),
                ..Default::default()
            }),
            Pdu::R2t(R2t {
                itt: 12,
                desired_len: 4096,
                ..Default::default()
            }),
        ]
    }

    const RESERVED: u32 = crate::pdu::RESERVED_TAG;

    fn wire(pdus: &[Pdu], dig: Digests) -> Vec<u8> {
        let mut out = Vec::new();
        for p in pdus {
            p.encode(dig, &mut out);
        }
        out
    }

    fn drain(f: &mut Framer) -> Vec<Pdu> {
        let mut got = Vec::new();
        while let Some(p) = f.next().expect("clean stream") {
            got.push(p);
        }
        got
    }

    #[test]
    fn several_pdus_in_one_push() {
        for dig in ALL_DIGESTS {
            let pdus = samples();
            let mut f = Framer::new(LOGIN_MAX_DATA);
            f.set_digests(dig);
            f.push(&wire(&pdus, dig));
            assert_eq!(drain(&mut f), pdus, "{dig:?}");
            assert_eq!(f.buffered(), 0);
            assert_eq!(f.next(), Ok(None));
        }
    }

    /// Held Data-In data: the PDU without it, the bytes in the buffer until
    /// the next call; every other PDU as before.
    #[test]
    fn held_data_in_stays_in_the_buffer() {
        for dig in ALL_DIGESTS {
            let pdus = samples();
            let mut f = Framer::new(LOGIN_MAX_DATA);
            f.set_digests(dig);
            f.hold_data_in();
            f.push(&wire(&pdus, dig));
            for want in &pdus {
                let got = f.next().expect("decodes").expect("a PDU");
                match (want, got) {
                    (Pdu::DataIn(w), Pdu::DataIn(g)) => {
                        assert!(g.data.is_empty());
                        assert_eq!(f.held(), w.data.as_slice(), "{dig:?}");
                        let mut g = g;
                        g.data = w.data.clone();
                        assert_eq!(&g, w);
                    }
                    (w, g) => {
                        assert_eq!(&g, w);
                        assert!(f.held().is_empty());
                    }
                }
            }
            assert_eq!(f.next(), Ok(None));
        }
    }

    #[test]
    fn byte_at_a_time() {
        for dig in ALL_DIGESTS {
            let pdus = samples();
            let bytes = wire(&pdus, dig);
            let mut f = Framer::new(LOGIN_MAX_DATA);
            f.set_digests(dig);
            let mut got = Vec::new();
            for (i, b) in bytes.iter().enumerate() {
                f.push(&[*b]);
                while let Some(p) = f.next().expect("clean stream") {
                    got.push((i, p));
                }
            }
            // Each PDU pops out exactly on its last byte.
            let mut end = 0;
            for (i, p) in &got {
                end += p.encoded_len(dig);
                assert_eq!(*i + 1, end, "{}", p.name());
            }
            let got: Vec<Pdu> = got.into_iter().map(|(_, p)| p).collect();
            assert_eq!(got, pdus, "{dig:?}");
        }
    }

    #[test]
    fn spare_and_filled_read_without_copy() {
        let pdu = Pdu::DataIn(DataIn {
            final_: true,
            itt: 1,
            data: vec![0x5a; 5000],
            ..Default::default()
        });
        let bytes = wire(std::slice::from_ref(&pdu), Digests::default());
        let mut f = Framer::new(LOGIN_MAX_DATA);
        let s = f.spare(16);
        assert!(s.len() >= BHS_LEN, "room for a BHS before any header");
        s[..BHS_LEN].copy_from_slice(&bytes[..BHS_LEN]);
        f.filled(BHS_LEN);
        assert_eq!(f.next(), Ok(None));
        // The header is known now: spare offers the whole remainder.
        let s = f.spare(1);
        assert!(s.len() >= bytes.len() - BHS_LEN, "spare {}", s.len());
        s[..bytes.len() - BHS_LEN].copy_from_slice(&bytes[BHS_LEN..]);
        f.filled(bytes.len() - BHS_LEN);
        assert_eq!(f.buffered(), bytes.len());
        assert_eq!(f.next(), Ok(Some(pdu)));
        assert_eq!(f.buffered(), 0);
        // Claiming more than the spare slice is clamped, never past the end.
        let room = f.spare(8).len();
        f.filled(room + 100);
        assert_eq!(f.buffered(), room);
    }

    #[test]
    fn spare_is_never_empty_and_covers_pending_header() {
        let mut f = Framer::new(LOGIN_MAX_DATA);
        assert!(!f.spare(0).is_empty());
        f.set_digests(Digests {
            header: true,
            data: false,
        });
        let mut bhs = [0u8; BHS_LEN];
        bhs[4] = 7; // 28 AHS bytes still to come, then the digest
        f.push(&bhs);
        assert_eq!(f.next(), Ok(None));
        assert!(f.spare(1).len() >= 28 + DIGEST_LEN);
    }

    #[test]
    fn compaction_keeps_partial_pdu() {
        let pdus = samples();
        let bytes = wire(&pdus, Digests::default());
        let mut f = Framer::new(LOGIN_MAX_DATA);
        let mut got = Vec::new();
        for chunk in bytes.chunks(37) {
            let s = f.spare(chunk.len());
            s[..chunk.len()].copy_from_slice(chunk);
            f.filled(chunk.len());
            got.extend(drain(&mut f));
        }
        assert_eq!(got, pdus);
        assert!(f.buf.len() < 2 * bytes.len(), "buffer {}", f.buf.len());
    }

    #[test]
    fn padding_one_to_three_bytes_stays_in_sync() {
        for dig in ALL_DIGESTS {
            let pdus: Vec<Pdu> = (1..=8u8)
                .map(|n| {
                    Pdu::NopOut(NopOut {
                        itt: u32::from(n),
                        ttt: RESERVED,
                        data: vec![n; usize::from(n)],
                        ..Default::default()
                    })
                })
                .collect();
            let mut f = Framer::new(LOGIN_MAX_DATA);
            f.set_digests(dig);
            f.push(&wire(&pdus, dig));
            assert_eq!(drain(&mut f), pdus);
        }
    }

    #[test]
    fn header_digest_error_is_sticky() {
        let dig = Digests {
            header: true,
            data: false,
        };
        let mut bytes = wire(&samples(), dig);
        let good = digest::get_digest(&bytes[BHS_LEN..]).unwrap();
        bytes[20] ^= 0x01;
        let mut f = Framer::new(LOGIN_MAX_DATA);
        f.set_digests(dig);
        f.push(&bytes);
        let err = f.next().unwrap_err();
        match &err {
            FrameError::HeaderDigest { expected, got } => {
                assert_eq!(*got, good);
                assert_eq!(*expected, digest::crc32c(&bytes[..BHS_LEN]));
                assert_ne!(expected, got);
            }
            e => panic!("wrong error {e:?}"),
        }
        assert_eq!(f.next(), Err(err));
        assert_eq!(f.buffered(), bytes.len());
    }

    #[test]
    fn header_digest_waits_for_ahs_and_digest() {
        let dig = Digests {
            header: true,
            data: true,
        };
        let pdu = &samples()[2]; // SCSI Command with 20 + 8 bytes of AHS
        let bytes = wire(std::slice::from_ref(pdu), dig);
        let mut f = Framer::new(LOGIN_MAX_DATA);
        f.set_digests(dig);
        f.push(&bytes[..BHS_LEN + 28 + 3]);
        assert_eq!(f.next(), Ok(None));
        f.push(&bytes[BHS_LEN + 28 + 3..]);
        assert_eq!(f.next(), Ok(Some(pdu.clone())));
    }

    #[test]
    fn data_digest_error_returns_pdu_and_stays_in_sync() {
        let dig = Digests {
            header: true,
            data: true,
        };
        let pdus = samples();
        let mut bytes = wire(&pdus, dig);
        // First data byte of the Data-In (second PDU).
        let data_at = pdus[0].encoded_len(dig) + BHS_LEN + DIGEST_LEN;
        bytes[data_at] ^= 0xff;
        let mut f = Framer::new(LOGIN_MAX_DATA);
        f.set_digests(dig);
        f.push(&bytes);
        assert_eq!(f.next(), Ok(Some(pdus[0].clone())));
        match f.next() {
            Err(FrameError::DataDigest { pdu, expected, got }) => {
                let Pdu::DataIn(d) = *pdu else {
                    panic!("not Data-In")
                };
                assert_eq!(d.itt, 9);
                assert_eq!(d.data, [0xfe, 2, 3, 4, 5]);
                assert_eq!(got, digest::crc32c(&[1, 2, 3, 4, 5, 0, 0, 0]));
                assert_eq!(expected, digest::crc32c(&[0xfe, 2, 3, 4, 5, 0, 0, 0]));
            }
            other => panic!("wrong result {other:?}"),
        }
        assert_eq!(drain(&mut f), pdus[2..]);
    }

    #[test]
    fn corrupt_padding_is_a_data_digest_error() {
        let dig = Digests {
            header: false,
            data: true,
        };
        let pdu = &samples()[1];
        let mut bytes = wire(std::slice::from_ref(pdu), dig);
        bytes[BHS_LEN + 6] = 0x01; // a padding byte after 5 data bytes
        let mut f = Framer::new(LOGIN_MAX_DATA);
        f.set_digests(dig);
        f.push(&bytes);
        assert!(matches!(f.next(), Err(FrameError::DataDigest { .. })));
    }

    #[test]
    fn data_too_long() {
        let pdu = Pdu::LoginRsp(LoginRsp {
            data: vec![b'a'; 8193],
            ..Default::default()
        });
        let bytes = wire(std::slice::from_ref(&pdu), Digests::default());
        let mut f = Framer::new(LOGIN_MAX_DATA);
        // Rejected on the BHS alone, before the data arrives.
        f.push(&bytes[..BHS_LEN]);
        let err = FrameError::DataTooLong {
            len: 8193,
            max: 8192,
        };
        assert_eq!(f.next(), Err(err.clone()));
        assert_eq!(f.next(), Err(err));
        // Raising the limit (e.g. after login) lets the same bytes through.
        f.set_max_data(8193);
        f.push(&bytes[BHS_LEN..]);
        assert_eq!(f.next(), Ok(Some(pdu)));
    }

    #[test]
    fn all_ones_bhs() {
        let mut f = Framer::new(262_144);
        f.push(&[0xff; BHS_LEN]);
        assert_eq!(
            f.next(),
            Err(FrameError::DataTooLong {
                len: 0x00ff_ffff,
                max: 262_144
            })
        );
        // With a header digest the 1020-byte AHS and digest come first.
        let mut f = Framer::new(262_144);
        f.set_digests(Digests {
            header: true,
            data: true,
        });
        f.push(&[0xff; BHS_LEN]);
        assert_eq!(f.next(), Ok(None));
        f.push(&[0xff; 1020 + DIGEST_LEN]);
        assert!(matches!(f.next(), Err(FrameError::HeaderDigest { .. })));
    }

    #[test]
    fn malformed_pdus_are_consumed() {
        let mut bytes = Vec::new();
        // Unknown opcode 0x07 with 4 data bytes.
        let mut bhs = [0u8; BHS_LEN];
        bhs[0] = 0x07;
        bhs[7] = 4;
        bytes.extend_from_slice(&bhs);
        bytes.extend_from_slice(&[1, 2, 3, 4]);
        // A SCSI Command whose only AHS claims 9 bytes in a 4-byte area.
        let mut bhs = [0u8; BHS_LEN];
        bhs[0] = 0x01;
        bhs[4] = 1;
        bytes.extend_from_slice(&bhs);
        bytes.extend_from_slice(&[0x00, 0x09, 0x01, 0x00]);
        // An R2T with a data segment.
        let mut bhs = [0u8; BHS_LEN];
        bhs[0] = 0x31;
        bhs[7] = 1;
        bytes.extend_from_slice(&bhs);
        bytes.extend_from_slice(&[9, 0, 0, 0]);
        let tail = samples();
        bytes.extend(wire(&tail, Digests::default()));

        let mut f = Framer::new(LOGIN_MAX_DATA);
        f.push(&bytes);
        assert_eq!(
            f.next(),
            Err(FrameError::Pdu(PduError::UnknownOpcode(0x07)))
        );
        assert_eq!(
            f.next(),
            Err(FrameError::Pdu(PduError::AhsPastEnd { offset: 0, len: 9 }))
        );
        assert_eq!(
            f.next(),
            Err(FrameError::Pdu(PduError::UnexpectedData {
                opcode: 0x31,
                len: 1
            }))
        );
        assert_eq!(drain(&mut f), tail);
    }

    #[test]
    fn digests_switch_between_pdus() {
        // Login completes without digests, then both are on.
        let on = Digests {
            header: true,
            data: true,
        };
        let first = Pdu::LoginRsp(LoginRsp {
            transit: true,
            nsg: 3,
            ..Default::default()
        });
        let second = Pdu::ScsiResponse(ScsiResponse {
            itt: 5,
            data: vec![0, 2, 0x70, 0],
            ..Default::default()
        });
        let mut bytes = wire(std::slice::from_ref(&first), Digests::default());
        bytes.extend(wire(std::slice::from_ref(&second), on));
        let mut f = Framer::new(LOGIN_MAX_DATA);
        f.push(&bytes);
        assert_eq!(f.next(), Ok(Some(first)));
        f.set_digests(on);
        assert_eq!(f.digests(), on);
        assert_eq!(f.next(), Ok(Some(second)));
    }

    #[test]
    fn errors_display() {
        let e = FrameError::Pdu(PduError::UnknownOpcode(0x07));
        assert_eq!(e.to_string(), "malformed PDU: unknown opcode 0x07");
        assert!(std::error::Error::source(&e).is_some());
        let e = FrameError::HeaderDigest {
            expected: 1,
            got: 2,
        };
        assert_eq!(
            e.to_string(),
            "header digest 0x00000002, computed 0x00000001"
        );
    }
}
