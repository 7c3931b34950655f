//! Negotiation::new + offer + respond (several rounds of target keys) +
//! finish, and the full-feature-phase renegotiation. Whatever a target
//! says, the parameters in effect must stay within RFC 7143's ranges and
//! never turn on a digest we did not offer.
#![no_main]

use iscsid::proto::negotiate::{parse_number, DigestPref, Negotiation, Params, Prefs, SessionKind};
use iscsid_fuzz::{kv_rounds, Cursor};
use libfuzzer_sys::fuzz_target;

const MAX_LEN: u32 = 16_777_215;

fn digest_pref(b: u8) -> DigestPref {
    match b % 3 {
        0 => DigestPref::None,
        1 => DigestPref::Crc32c,
        _ => DigestPref::Any,
    }
}

fn check(p: &Params, prefs: &Prefs) {
    assert!((512..=MAX_LEN).contains(&p.max_xmit_dsl), "{p:?}");
    assert!((512..=MAX_LEN).contains(&p.max_recv_dsl), "{p:?}");
    assert!((512..=MAX_LEN).contains(&p.max_burst), "{p:?}");
    assert!((512..=p.max_burst).contains(&p.first_burst), "{p:?}");
    assert!((1..=65_535).contains(&p.max_outstanding_r2t), "{p:?}");
    assert!(p.max_connections >= 1, "{p:?}");
    assert!(
        p.default_time2wait <= 3600 && p.default_time2retain <= 3600,
        "{p:?}"
    );
    assert!(
        p.error_recovery_level <= prefs.error_recovery_level.min(2),
        "{p:?}"
    );
    assert!(
        !p.header_digest || prefs.header_digest != DigestPref::None,
        "{p:?}"
    );
    assert!(
        !p.data_digest || prefs.data_digest != DigestPref::None,
        "{p:?}"
    );
}

fuzz_target!(|input: &[u8]| {
    let mut c = Cursor::new(input);
    let a = c.u8();
    let prefs = Prefs {
        header_digest: digest_pref(a),
        data_digest: digest_pref(a >> 2),
        initial_r2t: a & 0x10 != 0,
        immediate_data: a & 0x20 != 0,
        data_pdu_in_order: a & 0x40 != 0,
        data_sequence_in_order: a & 0x80 != 0,
        max_recv_dsl: c.u32(),
        max_burst: c.u32(),
        first_burst: c.u32(),
        max_outstanding_r2t: u32::from(c.u16()),
        default_time2wait: u32::from(c.u16()),
        default_time2retain: u32::from(c.u16()),
        max_connections: u16::from(c.u8()),
        error_recovery_level: c.u8() & 3,
    };
    let flags = c.u8();
    let kind = if flags & 1 != 0 {
        SessionKind::Discovery
    } else {
        SessionKind::Normal
    };
    let rounds = kv_rounds(c.rest());

    let mut n = Negotiation::new(&prefs, kind);
    let offer = n.offer();
    assert!(n
        .offer()
        .iter()
        .all(|(k, _)| k != "MaxRecvDataSegmentLength"));
    for (k, v) in &offer {
        if k.ends_with("Length") || k.starts_with("Default") || k == "MaxOutstandingR2T" {
            assert!(parse_number(v).is_ok(), "offered {k}={v}");
        }
    }
    for keys in &rounds {
        if n.respond(keys).is_err() {
            return;
        }
        let _ = n.pending();
    }
    let Ok((params, _events)) = n.finish() else {
        return;
    };
    check(&params, &prefs);

    let mut p = params.clone();
    let _ = Negotiation::ffp_offer(&p);
    for keys in &rounds {
        if Negotiation::ffp_respond(&mut p, keys).is_err() {
            break;
        }
        check(&p, &prefs);
    }
    for (_, v) in rounds.iter().flatten() {
        let _ = parse_number(v);
    }
});
