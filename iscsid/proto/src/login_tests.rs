//! Login state machine tests (byte-level exchanges with a scripted target).
//!
//! The target side is written out by hand: every Login Response the
//! initiator sees is built here from the request it answers, so each test
//! reads as the exchange on the wire.

use super::chap::{self, ChapAlg, ChapConfig, ChapError};
use super::login::{Login, LoginConfig, LoginError, Step, FULL_FEATURE, OPERATIONAL, SECURITY};
use super::negotiate::{DigestPref, NegEvent, Params, Prefs, SessionKind};
use super::pdu::{Digests, LoginReq, LoginRsp, Pdu};
use super::text;

pub(super) const ISID: [u8; 6] = [0x80, 0x12, 0x34, 0x56, 0x78, 0x9a];
pub(super) const ITT: u32 = 0x0000_0a00;
pub(super) const CMDSN: u32 = 0x0000_1000;
pub(super) const TARGET: &str = "iqn.2026-11.org.example:disk";
pub(super) const INITIATOR: &str = "iqn.1995-11.org.openbsd.iscsid:test";
pub(super) const TSIH: u16 = 0x0123;
const SECRET: &[u8] = b"secretsecret12";
const MSECRET: &[u8] = b"tgtsecret1234";

pub(super) fn config(chap: Option<ChapConfig>) -> LoginConfig {
    LoginConfig {
        isid: ISID,
        tsih: 0,
        cid: 7,
        itt: ITT,
        cmdsn: CMDSN,
        initiatorname: INITIATOR.into(),
        targetname: Some(TARGET.into()),
        kind: SessionKind::Normal,
        prefs: Prefs::default(),
        chap,
    }
}

fn chap_cfg(mutual: bool) -> ChapConfig {
    ChapConfig {
        name: "alice".into(),
        secret: SECRET.to_vec(),
        mutual: mutual.then(|| ("tgt".to_string(), MSECRET.to_vec())),
        algs: Vec::new(),
    }
}

/// Our mutual CHAP identifier (byte 0) and challenge (the rest).
pub(super) fn random() -> [u8; 33] {
    let mut r = [0u8; 33];
    r[0] = 0x42;
    for (i, b) in r.iter_mut().enumerate().skip(1) {
        *b = 0x7f + i as u8;
    }
    r
}

pub(super) fn keys(data: &[u8]) -> Vec<(String, String)> {
    text::decode(data).expect("the initiator sends well-formed text")
}

pub(super) fn val<'a>(keys: &'a [(String, String)], k: &str) -> Option<&'a str> {
    keys.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

pub(super) fn kv(pairs: &[(&str, &str)]) -> Vec<u8> {
    text::encode(pairs.iter().copied())
}

/// The target's answers to our operational offer: our value for each key
/// (digests None) unless `over` says otherwise. `over` may also carry the
/// target's own MaxRecvDataSegmentLength declaration.
pub(super) fn op_answer(
    offer: &[(String, String)],
    over: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in offer {
        if k == "MaxRecvDataSegmentLength" {
            continue;
        }
        let a = match over.iter().find(|(o, _)| o == k) {
            Some((_, a)) => (*a).to_owned(),
            None if k.ends_with("Digest") => "None".to_owned(),
            None => v.clone(),
        };
        out.push((k.clone(), a));
    }
    let mrdsl = val_of(over, "MaxRecvDataSegmentLength").unwrap_or("8192");
    out.push(("MaxRecvDataSegmentLength".into(), mrdsl.into()));
    out
}

fn val_of<'a>(over: &[(&str, &'a str)], k: &str) -> Option<&'a str> {
    over.iter().find(|(o, _)| *o == k).map(|(_, v)| *v)
}

/// A successful Login Response to `req`.
pub(super) fn answer(
    req: &LoginReq,
    statsn: u32,
    transit: bool,
    nsg: u8,
    data: Vec<u8>,
) -> LoginRsp {
    LoginRsp {
        transit,
        cont: false,
        csg: req.csg,
        nsg: if transit { nsg } else { 0 },
        version_max: 0,
        version_active: 0,
        isid: req.isid,
        tsih: if transit && nsg == FULL_FEATURE {
            TSIH
        } else {
            0
        },
        itt: req.itt,
        statsn,
        expcmdsn: req.cmdsn,
        maxcmdsn: req.cmdsn.wrapping_add(31),
        status_class: 0,
        status_detail: 0,
        data,
    }
}

