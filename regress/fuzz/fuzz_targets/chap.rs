//! ChapClient after start() on arbitrary key lists. A challenge it
//! answers must get the right response; with the fix-up bit the rig
//! answers our mutual challenge correctly, so the success path is reached
//! too. Errors must leave the client failed.
#![no_main]

use iscsid::proto::chap::{
    decode_binary, encode_binary, response, ChapAlg, ChapClient, ChapConfig, ChapStep,
};
use iscsid::proto::negotiate::parse_number;
use iscsid_fuzz::{kv_rounds, Cursor};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"secretsecret12";
const MSECRET: &[u8] = b"tgtsecret1234";

fn value<'a>(keys: &'a [(String, String)], k: &str) -> Option<&'a str> {
    keys.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

fuzz_target!(|input: &[u8]| {
    let mut c = Cursor::new(input);
    let flags = c.u8();
    let algs = match flags & 3 {
        0 => Vec::new(),
        1 => vec![ChapAlg::Md5],
        2 => vec![ChapAlg::Sha256],
        _ => vec![ChapAlg::Md5, ChapAlg::Sha256, ChapAlg::Md5],
    };
    let mutual = flags & 4 != 0;
    let fixup = flags & 8 != 0;
    let random: [u8; 33] = c.array();
    let cfg = ChapConfig {
        name: "alice".into(),
        secret: SECRET.to_vec(),
        mutual: mutual.then(|| ("tgt".to_string(), MSECRET.to_vec())),
        algs,
    };
    let mut client = ChapClient::new(cfg, random);
    let _ = format!("{client:?}");
    let a = client.start();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].0, "CHAP_A");

    let rounds = kv_rounds(c.rest());
    // Binary encodings: whatever decodes re-encodes and decodes the same.
    for (_, v) in rounds.iter().flatten() {
        if let Ok(b) = decode_binary(v) {
            assert_eq!(decode_binary(&encode_binary(&b)), Ok(b));
        }
    }
    let mut sent: Option<Vec<(String, String)>> = None;
    for mut keys in rounds {
        if fixup && mutual {
            if let (Some(out), Some(alg)) = (&sent, client.alg()) {
                // Answer our own challenge as a well-behaved target would.
                let id = value(out, "CHAP_I").and_then(|v| parse_number(v).ok());
                let ch = value(out, "CHAP_C").and_then(|v| decode_binary(v).ok());
                if let (Some(id), Some(ch)) = (id, ch) {
                    let r = response(alg, id as u8, MSECRET, &ch);
                    keys.retain(|(k, _)| k != "CHAP_R");
                    keys.push(("CHAP_R".into(), encode_binary(&r)));
                }
            }
        }
        match client.on_keys(&keys) {
            Ok(ChapStep::Send(out)) => {
                let alg = client.alg().expect("an algorithm once answering");
                let id = parse_number(value(&keys, "CHAP_I").expect("CHAP_I")).expect("id");
                let ch = decode_binary(value(&keys, "CHAP_C").expect("CHAP_C")).expect("C");
                let want = encode_binary(&response(alg, id as u8, SECRET, &ch));
                assert_eq!(value(&out, "CHAP_R"), Some(want.as_str()), "wrong CHAP_R");
                assert_eq!(value(&out, "CHAP_N"), Some("alice"));
                assert_eq!(value(&out, "CHAP_C").is_some(), mutual);
                sent = Some(out);
            }
            Ok(ChapStep::Done) => {}
            Err(e) => {
                let _ = e.to_string();
                assert!(client.on_keys(&keys).is_err(), "failed client recovered");
                return;
            }
        }
    }
});
