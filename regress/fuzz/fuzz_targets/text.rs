//! text::decode and TextBuf on arbitrary bytes, plus the SendTargets
//! parser behind them. What decodes must encode back to text that decodes
//! the same; TextBuf fed in pieces must agree with decode on the whole.
#![no_main]

use iscsid::proto::discovery;
use iscsid::proto::text::{self, TextBuf, MAX_KEY_LEN, MAX_VALUE_LEN};
use iscsid_fuzz::{chunk_sizes, Cursor};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let mut c = Cursor::new(input);
    let seed = c.u8();
    let data = c.rest();

    let direct = text::decode(data);
    if let Ok(pairs) = &direct {
        for (k, v) in pairs {
            assert!(!k.is_empty() && k.len() <= MAX_KEY_LEN, "key {k:?}");
            assert!(v.len() <= MAX_VALUE_LEN);
            assert!(!k.contains('=') && !k.contains('\0') && !v.contains('\0'));
        }
        let enc = text::encode(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        assert_eq!(
            text::decode(&enc).as_ref(),
            Ok(pairs),
            "decode(encode(x)) != x"
        );
        for max in [1usize, 7, 8192] {
            let pieces: Vec<&[u8]> = text::chunks(&enc, max).collect();
            assert!(!pieces.is_empty());
            assert!(pieces.iter().all(|p| p.len() <= max));
            assert_eq!(pieces.concat(), enc, "chunks({max}) lost bytes");
        }
        let _ = discovery::parse(pairs);
        for (_, v) in pairs {
            let _ = discovery::parse_address(v);
        }
    }

    let mut buf = TextBuf::default();
    let mut off = 0;
    for n in chunk_sizes(seed, 64, data.len()) {
        buf.push(&data[off..off + n]).expect("far below MAX_TEXT");
        off += n;
    }
    assert_eq!(buf.len(), data.len());
    assert_eq!(buf.finish(), direct, "TextBuf disagrees with decode");
    assert!(buf.is_empty(), "finish left residue");

    if let Ok(s) = std::str::from_utf8(data) {
        let _ = discovery::parse_address(s);
    }
});
