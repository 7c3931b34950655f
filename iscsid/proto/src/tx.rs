//! One connection's send queue. PDU headers, digests, padding and small
//! data segments are copied into a staging buffer; a large data segment
//! (write data for immediate data or Data-Out) is queued as a reference to
//! the task's own buffer, so the shell writes it with writev(2) from where
//! it already is instead of the core copying it first.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::ops::Range;
use std::sync::Arc;

/// A task's write data, shared between the task (which keeps it for
/// R2Ts and for reissue on a new connection) and the send queue.
pub type Shared = Arc<Vec<u8>>;

/// Data segments shorter than this are copied into the staging buffer: a
/// copy that small costs less than another iovec and segment.
pub const SHARE_MIN: usize = 2048;

enum Seg {
    Own(Vec<u8>),
    Shared(Shared, Range<usize>),
}

impl Seg {
    fn bytes(&self) -> &[u8] {
        match self {
            Seg::Own(v) => v,
            Seg::Shared(d, r) => d.get(r.clone()).unwrap_or_default(),
        }
    }
}

#[derive(Default)]
pub struct TxQueue {
    segs: VecDeque<Seg>,
    /// Bytes of the front segment already written.
    pos: usize,
    /// Bytes of every segment but a staging buffer at the back, whose
    /// length still grows: `pending` without walking the queue.
    sealed: usize,
    /// A drained staging buffer kept for the next PDUs (its capacity).
    spare: Vec<u8>,
}

impl TxQueue {
    /// Where bytes to be copied go: the staging buffer at the back.
    pub fn stage(&mut self) -> &mut Vec<u8> {
        if !self.back_open() {
            self.segs
                .push_back(Seg::Own(std::mem::take(&mut self.spare)));
        }
        match self.segs.back_mut() {
            Some(Seg::Own(v)) => v,
            // Pushed just above.
            _ => &mut self.spare,
        }
    }

    /// Queues `range` of `data`: by reference if it is large, else copied.
    /// A range outside `data` queues nothing.
    pub fn share(&mut self, data: &Shared, range: Range<usize>) {
        let Some(bytes) = data.get(range.clone()) else {
            return;
        };
        if bytes.len() < SHARE_MIN {
            self.stage().extend_from_slice(bytes);
        } else {
            // The staging buffer before it is complete now.
            self.sealed += self.open_len() + bytes.len();
            self.segs.push_back(Seg::Shared(Arc::clone(data), range));
        }
    }

    /// The back segment is a staging buffer (still growing).
    fn back_open(&self) -> bool {
        matches!(self.segs.back(), Some(Seg::Own(_)))
    }

    fn open_len(&self) -> usize {
        match self.segs.back() {
            Some(Seg::Own(v)) => v.len(),
            _ => 0,
        }
    }

    /// What waits, in order, without empty pieces.
    fn pieces(&self) -> impl Iterator<Item = &[u8]> {
        self.segs.iter().enumerate().filter_map(|(i, s)| {
            let skip = if i == 0 { self.pos } else { 0 };
            s.bytes().get(skip..).filter(|b| !b.is_empty())
        })
    }

    /// The first contiguous bytes waiting (empty when nothing waits).
    pub fn front(&self) -> &[u8] {
        self.pieces().next().unwrap_or_default()
    }

