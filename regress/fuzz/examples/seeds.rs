//! Writes the seed corpora: `cargo run --example seeds -- seeds` creates
//! `seeds/<target>/<name>` for every fuzz target, each seed a valid (or
//! nearly valid) input in the layout that target expects.

use std::fs;
use std::path::Path;

use common::config::parse_str;
use common::ctl::{
    encode_bool, encode_config, DiscoverRequest, Discovered, PollResult, VscsiStats,
};
use iscsid::procmsg::{encode_devevent, Cmd, Done};
use iscsid::proto::chap::{encode_binary, response, ChapAlg};
use iscsid::proto::pdu::{
    AsyncMsg, DataIn, DataOut, Digests, LoginReq, LoginRsp, LogoutReq, LogoutRsp, NopIn, NopOut,
    Pdu, R2t, Reject, ScsiCommand, ScsiResponse, Snack, TaskMgmtReq, TaskMgmtRsp, TextReq, TextRsp,
    BHS_LEN, RESERVED_TAG,
};
use iscsid::proto::text;
use iscsid::vscsi::emuproto::{encode, Msg, WriteErrno};
use iscsid::vscsi::{Dir, I2t, Status};
use iscsid_fuzz::rig::{ISID, ITT, LUN1, TSIH};

const ISCSI_CONF: &str = include_str!("../../../etc/iscsi.conf");

fn kv(pairs: &[(&str, &str)]) -> Vec<u8> {
    text::encode(pairs.iter().copied())
}

fn wire(p: &Pdu, dig: Digests) -> Vec<u8> {
    let mut b = Vec::new();
    p.encode(dig, &mut b);
    b
}

/// A framed record of `Rig::play`: control byte, BHS, u16 length, data.
fn record(ctl: u8, p: &Pdu) -> Vec<u8> {
    let w = wire(p, Digests::default());
    let mut r = vec![ctl];
    r.extend_from_slice(&w[..BHS_LEN]);
    let data = p.data();
    r.extend_from_slice(&(data.len() as u16).to_be_bytes());
    r.extend_from_slice(data);
    r
}

fn login_rsp(csg: u8, nsg: u8, transit: bool, data: Vec<u8>) -> Pdu {
    Pdu::LoginRsp(LoginRsp {
        transit,
        csg,
        nsg: if transit { nsg } else { 0 },
        isid: ISID,
        tsih: if transit && nsg == 3 { TSIH } else { 0 },
        itt: ITT,
        statsn: 0x7000,
        expcmdsn: 0x1000,
        maxcmdsn: 0x1020,
        data,
        ..Default::default()
    })
}

fn target_pdus() -> Vec<Pdu> {
    let mut sense = vec![0u8, 18, 0x70, 0, 6, 0, 0, 0, 0, 10];
    sense.resize(20, 0);
    sense[14] = 0x3f;
    sense[15] = 0x0e;
    vec![
        Pdu::NopIn(NopIn {
            lun: LUN1,
            itt: RESERVED_TAG,
            ttt: 0x55,
            statsn: 1,
            expcmdsn: 2,
            maxcmdsn: 40,
            data: b"ping".to_vec(),
        }),
        Pdu::ScsiResponse(ScsiResponse {
            status: 2,
            itt: 0xa01,
            statsn: 1,
            expcmdsn: 2,
            maxcmdsn: 40,
            data: sense,
            ..Default::default()
        }),
        Pdu::ScsiResponse(ScsiResponse {
            underflow: true,
            residual: 512,
            itt: 0xa01,
            ..Default::default()
        }),
        Pdu::TaskMgmtRsp(TaskMgmtRsp {
            response: 0,
            itt: 0xa02,
            statsn: 3,
            expcmdsn: 4,
            maxcmdsn: 50,
        }),
        login_rsp(0, 1, true, kv(&[("AuthMethod", "None")])),
        login_rsp(
            1,
            3,
            true,
            kv(&[
                ("HeaderDigest", "None"),
                ("MaxRecvDataSegmentLength", "8192"),
            ]),
        ),
        Pdu::TextRsp(TextRsp {
            final_: true,
            itt: 0xa01,
            ttt: RESERVED_TAG,
            data: kv(&[
                ("TargetName", "iqn.2004-04.com.example:disk"),
                ("TargetAddress", "192.0.2.1:3260,1"),
                ("TargetAddress", "[2001:db8::1]:3260,2"),
            ]),
            ..Default::default()
        }),
        Pdu::DataIn(DataIn {
            final_: true,
            status_present: true,
            lun: LUN1,
            itt: 0xa01,
            ttt: RESERVED_TAG,
            datasn: 0,
            buffer_offset: 0,
            data: vec![0xab; 512],
            ..Default::default()
        }),
        Pdu::LogoutRsp(LogoutRsp {
            itt: 0xa03,
            time2wait: 2,
            time2retain: 20,
            ..Default::default()
        }),
        Pdu::R2t(R2t {
            lun: LUN1,
            itt: 0xa01,
            ttt: 0x1234,
            r2tsn: 0,
            buffer_offset: 0,
            desired_len: 512,
            ..Default::default()
        }),
        Pdu::AsyncMsg(AsyncMsg {
            event: 1,
            param3: 5,
            ..Default::default()
        }),
        Pdu::Reject(Reject {
            reason: 9,
            data: vec![0x01; BHS_LEN],
            ..Default::default()
        }),
    ]
}

