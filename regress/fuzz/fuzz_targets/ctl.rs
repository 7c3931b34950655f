//! The control protocol decoders (iscsictl <-> iscsid) on arbitrary bytes.
//! Whatever decodes must encode and decode back to the same value.
#![no_main]

use common::ctl::{
    decode_bool, decode_config, decode_text, encode_bool, encode_config, DiscoverRequest,
    Discovered, PollResult, SessionInfo, VscsiStats,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&sel, b)) = input.split_first() else {
        return;
    };
    match sel % 8 {
        0 => {
            if let Ok(c) = decode_config(b) {
                assert_eq!(decode_config(&encode_config(&c)), Ok(c));
            }
        }
        1 => {
            if let Ok(s) = SessionInfo::decode(b) {
                assert_eq!(SessionInfo::decode(&s.encode()), Ok(s));
            }
        }
        2 => {
            if let Ok(d) = DiscoverRequest::decode(b) {
                assert_eq!(DiscoverRequest::decode(&d.encode()), Ok(d));
            }
        }
        3 => {
            if let Ok(v) = VscsiStats::decode(b) {
                assert_eq!(VscsiStats::decode(&v.encode()), Ok(v));
            }
        }
        4 => {
            if let Ok(d) = Discovered::decode(b) {
                assert_eq!(Discovered::decode(&d.encode()), Ok(d));
            }
        }
        5 => {
            if let Ok(p) = PollResult::decode(b) {
                assert_eq!(PollResult::decode(&p.encode()), Ok(p));
                let _ = p.settled();
            }
        }
        6 => {
            if let Ok(v) = decode_bool(b) {
                assert_eq!(decode_bool(&encode_bool(v)), Ok(v));
            }
        }
        _ => {
            let _ = decode_text(b);
        }
    }
});
