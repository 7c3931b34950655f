//! Pdu::decode on arbitrary BHS/AHS/data splits. Whatever decodes must
//! re-encode (with and without digests) to bytes that frame and decode to
//! the same PDU, with encoded_len telling the truth.
#![no_main]

use iscsid::proto::framing::Framer;
use iscsid::proto::pdu::{Digests, Pdu, BHS_LEN, MAX_DATA_SEGMENT_LEN};
use iscsid_fuzz::Cursor;
use libfuzzer_sys::fuzz_target;

/// Cuts one encoded PDU (no digests) back into its pieces and decodes it.
fn redecode(w: &[u8]) -> Pdu {
    let bhs: [u8; BHS_LEN] = w[..BHS_LEN].try_into().expect("BHS");
    let ahs_end = BHS_LEN + Pdu::ahs_len(&bhs);
    let n = Pdu::data_segment_len(&bhs) as usize;
    let data = w[ahs_end..ahs_end + n].to_vec();
    let pad = &w[ahs_end + n..];
    assert!(
        pad.len() < 4 && pad.iter().all(|&b| b == 0),
        "padding {pad:?}"
    );
    Pdu::decode(&bhs, &w[BHS_LEN..ahs_end], data).expect("re-encoded PDU decodes")
}

fuzz_target!(|input: &[u8]| {
    let mut c = Cursor::new(input);
    let mode = c.u8();
    let split = usize::from(c.u8());
    let bhs: [u8; BHS_LEN] = c.array();
    let rest = c.rest();
    // Mostly honour the header's lengths so decoding gets past them;
    // sometimes split anywhere to test the length checks.
    let (ahs, data) = if mode & 1 == 0 {
        let a = Pdu::ahs_len(&bhs).min(rest.len());
        let (ahs, rest) = rest.split_at(a);
        let d = (Pdu::data_segment_len(&bhs) as usize).min(rest.len());
        (ahs, &rest[..d])
    } else {
        let a = split.min(rest.len());
        rest.split_at(a)
    };
    let Ok(pdu) = Pdu::decode(&bhs, ahs, data.to_vec()) else {
        return;
    };
    let _ = (
        pdu.name(),
        pdu.itt(),
        pdu.target_sns(),
        pdu.statsn_advances(),
    );
    let _ = format!("{pdu:?}");

    let mut w = Vec::new();
    pdu.encode(Digests::default(), &mut w);
    assert_eq!(w.len(), pdu.encoded_len(Digests::default()));
    let again = redecode(&w);
    assert_eq!(again, pdu, "decode(encode(pdu)) != pdu");

    for dig in [
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
    ] {
        let mut w = Vec::new();
        pdu.encode(dig, &mut w);
        assert_eq!(w.len(), pdu.encoded_len(dig), "encoded_len with {dig:?}");
        let mut f = Framer::new(MAX_DATA_SEGMENT_LEN);
        f.set_digests(dig);
        f.push(&w);
        let got = f.next().expect("own encoding frames").expect("a whole PDU");
        assert_eq!(got, pdu, "framed with {dig:?}");
        assert_eq!(f.buffered(), 0);
    }
});
