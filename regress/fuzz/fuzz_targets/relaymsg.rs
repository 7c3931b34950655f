//! relay <-> engine messages on arbitrary bytes: what decodes re-encodes
//! to the same value.
#![no_main]

use iscsid::procmsg::{decode_devevent, encode_devevent, Cmd, Done};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&sel, b)) = input.split_first() else {
        return;
    };
    match sel % 3 {
        0 => {
            if let Ok(c) = Cmd::decode(b.to_vec()) {
                assert!(c.i2t.cdb().len() <= 16);
                let mut w = c.data.clone();
                w.extend(Cmd::trailer(&c.i2t, c.slot));
                assert_eq!(Cmd::decode(w), Ok(c));
            }
        }
        1 => {
            if let Ok(d) = Done::decode(b.to_vec()) {
                let mut w = d.data.clone();
                w.extend(Done::trailer(d.tag, d.status, &d.sense, d.in_slot));
                assert_eq!(Done::decode(w), Ok(d));
            }
        }
        _ => {
            if let Ok((t, l)) = decode_devevent(b) {
                assert_eq!(decode_devevent(&encode_devevent(t, l)), Ok((t, l)));
            }
        }
    }
});
