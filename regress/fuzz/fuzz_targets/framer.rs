//! Framer fed arbitrary chunks, digests on or off. Whatever the chunking,
//! the framer must return the same PDUs and errors as when the whole
//! stream arrives at once; fatal errors must stick.
#![no_main]

use iscsid::proto::framing::{FrameError, Framer};
use iscsid::proto::pdu::{Digests, Pdu};
use iscsid_fuzz::{chunk_sizes, Cursor};
use libfuzzer_sys::fuzz_target;

type Out = Result<Pdu, FrameError>;

fn fatal(e: &FrameError) -> bool {
    matches!(
        e,
        FrameError::HeaderDigest { .. } | FrameError::DataTooLong { .. }
    )
}

/// Drains `f` into `out`; returns false after a fatal error.
fn drain(f: &mut Framer, out: &mut Vec<Out>) -> bool {
    loop {
        match f.next() {
            Ok(Some(p)) => out.push(Ok(p)),
            Ok(None) => return true,
            Err(e) => {
                let stop = fatal(&e);
                if stop {
                    assert_eq!(f.next(), Err(e.clone()), "fatal error did not stick");
                }
                out.push(Err(e));
                if stop {
                    return false;
                }
            }
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let mut c = Cursor::new(input);
    let flags = c.u8();
    let seed = c.u8();
    let dig = Digests {
        header: flags & 1 != 0,
        data: flags & 2 != 0,
    };
    let max_data = [0u32, 512, 8192, 0x00ff_ffff][usize::from(flags >> 2 & 3)];
    let max_chunk = [1usize, 3, 48, 4096][usize::from(flags >> 4 & 3)];
    let use_spare = flags & 0x40 != 0;
    let stream = c.rest();

    let mut whole = Framer::new(max_data);
    whole.set_digests(dig);
    whole.push(stream);
    let mut expect = Vec::new();
    drain(&mut whole, &mut expect);

    let mut f = Framer::new(max_data);
    f.set_digests(dig);
    assert_eq!(f.digests(), dig);
    assert_eq!(f.max_data(), max_data);
    let mut got = Vec::new();
    let mut off = 0;
    for n in chunk_sizes(seed, max_chunk, stream.len()) {
        let piece = &stream[off..off + n];
        off += n;
        if use_spare {
            let room = f.spare(n);
            assert!(room.len() >= n.max(1), "spare({n}) gave {}", room.len());
            room[..n].copy_from_slice(piece);
            f.filled(n);
        } else {
            f.push(piece);
        }
        if !drain(&mut f, &mut got) {
            break;
        }
    }
    assert_eq!(
        got, expect,
        "chunked framing differs from whole-stream framing"
    );
});