    /// Fills `out` with what waits, in order; returns how many slices.
    pub fn slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        out.iter_mut()
            .zip(self.pieces())
            .map(|(o, b)| *o = IoSlice::new(b))
            .count()
    }

    /// `n` bytes were written.
    pub fn advance(&mut self, mut n: usize) {
        while let Some(front) = self.segs.front() {
            let left = front.bytes().len().saturating_sub(self.pos);
            if n < left {
                self.pos += n;
                return;
            }
            n -= left;
            self.pos = 0;
            if self.segs.len() > 1 || !self.back_open() {
                self.sealed -= front.bytes().len();
            }
            if let Some(Seg::Own(mut v)) = self.segs.pop_front() {
                // Keep one drained buffer's capacity for the next PDUs.
                if v.capacity() > self.spare.capacity() {
                    v.clear();
                    self.spare = v;
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pieces().next().is_none()
    }

    /// Bytes waiting.
    pub fn pending(&self) -> usize {
        (self.sealed + self.open_len()).saturating_sub(self.pos)
    }

    /// Bytes of buffer the queue holds itself (shared data is the tasks').
    pub fn capacity(&self) -> usize {
        let own: usize = self
            .segs
            .iter()
            .map(|s| match s {
                Seg::Own(v) => v.capacity(),
                Seg::Shared(..) => 0,
            })
            .sum();
        own + self.spare.capacity()
    }

    /// Frees the buffers while nothing waits.
    pub fn release_if_empty(&mut self) {
        if self.is_empty() {
            *self = TxQueue::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(q: &mut TxQueue, chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while !q.is_empty() {
            // The counter agrees with the queue at every step.
            assert_eq!(q.pending(), q.pieces().map(<[u8]>::len).sum::<usize>());
            let mut iov = [IoSlice::new(&[]); 4];
            let n = q.slices(&mut iov);
            let mut got: Vec<u8> = iov[..n].iter().flat_map(|s| s.iter().copied()).collect();
            got.truncate(chunk);
            out.extend_from_slice(&got);
            q.advance(got.len());
        }
        out
    }

    #[test]
    fn keeps_order_across_staged_and_shared_bytes() {
        let big: Shared = Arc::new((0..10_000u32).map(|i| i as u8).collect());
        let mut q = TxQueue::default();
        q.stage().extend_from_slice(b"head");
        q.share(&big, 100..5100);
        q.stage().extend_from_slice(b"tail");
        q.share(&big, 0..10);
        assert_eq!(q.pending(), 4 + 5000 + 4 + 10);
        // The large range is referenced, not copied.
        assert!(q.capacity() < 1000);
        let mut want = b"head".to_vec();
        want.extend_from_slice(&big[100..5100]);
        want.extend_from_slice(b"tail");
        want.extend_from_slice(&big[0..10]);
        for chunk in [1, 3, 4096, usize::MAX] {
            let mut q2 = TxQueue::default();
            q2.stage().extend_from_slice(b"head");
            q2.share(&big, 100..5100);
            q2.stage().extend_from_slice(b"tail");
            q2.share(&big, 0..10);
            assert_eq!(drain(&mut q2, chunk), want, "chunk {chunk}");
            // Staged after a partial drain: still counted.
            q2.stage().extend_from_slice(b"more");
            q2.share(&big, 0..SHARE_MIN);
            assert_eq!(q2.pending(), 4 + SHARE_MIN);
            assert_eq!(drain(&mut q2, chunk).len(), 4 + SHARE_MIN);
            assert_eq!((q2.pending(), q2.front()), (0, &[][..]));
        }
        assert_eq!(q.front(), b"head");
        q.advance(2);
        assert_eq!(q.front(), b"ad");
        q.advance(2);
        assert_eq!(q.front(), &big[100..5100]);
    }

    #[test]
    fn a_range_outside_the_data_queues_nothing() {
        let d: Shared = Arc::new(vec![1; 10]);
        let mut q = TxQueue::default();
        q.share(&d, 5..11);
        assert!(q.is_empty());
        q.share(&d, 5..10);
        assert_eq!(q.front(), &[1; 5]);
        // An empty staging buffer in front hides nothing behind it.
        let big: Shared = Arc::new(vec![2; SHARE_MIN]);
        let mut q = TxQueue::default();
        q.stage();
        q.share(&big, 0..SHARE_MIN);
        assert_eq!((q.front().len(), q.pending()), (SHARE_MIN, SHARE_MIN));
        assert!(!q.is_empty());
    }

    #[test]
    fn released_when_drained() {
        let mut q = TxQueue::default();
        q.stage().resize(100_000, 7);
        q.release_if_empty();
        assert!(q.capacity() >= 100_000);
        q.advance(100_000);
        assert!(q.is_empty());
        // The drained buffer is kept for reuse until released.
        assert!(q.capacity() >= 100_000);
        q.release_if_empty();
        assert_eq!(q.capacity(), 0);
    }
}