fn initiator_pdus() -> Vec<Pdu> {
    vec![
        Pdu::NopOut(NopOut {
            immediate: true,
            itt: 1,
            ttt: RESERVED_TAG,
            data: b"pong".to_vec(),
            ..Default::default()
        }),
        Pdu::ScsiCommand(ScsiCommand {
            final_: true,
            write: true,
            attr: 1,
            lun: LUN1,
            itt: 2,
            expected_len: 4096,
            cdb: vec![0x7f; 32],
            bidi_read_len: Some(512),
            data: vec![1; 100],
            ..Default::default()
        }),
        Pdu::TaskMgmtReq(TaskMgmtReq {
            immediate: true,
            function: 1,
            itt: 3,
            rtt: 2,
            ..Default::default()
        }),
        Pdu::LoginReq(LoginReq {
            transit: true,
            nsg: 1,
            isid: ISID,
            itt: ITT,
            data: kv(&[("InitiatorName", "iqn.x"), ("AuthMethod", "None")]),
            ..Default::default()
        }),
        Pdu::TextReq(TextReq {
            final_: true,
            itt: 4,
            ttt: RESERVED_TAG,
            data: kv(&[("SendTargets", "All")]),
            ..Default::default()
        }),
        Pdu::DataOut(DataOut {
            final_: true,
            itt: 2,
            ttt: 0x1234,
            data: vec![7; 13],
            ..Default::default()
        }),
        Pdu::LogoutReq(LogoutReq {
            immediate: true,
            itt: 5,
            ..Default::default()
        }),
        Pdu::Snack(Snack {
            snack_type: 0,
            itt: 2,
            begrun: 1,
            runlength: 2,
            ..Default::default()
        }),
    ]
}

struct Out<'a> {
    dir: &'a Path,
}