fn failure(req: &LoginReq, class: u8, detail: u8, data: Vec<u8>) -> LoginRsp {
    LoginRsp {
        status_class: class,
        status_detail: detail,
        ..answer(req, 1, false, 0, data)
    }
}

fn send(step: Result<Step, LoginError>) -> LoginReq {
    match step {
        Ok(Step::Send(r)) => r,
        other => panic!("expected a Login Request, got {other:?}"),
    }
}

fn done(step: Result<Step, LoginError>) -> (Params, Vec<NegEvent>, u16, u32, u32, u32) {
    match step {
        Ok(Step::Done(d)) => (
            d.params,
            d.events,
            d.tsih,
            d.expstatsn,
            d.expcmdsn,
            d.maxcmdsn,
        ),
        other => panic!("expected a finished login, got {other:?}"),
    }
}

fn err(step: Result<Step, LoginError>) -> LoginError {
    match step {
        Err(e) => e,
        Ok(s) => panic!("expected a login error, got {s:?}"),
    }
}

/// Checks the fields every Login Request must carry.
fn common(req: &LoginReq, csg: u8, expstatsn: u32) {
    assert_eq!(req.isid, ISID);
    assert_eq!(req.itt, ITT);
    assert_eq!(req.cid, 7);
    assert_eq!(req.cmdsn, CMDSN, "login requests share one CmdSN");
    assert_eq!(req.tsih, 0);
    assert_eq!((req.version_max, req.version_min), (0, 0));
    assert_eq!(req.csg, csg);
    assert_eq!(req.expstatsn, expstatsn);
}

