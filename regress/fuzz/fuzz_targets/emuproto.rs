//! The vscsi emulator protocol decoder fed arbitrary chunks. Chunking must
//! not change what comes out, a broken stream must stay broken, and every
//! message must re-encode to a frame that decodes the same.
#![no_main]

use iscsid::vscsi::emuproto::{encode, Decoder, Msg, ProtoError};
use iscsid_fuzz::{chunk_sizes, Cursor};
use libfuzzer_sys::fuzz_target;

type Out = Result<Msg, ProtoError>;

/// Drains `d`; returns false after FrameTooLarge, which must stick. Other
/// errors consume their frame and decoding goes on.
fn drain(d: &mut Decoder, out: &mut Vec<Out>) -> bool {
    loop {
        match d.next_msg() {
            Ok(Some(m)) => out.push(Ok(m.to_owned_msg())),
            Ok(None) => return true,
            Err(e @ ProtoError::FrameTooLarge(_)) => {
                assert_eq!(d.next_msg().map(|_| ()), Err(e), "broken stream recovered");
                out.push(Err(e));
                return false;
            }
            Err(e) => out.push(Err(e)),
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let mut c = Cursor::new(input);
    let seed = c.u8();
    let max_chunk = [1usize, 5, 64, 4096][usize::from(seed & 3)];
    let stream = c.rest();

    let mut whole = Decoder::new();
    whole.push(stream);
    let mut expect = Vec::new();
    drain(&mut whole, &mut expect);

    let mut d = Decoder::default();
    let mut got = Vec::new();
    let mut off = 0;
    for n in chunk_sizes(seed, max_chunk, stream.len()) {
        d.push(&stream[off..off + n]);
        off += n;
        if !drain(&mut d, &mut got) {
            break;
        }
    }
    let _ = d.buffered();

    for m in expect.iter().flatten() {
        let mut w = Vec::new();
        if encode(m, &mut w).is_ok() {
            let mut one = Decoder::new();
            one.push(&w);
            let back = one.next_msg().map(|o| o.map(|m| m.to_owned_msg()));
            assert_eq!(back, Ok(Some(m.clone())), "re-encoded message differs");
            assert_eq!(one.next_msg(), Ok(None));
        }
    }
    assert_eq!(
        got, expect,
        "chunked decoding differs from whole-stream decoding"
    );
});