impl Out<'_> {
    fn put(&self, target: &str, name: &str, bytes: &[u8]) {
        let d = self.dir.join(target);
        fs::create_dir_all(&d).expect("seed directory");
        fs::write(d.join(name), bytes).expect("seed file");
    }
}

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "seeds".into());
    let out = Out {
        dir: Path::new(&dir),
    };
    let all: Vec<Pdu> = target_pdus().into_iter().chain(initiator_pdus()).collect();

    // pdu: mode, split, then the wire form (no digests).
    for (i, p) in all.iter().enumerate() {
        let mut s = vec![0, 0];
        s.extend(wire(p, Digests::default()));
        out.put("pdu", &format!("{i:02}-op{:02x}", s[2] & 0x3f), &s);
    }

    // framer: flags (digests, max_data 0x00ff_ffff, chunk size), seed, stream.
    for (d, dig) in [(0u8, false), (3, true)] {
        let digests = Digests {
            header: dig,
            data: dig,
        };
        for (c, chunk) in [(0u8, "bytes"), (0x20, "48"), (0x70, "spare")] {
            let mut s = vec![d | 0x0c | c, 7];
            for p in &all {
                s.extend(wire(p, digests));
            }
            out.put("framer", &format!("stream-dig{d}-{chunk}"), &s);
        }
    }

    // text: chunk seed, then text.
    let texts: [&[u8]; 4] = [
        b"TargetName=iqn.2004-04.com.example:disk\0TargetAddress=192.0.2.1:3260,1\0TargetAddress=[2001:db8::1],2\0",
        b"HeaderDigest=CRC32C,None\0MaxRecvDataSegmentLength=262144\0\0\0",
        b"SendTargets=All\0",
        b"TargetName=a\0TargetName=b\0TargetAddress=h\0",
    ];
    for (i, t) in texts.iter().enumerate() {
        let mut s = vec![5];
        s.extend_from_slice(t);
        out.put("text", &format!("text{i}"), &s);
    }

    // negotiate: digest/bool flags, prefs (u32 mrdsl, burst, first burst,
    // u16 r2t, t2w, t2r, u8 conns, erl), kind, rounds separated by 0xff.
    let mut prefs = vec![0x3a];
    prefs.extend(262_144u32.to_be_bytes());
    prefs.extend(1_048_576u32.to_be_bytes());
    prefs.extend(262_144u32.to_be_bytes());
    prefs.extend(16u16.to_be_bytes());
    prefs.extend(2u16.to_be_bytes());
    prefs.extend(20u16.to_be_bytes());
    prefs.extend([1, 0]);
    let answers: [&[u8]; 3] = [
        b"HeaderDigest=None\0DataDigest=CRC32C\0MaxConnections=1\0InitialR2T=No\0ImmediateData=Yes\0MaxBurstLength=262144\0FirstBurstLength=65536\0DefaultTime2Wait=2\0DefaultTime2Retain=20\0MaxOutstandingR2T=1\0DataPDUInOrder=Yes\0DataSequenceInOrder=Yes\0ErrorRecoveryLevel=0\0MaxRecvDataSegmentLength=8192\0",
        b"TargetPortalGroupTag=1\0TargetAlias=disk\0\xffMaxRecvDataSegmentLength=0x2000\0IFMarker=No\0TaskReporting=RFC3720\0\xffFoo=Bar\0",
        b"HeaderDigest=Reject\0MaxBurstLength=NotUnderstood\0iSCSIProtocolLevel=1\0",
    ];
    for (i, a) in answers.iter().enumerate() {
        for kind in [0u8, 1] {
            let mut s = prefs.clone();
            s.push(kind);
            s.extend_from_slice(a);
            out.put("negotiate", &format!("answer{i}-kind{kind}"), &s);
        }
    }

    // chap: flags (algs, mutual, fix-up), 33 random bytes, rounds.
    let random: Vec<u8> = (0u8..33)
        .map(|i| i.wrapping_mul(37).wrapping_add(5))
        .collect();
    for (flags, alg) in [(0u8, 7u8), (1, 5), (0x0c, 7), (0x0f, 5)] {
        let mut s = vec![flags];
        s.extend_from_slice(&random);
        let challenge = encode_binary(&[0x5a; 16]);
        s.extend(
            format!("CHAP_A={alg}\0CHAP_I=1\0CHAP_C={challenge}\0\u{ff}CHAP_N=tgt\0CHAP_R=0x00\0")
                .bytes(),
        );
        out.put("chap", &format!("flags{flags:02x}"), &fix_ff(&s));
    }
    let b64 =
        b"\x02\x00CHAP_A=7\0CHAP_I=255\0CHAP_C=0bAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\0";
    out.put(
        "chap",
        "base64",
        &[&[0x02][..], &random, &b64[2..]].concat(),
    );

    // session_login: options, then records of Login Responses with the
    // ITT, sequence number and ISID fix-ups (0x53).
    let mut s = vec![0x00, 0x0a];
    s.extend(record(
        0x53,
        &login_rsp(0, 1, true, kv(&[("AuthMethod", "None")])),
    ));
    s.extend(record(
        0x53,
        &login_rsp(
            1,
            3,
            true,
            kv(&[
                ("HeaderDigest", "None"),
                ("DataDigest", "None"),
                ("MaxRecvDataSegmentLength", "8192"),
            ]),
        ),
    ));
    out.put("session_login", "auth-none", &s);
    let mut s = vec![0x02, 0x0a];
    s.extend(record(
        0x53,
        &login_rsp(0, 0, false, kv(&[("AuthMethod", "CHAP")])),
    ));
    s.extend(record(
        0x53,
        &login_rsp(
            0,
            0,
            false,
            kv(&[
                ("CHAP_A", "5"),
                ("CHAP_I", "1"),
                ("CHAP_C", &encode_binary(&[0x33; 16])),
            ]),
        ),
    ));
    s.extend(record(0x53, &login_rsp(0, 1, true, Vec::new())));
    s.extend([0x80, 0x40, 0x00]);
    out.put("session_login", "chap", &s);
    let mut s = vec![0x01, 0x0a];
    s.extend([0x07, 0x10]);
    s.extend_from_slice(
        &wire(
            &login_rsp(0, 3, true, kv(&[("AuthMethod", "None")])),
            Digests::default(),
        )[..30],
    );
    s.extend([0xc0, 0x01, 0xe0]);
    out.put("session_login", "raw-discovery", &s);
    let mut redirect = login_rsp(0, 0, false, kv(&[("TargetAddress", "192.0.2.7:3260,1")]));
    if let Pdu::LoginRsp(r) = &mut redirect {
        r.status_class = 1;
        r.status_detail = 1;
    }
    let mut s = vec![0x00, 0x0a];
    s.extend(record(0x53, &redirect));
    out.put("session_login", "redirect", &s);

    // session_ffp: options, command picks, records answering the first
    // command (a 512-byte read; the ITT fix-up picks tag index 1).
    let mut read = vec![0x00, 0x0a, 0x01];
    let mut di = DataIn {
        final_: true,
        status_present: true,
        lun: LUN1,
        ttt: RESERVED_TAG,
        data: vec![0xab; 512],
        ..Default::default()
    };
    di.itt = 1;
    read.extend(record(0x4b, &Pdu::DataIn(di.clone())));
    out.put("session_ffp", "read-data-in", &read);
    let mut s = vec![0x00, 0x0a, 0x01];
    di.status_present = false;
    di.data.truncate(256);
    s.extend(record(0x49, &Pdu::DataIn(di.clone())));
    di.datasn = 1;
    di.buffer_offset = 256;
    di.status_present = true;
    s.extend(record(0x4b, &Pdu::DataIn(di)));
    out.put("session_ffp", "read-two-data-in", &s);
    // A write (command pick 1) answered by an R2T then a response.
    let mut s = vec![0x20, 0x0a, 0x05];
    let r2t = R2t {
        lun: LUN1,
        itt: 1,
        ttt: 0x99,
        desired_len: 512,
        ..Default::default()
    };
    s.extend(record(0x4b, &Pdu::R2t(r2t)));
    let rsp = ScsiResponse {
        itt: 1,
        ..Default::default()
    };
    s.extend(record(0x4b, &Pdu::ScsiResponse(rsp)));
    out.put("session_ffp", "write-r2t", &s);
    let mut s = vec![0x58, 0x0a, 0x00];
    let nop = NopIn {
        lun: LUN1,
        itt: RESERVED_TAG,
        ttt: 0x77,
        data: vec![1; 64],
        ..Default::default()
    };
    s.extend(record(0x46, &Pdu::NopIn(nop)));
    s.extend([0x81, 0x40, 0x00]);
    s.extend([0xc0, 0x09, 0xe0]);
    out.put("session_ffp", "digests-nop-timer", &s);
    let mut s = vec![0x01, 0x0a, 0x00];
    for p in target_pdus() {
        s.extend(record(0x43, &p));
    }
    out.put("session_ffp", "discovery-everything", &s);

    // Deeper full-feature-phase exchanges; tag index 0 is the login ITT.
    let text_rsp = |itt: u32, ttt: u32, last: bool, data: Vec<u8>| {
        Pdu::TextRsp(TextRsp {
            final_: last,
            cont: !last,
            itt,
            ttt,
            data,
            ..Default::default()
        })
    };
    let mut s = vec![0x00, 0x0a, 0x00];
    let renegotiate = AsyncMsg {
        event: 4,
        ..Default::default()
    };
    s.extend(record(0x42, &Pdu::AsyncMsg(renegotiate)));
    s.extend(record(
        0x43,
        &text_rsp(
            1,
            RESERVED_TAG,
            true,
            kv(&[("MaxRecvDataSegmentLength", "4096"), ("TargetAlias", "x")]),
        ),
    ));
    out.put("session_ffp", "async-renegotiate", &s);
    let targets = kv(&[
        ("TargetName", "iqn.2004-04.com.example:a"),
        ("TargetAddress", "192.0.2.1:3260,1"),
        ("TargetName", "iqn.2004-04.com.example:b"),
        ("TargetAddress", "[2001:db8::1]:3260,2"),
    ]);
    let mut s = vec![0x01, 0x0a, 0x00];
    s.extend(record(
        0x43,
        &text_rsp(1, RESERVED_TAG, true, targets.clone()),
    ));
    out.put("session_ffp", "discovery-sendtargets", &s);
    let mut s = vec![0x01, 0x0a, 0x00];
    let (head, tail) = targets.split_at(30);
    s.extend(record(0x43, &text_rsp(1, 0x10, false, head.to_vec())));
    s.extend(record(
        0x43,
        &text_rsp(1, RESERVED_TAG, true, tail.to_vec()),
    ));
    out.put("session_ffp", "discovery-continued", &s);
    // A read that times out (60 s), the ABORT TASK answered.
    let mut s = vec![0x00, 0x0a, 0x01, 0x81, 0xea, 0x60];
    let tmf = TaskMgmtRsp {
        itt: 2,
        ..Default::default()
    };
    s.extend(record(0x43, &Pdu::TaskMgmtRsp(tmf)));
    out.put("session_ffp", "abort", &s);
    let mut s = vec![0x00, 0x0a, 0x01, 0xe0];
    let lo = LogoutRsp {
        itt: 2,
        ..Default::default()
    };
    s.extend(record(0x43, &Pdu::LogoutRsp(lo)));
    out.put("session_ffp", "logout", &s);
    let mut s = vec![0x00, 0x0a, 0x01];
    let rejected = wire(
        &Pdu::ScsiCommand(ScsiCommand {
            itt: ITT + 1,
            cdb: vec![0x28; 10],
            ..Default::default()
        }),
        Digests::default(),
    );
    let rej = Reject {
        reason: 9,
        data: rejected[..BHS_LEN].to_vec(),
        ..Default::default()
    };
    s.extend(record(0x42, &Pdu::Reject(rej)));
    out.put("session_ffp", "reject", &s);
    // Our ping after 10 s idle, answered.
    let mut s = vec![0x00, 0x0a, 0x00, 0x81, 0x27, 0x10];
    let pong = NopIn {
        itt: 1,
        ttt: RESERVED_TAG,
        ..Default::default()
    };
    s.extend(record(0x43, &Pdu::NopIn(pong)));
    out.put("session_ffp", "ping", &s);

    // session_login with mutual CHAP to the end: the rig's random bytes
    // make our identifier 0x42 and our challenge 0x80..=0x8f.
    let ours: Vec<u8> = (0x80..=0x8f).collect();
    let theirs = encode_binary(&response(ChapAlg::Md5, 0x42, b"tgtsecret1234", &ours));
    let mut s = vec![0x04, 0x0a];
    s.extend(record(
        0x53,
        &login_rsp(0, 0, false, kv(&[("AuthMethod", "CHAP")])),
    ));
    s.extend(record(
        0x53,
        &login_rsp(
            0,
            0,
            false,
            kv(&[
                ("CHAP_A", "5"),
                ("CHAP_I", "1"),
                ("CHAP_C", &encode_binary(&[0x33; 16])),
            ]),
        ),
    ));
    s.extend(record(
        0x53,
        &login_rsp(0, 1, true, kv(&[("CHAP_N", "tgt"), ("CHAP_R", &theirs)])),
    ));
    s.extend(record(
        0x53,
        &login_rsp(
            1,
            3,
            true,
            kv(&[
                ("HeaderDigest", "None"),
                ("DataDigest", "None"),
                ("MaxRecvDataSegmentLength", "8192"),
            ]),
        ),
    ));
    s.extend([0xc0, 0x00]);
    out.put("session_login", "chap-mutual", &s);

    // config: the sample file, uncommented.
    let conf: String = ISCSI_CONF
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest)
                if rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '\t' || c == '}') =>
            {
                rest
            }
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    out.put("config", "iscsi.conf", conf.as_bytes());
    out.put("config", "commented", ISCSI_CONF.as_bytes());
    out.put(
        "config",
        "small",
        b"a = \"10.0.0.2\"\nisid en 1 2\ntarget t {\n targetaddr $a port 3260\n targetname \"iqn.x\"\n chap name n secret \"s\"\n}\n",
    );

    // ctl: selector, then an encoding.
    let put_ctl = |sel: u8, name: &str, b: Vec<u8>| {
        let mut s = vec![sel];
        s.extend(b);
        out.put("ctl", name, &s);
    };
    let cfg = parse_str(&conf, "iscsi.conf").unwrap_or_default();
    put_ctl(0, "config", encode_config(&cfg));
    let mut info = Vec::new();
    for part in [
        &[0, 0, 0, 4][..],
        b"data",
        &[0, 1],
        &[0xff, 0],
        &[1, 0, 0, 0, 1, 4, 192, 0, 2, 1, 0x0c, 0xbc],
    ] {
        info.extend_from_slice(part);
    }
    put_ctl(1, "sessioninfo-guess", info);
    if let Some(t) = cfg.targets.first() {
        if let Some(addr) = t.targetaddr {
            let d = DiscoverRequest {
                addr,
                initiatorname: Some("iqn.x".into()),
                params: t.params.clone(),
            };
            put_ctl(2, "discover", d.encode());
        }
    }
    put_ctl(3, "stats", VscsiStats::default().encode());
    put_ctl(
        4,
        "discovered",
        Discovered {
            targetname: "iqn.x".into(),
            addresses: vec!["192.0.2.1:3260,1".into()],
        }
        .encode(),
    );
    put_ctl(
        5,
        "poll",
        PollResult {
            sessions: 3,
            disabled: 1,
            logged_in: 1,
            failed: 1,
            connecting: 0,
        }
        .encode(),
    );
    put_ctl(6, "bool", encode_bool(true));

    // relaymsg: selector, then a message.
    let i2t = I2t {
        tag: 9,
        target: 0,
        lun: 1,
        cdb: [0x28, 0, 0, 0, 0, 0x10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
        cdblen: 10,
        datalen: 512,
        dir: Dir::Write,
    };
    let mut s = vec![0];
    s.extend([5u8; 512]);
    s.extend(Cmd::trailer(&i2t, None));
    out.put("relaymsg", "cmd", &s);
    let mut s = vec![0];
    s.extend(Cmd::trailer(&i2t, Some(3)));
    out.put("relaymsg", "cmd-slot", &s);
    let mut s = vec![1];
    s.extend([1u8; 32]);
    s.extend(Done::trailer(
        9,
        Status::Sense,
        &[0x70, 0, 6, 0, 0, 0, 0, 10],
        0,
    ));
    out.put("relaymsg", "done", &s);
    let mut s = vec![2];
    s.extend(encode_devevent(1, 2));
    out.put("relaymsg", "devevent", &s);

    // emuproto: chunk seed, then a stream of every message type.
    let msgs: Vec<Msg> = vec![
        Msg::I2t(i2t),
        Msg::DataWrite { tag: 9, len: 512 },
        Msg::WriteData {
            tag: 9,
            data: vec![3; 40],
        },
        Msg::WriteErr {
            tag: 9,
            err: WriteErrno::NoMem,
        },
        Msg::DataRead {
            tag: 9,
            data: vec![4; 17],
        },
        Msg::T2i {
            tag: 9,
            status: Status::Done,
            sense: [0; 18],
        },
        Msg::Probe { target: 1, lun: 0 },
        Msg::Detach {
            target: 1,
            lun: 0,
            busy: iscsid::vscsi::emuproto::tag_bytes([9]),
        },
    ];
    let mut s = vec![2];
    for m in &msgs {
        encode(m, &mut s).expect("encodable");
    }
    out.put("emuproto", "all", &s);

    // imsg: max size pick, then writes (ctl with fd bit, u16 length, bytes).
    let msg = |kind: u32, len: u32, payload: &[u8]| {
        let mut b = Vec::new();
        for w in [kind, len, 0, 4242] {
            b.extend(w.to_ne_bytes());
        }
        b.extend_from_slice(payload);
        b
    };
    let plain = msg(1, 20, b"abcd");
    let with_fd = msg(2, 16 | 0x8000_0000, b"");
    let mut s = vec![2];
    for (ctl, m) in [(0u8, &plain), (1, &with_fd), (0, &plain)] {
        s.push(ctl);
        s.extend((m.len() as u16).to_be_bytes());
        s.extend_from_slice(m);
    }
    out.put("imsg", "three", &s);
    let mut s = vec![2, 0];
    let two = [plain.clone(), plain].concat();
    s.extend((two.len() as u16 - 3).to_be_bytes());
    s.extend_from_slice(&two[..two.len() - 3]);
    s.extend([0, 0, 3]);
    s.extend_from_slice(&two[two.len() - 3..]);
    out.put("imsg", "split", &s);
}

/// The seed strings use U+00FF as the round separator; as UTF-8 that is
/// two bytes, so turn it back into the single 0xff byte `kv_rounds` wants.
fn fix_ff(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == 0xc3 && s.get(i + 1) == Some(&0xbf) {
            out.push(0xff);
            i += 2;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}