/// From the first operational request to the end, with `over` applied.
fn finish_operational(
    l: &mut Login,
    req: &LoginReq,
    statsn: u32,
    over: &[(&str, &str)],
) -> (Params, Vec<NegEvent>) {
    assert_eq!(req.csg, OPERATIONAL);
    assert!(req.transit && req.nsg == FULL_FEATURE);
    let offer = keys(&req.data);
    let data = text::encode(
        op_answer(&offer, over)
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    let (p, ev, tsih, expstatsn, expcmdsn, maxcmdsn) =
        done(l.on_response(answer(req, statsn, true, FULL_FEATURE, data)));
    assert_eq!(tsih, TSIH);
    assert_eq!(expstatsn, statsn.wrapping_add(1));
    assert_eq!((expcmdsn, maxcmdsn), (CMDSN, CMDSN + 31));
    (p, ev)
}

#[test]
fn auth_none_then_operational() {
    let mut l = Login::new(config(None), random());
    let r1 = l.start();
    common(&r1, SECURITY, 0);
    assert!(r1.transit && !r1.cont && r1.nsg == OPERATIONAL);
    let k = keys(&r1.data);
    assert_eq!(val(&k, "InitiatorName"), Some(INITIATOR));
    assert_eq!(val(&k, "TargetName"), Some(TARGET));
    assert_eq!(val(&k, "SessionType"), Some("Normal"));
    assert_eq!(val(&k, "AuthMethod"), Some("None"));

    let rsp = answer(
        &r1,
        0x500,
        true,
        OPERATIONAL,
        kv(&[("AuthMethod", "None"), ("TargetPortalGroupTag", "3")]),
    );
    let r2 = send(l.on_response(rsp));
    common(&r2, OPERATIONAL, 0x501);
    let offer = keys(&r2.data);
    for key in [
        "HeaderDigest",
        "DataDigest",
        "MaxRecvDataSegmentLength",
        "MaxBurstLength",
        "FirstBurstLength",
        "InitialR2T",
        "ImmediateData",
        "ErrorRecoveryLevel",
    ] {
        assert!(val(&offer, key).is_some(), "{key} not offered: {offer:?}");
    }
    assert_eq!(val(&offer, "MaxRecvDataSegmentLength"), Some("262144"));

    let (p, ev) = finish_operational(
        &mut l,
        &r2,
        0x501,
        &[
            ("MaxRecvDataSegmentLength", "4096"),
            ("MaxBurstLength", "131072"),
            ("FirstBurstLength", "32768"),
            ("InitialR2T", "Yes"),
            ("ImmediateData", "No"),
            ("MaxOutstandingR2T", "4"),
            ("DefaultTime2Wait", "5"),
        ],
    );
    assert!(ev.is_empty(), "{ev:?}");
    assert!(!p.header_digest && !p.data_digest);
    assert_eq!(p.max_recv_dsl, 262_144);
    assert_eq!(p.max_xmit_dsl, 4096);
    assert_eq!(p.max_burst, 131_072);
    assert_eq!(p.first_burst, 32_768);
    assert!(p.initial_r2t && !p.immediate_data);
    assert_eq!(p.max_outstanding_r2t, 4);
    assert_eq!(p.default_time2wait, 5);
    assert_eq!(p.target_portal_group_tag, Some(3));
}

#[test]
fn one_way_chap() {
    let mut l = Login::new(config(Some(chap_cfg(false))), random());
    let r1 = l.start();
    assert!(!r1.transit, "CHAP needs more security steps");
    assert_eq!(val(&keys(&r1.data), "AuthMethod"), Some("CHAP,None"));

    let r2 = send(l.on_response(answer(&r1, 10, false, 0, kv(&[("AuthMethod", "CHAP")]))));
    common(&r2, SECURITY, 11);
    assert!(!r2.transit);
    assert_eq!(val(&keys(&r2.data), "CHAP_A"), Some("7,5"));

    let challenge: Vec<u8> = (0..16).collect();
    let r3 = send(l.on_response(answer(
        &r2,
        11,
        false,
        0,
        kv(&[
            ("CHAP_A", "5"),
            ("CHAP_I", "9"),
            ("CHAP_C", &chap::encode_binary(&challenge)),
        ]),
    )));
    common(&r3, SECURITY, 12);
    assert!(r3.transit && r3.nsg == OPERATIONAL);
    let k = keys(&r3.data);
    assert_eq!(val(&k, "CHAP_N"), Some("alice"));
    let expected = chap::response(ChapAlg::Md5, 9, SECRET, &challenge);
    assert_eq!(
        val(&k, "CHAP_R"),
        Some(chap::encode_binary(&expected).as_str())
    );
    assert_eq!(val(&k, "CHAP_I"), None, "one-way CHAP sends no challenge");
    assert_eq!(val(&k, "CHAP_C"), None);

    let r4 = send(l.on_response(answer(&r3, 12, true, OPERATIONAL, Vec::new())));
    common(&r4, OPERATIONAL, 13);
    finish_operational(&mut l, &r4, 13, &[]);
}

#[test]
fn one_way_chap_target_may_choose_none() {
    let mut l = Login::new(config(Some(chap_cfg(false))), random());
    let r1 = l.start();
    let r2 = send(l.on_response(answer(
        &r1,
        1,
        true,
        OPERATIONAL,
        kv(&[("AuthMethod", "None")]),
    )));
    assert_eq!(r2.csg, OPERATIONAL);
    finish_operational(&mut l, &r2, 2, &[]);
}

/// Runs a mutual CHAP login (SHA-256) up to the target's final security
/// response, which carries `target_r`.
fn mutual_until_proof(target_name: &str, target_r: Option<Vec<u8>>) -> Result<Step, LoginError> {
    let mut l = Login::new(config(Some(chap_cfg(true))), random());
    let r1 = l.start();
    assert_eq!(
        val(&keys(&r1.data), "AuthMethod"),
        Some("CHAP"),
        "mutual CHAP never offers None"
    );
    let r2 = send(l.on_response(answer(&r1, 1, false, 0, kv(&[("AuthMethod", "CHAP")]))));
    let challenge: Vec<u8> = (0x10..0x30).collect();
    let r3 = send(l.on_response(answer(
        &r2,
        2,
        false,
        0,
        kv(&[
            ("CHAP_A", "7"),
            ("CHAP_I", "200"),
            ("CHAP_C", &chap::encode_binary(&challenge)),
        ]),
    )));
    let k = keys(&r3.data);
    let ours = chap::response(ChapAlg::Sha256, 200, SECRET, &challenge);
    assert_eq!(val(&k, "CHAP_R"), Some(chap::encode_binary(&ours).as_str()));
    // Our challenge to the target: identifier and bytes from `random`.
    let rnd = random();
    assert_eq!(val(&k, "CHAP_I"), Some("66"));
    assert_eq!(
        val(&k, "CHAP_C"),
        Some(chap::encode_binary(&rnd[1..33]).as_str())
    );
    let mut proof = vec![("CHAP_N", target_name.to_owned())];
    if let Some(r) = target_r {
        proof.push(("CHAP_R", chap::encode_binary(&r)));
    }
    let data = text::encode(proof.iter().map(|(k, v)| (*k, v.as_str())));
    l.on_response(answer(&r3, 3, true, OPERATIONAL, data))
}

#[test]
fn mutual_chap() {
    let rnd = random();
    let good = chap::response(ChapAlg::Sha256, rnd[0], MSECRET, &rnd[1..33]);
    let r4 = send(mutual_until_proof("tgt", Some(good)));
    assert_eq!(r4.csg, OPERATIONAL);
    assert!(r4.transit && r4.nsg == FULL_FEATURE);
}

#[test]
fn mutual_chap_wrong_response() {
    let rnd = random();
    // Right secret, wrong identifier: a replayed or guessed answer.
    let bad = chap::response(ChapAlg::Sha256, rnd[0] ^ 1, MSECRET, &rnd[1..33]);
    assert_eq!(
        err(mutual_until_proof("tgt", Some(bad))),
        LoginError::Chap(ChapError::TargetAuthFailed)
    );
    let wrong_secret = chap::response(ChapAlg::Sha256, rnd[0], b"not the secret", &rnd[1..33]);
    assert_eq!(
        err(mutual_until_proof("tgt", Some(wrong_secret))),
        LoginError::Chap(ChapError::TargetAuthFailed)
    );
    let good = chap::response(ChapAlg::Sha256, rnd[0], MSECRET, &rnd[1..33]);
    assert_eq!(
        err(mutual_until_proof("mallory", Some(good))),
        LoginError::Chap(ChapError::TargetNameMismatch)
    );
    // A target that transits without proving itself.
    assert_eq!(
        err(mutual_until_proof("tgt", None)),
        LoginError::Chap(ChapError::MissingKey("CHAP_R"))
    );
}

#[test]
fn mutual_chap_refuses_auth_none() {
    let mut l = Login::new(config(Some(chap_cfg(true))), random());
    let r1 = l.start();
    let e = err(l.on_response(answer(
        &r1,
        1,
        true,
        OPERATIONAL,
        kv(&[("AuthMethod", "None")]),
    )));
    assert_eq!(e, LoginError::NoAuthMethod("None".into()));
    assert!(e.is_permanent());
}

#[test]
fn auth_method_answers_we_cannot_use() {
    // CHAP chosen though we offered only None.
    let mut l = Login::new(config(None), random());
    let r1 = l.start();
    let e = err(l.on_response(answer(&r1, 1, false, 0, kv(&[("AuthMethod", "CHAP")]))));
    assert_eq!(e, LoginError::ChapNotConfigured);
    // The target rejects None: it wants a secret we do not have.
    let mut l = Login::new(config(None), random());
    let r1 = l.start();
    let e = err(l.on_response(answer(&r1, 1, false, 0, kv(&[("AuthMethod", "Reject")]))));
    assert_eq!(e, LoginError::ChapNotConfigured);
    // Something we never offered.
    let mut l = Login::new(config(Some(chap_cfg(false))), random());
    let r1 = l.start();
    let e = err(l.on_response(answer(&r1, 1, false, 0, kv(&[("AuthMethod", "SRP")]))));
    assert_eq!(e, LoginError::NoAuthMethod("SRP".into()));
    // CHAP configured but the target says nothing about AuthMethod.
    let mut l = Login::new(config(Some(chap_cfg(false))), random());
    let r1 = l.start();
    let e = err(l.on_response(answer(&r1, 1, true, OPERATIONAL, Vec::new())));
    assert!(matches!(e, LoginError::Protocol(_)), "{e:?}");
}

#[test]
fn chap_algorithm_we_did_not_offer() {
    let mut l = Login::new(config(Some(chap_cfg(false))), random());
    let r1 = l.start();
    let r2 = send(l.on_response(answer(&r1, 1, false, 0, kv(&[("AuthMethod", "CHAP")]))));
    let e = err(l.on_response(answer(
        &r2,
        2,
        false,
        0,
        kv(&[("CHAP_A", "6"), ("CHAP_I", "1"), ("CHAP_C", "0x0102")]),
    )));
    assert_eq!(e, LoginError::Chap(ChapError::NoCommonAlgorithm));
}

#[test]
fn redirects() {
    for (detail, permanent) in [(1u8, false), (2, true)] {
        let mut l = Login::new(config(None), random());
        let r1 = l.start();
        let rsp = failure(&r1, 1, detail, kv(&[("TargetAddress", "192.0.2.7:3261,2")]));
        match l.on_response(rsp) {
            Ok(Step::Redirect { addr, permanent: p }) => {
                assert_eq!(addr, "192.0.2.7:3261", "portal group tag is cut off");
                assert_eq!(p, permanent);
            }
            other => panic!("detail {detail}: {other:?}"),
        }
    }
    let mut l = Login::new(config(None), random());
    let r1 = l.start();
    assert_eq!(
        err(l.on_response(failure(&r1, 1, 1, Vec::new()))),
        LoginError::RedirectWithoutAddress
    );
    let mut l = Login::new(config(None), random());
    let r1 = l.start();
    assert_eq!(
        err(l.on_response(failure(&r1, 1, 3, kv(&[("TargetAddress", "192.0.2.7")])))),
        LoginError::UnknownStatus(1, 3)
    );
    // A redirect may come later in the login too, with an IPv6 portal.
    let mut l = Login::new(config(None), random());
    let r1 = l.start();
    let r2 = send(l.on_response(answer(
        &r1,
        1,
        true,
        OPERATIONAL,
        kv(&[("AuthMethod", "None")]),
    )));
    match l.on_response(failure(
        &r2,
        1,
        1,
        kv(&[("TargetAddress", "[2001:db8::1]:3260,1")]),
    )) {
        Ok(Step::Redirect { addr, permanent }) => {
            assert_eq!(addr, "[2001:db8::1]:3260");
            assert!(!permanent);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn status_classes() {
    let cases = [
        (2, 0x00, LoginError::InitiatorError(0), true),
        (2, 0x01, LoginError::AuthRequired, true),
        (2, 0x02, LoginError::Forbidden, true),
        (2, 0x03, LoginError::NotFound, true),
        (2, 0x04, LoginError::Removed, true),
        (2, 0x05, LoginError::UnsupportedVersion, true),
        (2, 0x06, LoginError::TooManyConnections, false),
        (2, 0x07, LoginError::MissingParameter, true),
        (2, 0x08, LoginError::CantIncludeInSession, true),
        (2, 0x09, LoginError::SessionTypeUnsupported, true),
        (2, 0x0a, LoginError::SessionDoesNotExist, false),
        (2, 0x0b, LoginError::InvalidDuringLogin, true),
        (2, 0x0c, LoginError::InitiatorError(0x0c), true),
        (3, 0x00, LoginError::TargetError, false),
        (3, 0x01, LoginError::ServiceUnavailable, false),
        (3, 0x02, LoginError::OutOfResources, false),
        (3, 0x07, LoginError::TargetErrorDetail(7), false),
        (4, 0x00, LoginError::UnknownStatus(4, 0), true),
        (0xff, 0xff, LoginError::UnknownStatus(0xff, 0xff), true),
    ];
    for (class, detail, want, permanent) in cases {
        let mut l = Login::new(config(None), random());
        let r1 = l.start();
        let e = err(l.on_response(failure(&r1, class, detail, Vec::new())));
        assert_eq!(e, want, "status {class:#04x}{detail:02x}");
        assert_eq!(e.is_permanent(), permanent, "{e:?}");
        assert!(!e.to_string().is_empty());
    }
    // The message names the fix for the common cases.
    assert!(LoginError::AuthFailed.to_string().contains("chap"));
    assert!(LoginError::NotFound.to_string().contains("targetname"));
}

#[test]
fn auth_failure_message_depends_on_chap_being_configured() {
    // With CHAP configured, 0x0201 means our name or secret was wrong.
    let mut l = Login::new(config(Some(chap_cfg(false))), random());
    let r1 = l.start();
    let e = err(l.on_response(failure(&r1, 2, 1, Vec::new())));
    assert_eq!(e, LoginError::AuthFailed);
    assert_eq!(
        e.to_string(),
        "authentication failed (check chap name and secret)"
    );
    // Without, there is no name or secret to check.
    let mut l = Login::new(config(None), random());
    let r1 = l.start();
    let e = err(l.on_response(failure(&r1, 2, 1, Vec::new())));
    assert_eq!(e, LoginError::AuthRequired);
    assert!(e.is_permanent());
    let msg = e.to_string();
    assert_eq!(
        msg,
        "target requires authentication and no chap is configured"
    );
    assert!(!msg.contains("secret"), "{msg}");
}

#[test]
fn chap_errors_say_chap_once() {
    let cases = [
        (
            ChapError::TargetAuthFailed,
            "CHAP: target failed mutual authentication",
        ),
        (ChapError::MissingKey("CHAP_R"), "CHAP: CHAP_R missing"),
        (ChapError::NoCommonAlgorithm, "CHAP: no common algorithm"),
        (ChapError::Malformed("CHAP_C"), "CHAP: malformed CHAP_C"),
    ];
    for (e, want) in cases {
        let msg = LoginError::Chap(e).to_string();
        assert_eq!(msg, want);
        assert_eq!(msg.matches("CHAP:").count(), 1, "{msg}");
    }
}

#[test]
fn multi_pdu_login_response_text() {
    let mut l = Login::new(config(None), random());
    let r1 = l.start();
    let all = kv(&[("TargetAlias", "a-long-alias"), ("AuthMethod", "None")]);
    // The split falls inside a key.
    let (a, b) = all.split_at(20);
    let mut part = answer(&r1, 5, false, 0, a.to_vec());
    part.cont = true;
    let more = send(l.on_response(part));
    common(&more, SECURITY, 6);
    assert!(
        !more.transit && !more.cont && more.data.is_empty(),
        "an empty request asks for the rest"
    );
    let r2 = send(l.on_response(answer(&more, 6, true, OPERATIONAL, b.to_vec())));
    assert_eq!(r2.csg, OPERATIONAL);
    assert_eq!(r2.expstatsn, 7);

    // The operational answer in three pieces, also split mid-key.
    let offer = keys(&r2.data);
    let text = text::encode(
        op_answer(&offer, &[("MaxRecvDataSegmentLength", "16384")])
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    let third = text.len() / 3;
    let mut p1 = answer(&r2, 7, false, 0, text[..third].to_vec());
    p1.cont = true;
    let q1 = send(l.on_response(p1));
    assert!(q1.data.is_empty() && !q1.transit);
    let mut p2 = answer(&q1, 8, false, 0, text[third..2 * third].to_vec());
    p2.cont = true;
    let q2 = send(l.on_response(p2));
    assert!(q2.data.is_empty());
    let (p, ..) = done(l.on_response(answer(
        &q2,
        9,
        true,
        FULL_FEATURE,
        text[2 * third..].to_vec(),
    )));
    assert_eq!(p.max_xmit_dsl, 16384);
}

#[test]
fn multi_pdu_login_request_text() {
    // Names long enough that our first request needs two PDUs.
    let mut cfg = config(None);
    cfg.initiatorname = format!("iqn.1995-11.org.openbsd.iscsid:{}", "i".repeat(5000));
    cfg.targetname = Some(format!("iqn.2026-11.org.example:{}", "t".repeat(5000)));
    let mut l = Login::new(cfg.clone(), random());
    let r1 = l.start();
    assert!(r1.cont && !r1.transit, "first chunk: C=1, T=0");
    assert_eq!(r1.data.len(), 8192);
    let r1b = send(l.on_response(answer(&r1, 1, false, 0, Vec::new())));
    assert!(!r1b.cont && r1b.transit && r1b.nsg == OPERATIONAL);
    common(&r1b, SECURITY, 2);
    let mut whole = r1.data.clone();
    whole.extend_from_slice(&r1b.data);
    let k = keys(&whole);
    assert_eq!(val(&k, "InitiatorName"), Some(cfg.initiatorname.as_str()));
    assert_eq!(val(&k, "TargetName"), cfg.targetname.as_deref());
    let r2 = send(l.on_response(answer(
        &r1b,
        2,
        true,
        OPERATIONAL,
        kv(&[("AuthMethod", "None")]),
    )));
    finish_operational(&mut l, &r2, 3, &[]);
}

#[test]
fn target_transits_without_answering() {
    // Operational stage: no answers at all means every key keeps its RFC
    // default, and each unanswered offer is reported.
    let mut l = Login::new(config(None), random());
    let r1 = l.start();
    let r2 = send(l.on_response(answer(
        &r1,
        1,
        true,
        OPERATIONAL,
        kv(&[("AuthMethod", "None")]),
    )));
    let (p, ev, ..) = done(l.on_response(answer(&r2, 2, true, FULL_FEATURE, Vec::new())));
    let d = Params::default();
    assert_eq!(p.max_xmit_dsl, d.max_xmit_dsl);
    assert_eq!(p.max_burst, d.max_burst);
    assert_eq!(p.first_burst, d.first_burst);
    assert!(p.initial_r2t, "InitialR2T default Yes");
    assert_eq!(p.max_recv_dsl, 262_144, "our declaration stands");
    assert!(
        ev.contains(&NegEvent::Defaulted("MaxBurstLength".into())),
        "{ev:?}"
    );
    assert!(
        ev.contains(&NegEvent::Defaulted("HeaderDigest".into())),
        "{ev:?}"
    );

    // Security stage straight to full feature: nothing was negotiated.
    let mut l = Login::new(config(None), random());
    let r1 = l.start();
    let (p, ..) = done(l.on_response(answer(
        &r1,
        1,
        true,
        FULL_FEATURE,
        kv(&[("AuthMethod", "None")]),
    )));
    assert_eq!(p, Params::default());

    // ... unless we require a digest: that must not silently vanish.
    let mut cfg = config(None);
    cfg.prefs.header_digest = DigestPref::Crc32c;
    let mut l = Login::new(cfg.clone(), random());
    let r1 = l.start();
    let r2 = send(l.on_response(answer(
        &r1,
        1,
        true,
        OPERATIONAL,
        kv(&[("AuthMethod", "None")]),
    )));
    assert_eq!(val(&keys(&r2.data), "HeaderDigest"), Some("CRC32C"));
    let e = err(l.on_response(answer(&r2, 2, true, FULL_FEATURE, Vec::new())));
    assert_eq!(e, LoginError::DigestRefused("HeaderDigest"));
    cfg.prefs.header_digest = DigestPref::None;
    cfg.prefs.data_digest = DigestPref::Crc32c;
    let mut l = Login::new(cfg, random());
    let r1 = l.start();
    let e = err(l.on_response(answer(
        &r1,
        1,
        true,
        FULL_FEATURE,
        kv(&[("AuthMethod", "None")]),
    )));
    assert_eq!(e, LoginError::DigestRefused("DataDigest"));
}

#[test]
fn operational_in_several_rounds() {
    // The target answers part of the offer, then the rest while offering a
    // key of its own, then transits.
    let mut l = Login::new(config(None), random());
    let r1 = l.start();
    let r2 = send(l.on_response(answer(
        &r1,
        1,
        true,
        OPERATIONAL,
        kv(&[("AuthMethod", "None")]),
    )));
    let offer = keys(&r2.data);
    let all = op_answer(&offer, &[]);
    let (first, rest) = all.split_at(4);
    let enc =
        |v: &[(String, String)]| text::encode(v.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let r3 = send(l.on_response(answer(&r2, 2, false, 0, enc(first))));
    assert!(r3.transit && r3.nsg == FULL_FEATURE);
    assert!(
        r3.data.is_empty(),
        "nothing to say yet: {:?}",
        keys(&r3.data)
    );
    let mut more = rest.to_vec();
    more.push(("X-vendor-key".into(), "1".into()));
    let r4 = send(l.on_response(answer(&r3, 3, false, 0, enc(&more))));
    assert_eq!(
        keys(&r4.data),
        vec![("X-vendor-key".into(), "NotUnderstood".into())]
    );
    let (p, ev, ..) = done(l.on_response(answer(&r4, 4, true, FULL_FEATURE, Vec::new())));
    assert!(ev.is_empty(), "{ev:?}");
    assert!(!p.initial_r2t && p.immediate_data);
}

#[test]
fn target_transits_with_keys_unanswered() {
    let mut l = Login::new(config(None), random());
    let r1 = l.start();
    let r2 = send(l.on_response(answer(
        &r1,
        1,
        true,
        OPERATIONAL,
        kv(&[("AuthMethod", "None")]),
    )));
    let mut ans = op_answer(&keys(&r2.data), &[]);
    ans.push(("X-vendor-key".into(), "1".into()));
    let data = text::encode(ans.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let e = err(l.on_response(answer(&r2, 2, true, FULL_FEATURE, data)));
    assert!(matches!(e, LoginError::Protocol(_)), "{e:?}");
}

#[test]
fn protocol_violations() {
    type Mangle = fn(&mut LoginRsp);
    let cases: [(&str, Mangle); 7] = [
        ("ITT", |r| r.itt ^= 1),
        ("ISID", |r| r.isid[5] ^= 1),
        ("version", |r| r.version_active = 1),
        ("stage", |r| r.csg = OPERATIONAL),
        ("T and C", |r| r.cont = true),
        ("earlier stage", |r| r.nsg = SECURITY),
        ("reserved stage", |r| r.nsg = 2),
    ];
    for (what, mangle) in cases {
        let mut l = Login::new(config(None), random());
        let r1 = l.start();
        let mut rsp = answer(&r1, 1, true, OPERATIONAL, kv(&[("AuthMethod", "None")]));
        mangle(&mut rsp);
        let e = err(l.on_response(rsp));
        assert!(matches!(e, LoginError::Protocol(_)), "{what}: {e:?}");
        assert!(e.is_permanent());
    }
    // Malformed text and bad negotiation answers.
    let mut l = Login::new(config(None), random());
    let r1 = l.start();
    let e = err(l.on_response(answer(&r1, 1, true, OPERATIONAL, b"AuthMethod".to_vec())));
    assert!(matches!(e, LoginError::Text(_)), "{e:?}");
    let mut l = Login::new(config(None), random());
    let r1 = l.start();
    let r2 = send(l.on_response(answer(
        &r1,
        1,
        true,
        OPERATIONAL,
        kv(&[("AuthMethod", "None")]),
    )));
    let e = err(l.on_response(answer(
        &r2,
        2,
        true,
        FULL_FEATURE,
        kv(&[("MaxBurstLength", "99999999")]),
    )));
    assert!(matches!(e, LoginError::Negotiation(_)), "{e:?}");
}

#[test]
fn discovery_login() {
    let mut cfg = config(None);
    cfg.kind = SessionKind::Discovery;
    cfg.targetname = None;
    let mut l = Login::new(cfg, random());
    let r1 = l.start();
    let k = keys(&r1.data);
    assert_eq!(val(&k, "SessionType"), Some("Discovery"));
    assert_eq!(val(&k, "TargetName"), None);
    let r2 = send(l.on_response(answer(
        &r1,
        1,
        true,
        OPERATIONAL,
        kv(&[("AuthMethod", "None")]),
    )));
    let offer = keys(&r2.data);
    assert_eq!(
        val(&offer, "MaxBurstLength"),
        None,
        "irrelevant for discovery"
    );
    finish_operational(&mut l, &r2, 2, &[]);
}

#[test]
fn login_pdus_survive_the_wire() {
    // What `start` builds encodes and decodes to the same request, with the
    // text padded and no digests during login.
    let mut l = Login::new(config(None), random());
    let r1 = l.start();
    let mut wire = Vec::new();
    Pdu::LoginReq(r1.clone()).encode(Digests::default(), &mut wire);
    assert_eq!(wire.len() % 4, 0);
    assert_eq!(wire[0], 0x43, "immediate Login Request");
    assert_eq!(wire[1], 0x81, "T=1, CSG=0, NSG=1");
    let mut f = super::framing::Framer::new(8192);
    f.push(&wire);
    assert_eq!(f.next(), Ok(Some(Pdu::LoginReq(r1))));
}

/// The operational stage answered with `over`, for a login with `prefs`'
/// digests.
fn digest_login(header: DigestPref, data: DigestPref, over: &[(&str, &str)]) -> LoginError {
    let mut cfg = config(None);
    cfg.prefs.header_digest = header;
    cfg.prefs.data_digest = data;
    let mut l = Login::new(cfg, random());
    let r1 = l.start();
    let r2 = send(l.on_response(answer(
        &r1,
        1,
        true,
        OPERATIONAL,
        kv(&[("AuthMethod", "None")]),
    )));
    let data = text::encode(
        op_answer(&keys(&r2.data), over)
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    err(l.on_response(answer(&r2, 2, true, FULL_FEATURE, data)))
}

#[test]
fn digest_offer_rejected_fails_the_login() {
    use DigestPref::{Any, Crc32c, None as Off};
    // istgt with UseDigest "Header Data": both None offers rejected.
    let e = digest_login(
        Off,
        Off,
        &[("HeaderDigest", "Reject"), ("DataDigest", "Reject")],
    );
    assert_eq!(
        e,
        LoginError::DigestRejected {
            header: true,
            data: true
        }
    );
    assert!(!e.is_permanent(), "a retry offering CRC32C,None may work");
    assert_eq!(
        e.to_string(),
        "target rejects our HeaderDigest and DataDigest offer and requires CRC32C \
         (set headerdigest crc32c and datadigest crc32c or any)"
    );
    let e = digest_login(Off, Off, &[("HeaderDigest", "Reject")]);
    assert_eq!(
        e,
        LoginError::DigestRejected {
            header: true,
            data: false
        }
    );
    assert!(e.to_string().contains("set headerdigest crc32c"), "{e}");
    assert!(!e.to_string().contains("datadigest"), "{e}");
    let e = digest_login(Any, Off, &[("DataDigest", "Reject")]);
    assert_eq!(
        e,
        LoginError::DigestRejected {
            header: false,
            data: true
        }
    );
    assert!(e.to_string().contains("set datadigest crc32c"), "{e}");
    // A required CRC32C answered Reject is the refusal it always was.
    let e = digest_login(Crc32c, Off, &[("HeaderDigest", "Reject")]);
    assert_eq!(e, LoginError::DigestRefused("HeaderDigest"));
}
