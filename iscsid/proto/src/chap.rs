//! CHAP, initiator side (RFC 7143 12.1.3, RFC 1994), one-way and mutual,
//! with MD5 (CHAP_A=5) and SHA-256 (CHAP_A=7). Randomness comes from the
//! caller so that the exchange stays a pure function of its inputs.

use std::fmt;

use md5::{Digest, Md5};
use sha2::Sha256;

use super::negotiate::parse_number;

/// Challenge lengths we accept from a target (RFC 7143 12.1.3).
const MIN_CHALLENGE: usize = 1;
const MAX_CHALLENGE: usize = 1024;
/// Our own challenge is never shorter than this, whatever the digest.
const MIN_OUR_CHALLENGE: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChapAlg {
    Md5,
    Sha256,
}

impl ChapAlg {
    /// The CHAP_A number (IANA "PPP Authentication Algorithms").
    pub fn code(self) -> u32 {
        match self {
            ChapAlg::Md5 => 5,
            ChapAlg::Sha256 => 7,
        }
    }

    pub fn from_code(c: u32) -> Option<ChapAlg> {
        match c {
            5 => Some(ChapAlg::Md5),
            7 => Some(ChapAlg::Sha256),
            _ => None,
        }
    }

    pub fn digest_len(self) -> usize {
        match self {
            ChapAlg::Md5 => 16,
            ChapAlg::Sha256 => 32,
        }
    }
}

/// The CHAP response H(id || secret || challenge).
pub fn response(alg: ChapAlg, id: u8, secret: &[u8], challenge: &[u8]) -> Vec<u8> {
    fn run<D: Digest>(id: u8, secret: &[u8], challenge: &[u8]) -> Vec<u8> {
        let mut h = D::new();
        h.update([id]);
        h.update(secret);
        h.update(challenge);
        h.finalize().to_vec()
    }
    match alg {
        ChapAlg::Md5 => run::<Md5>(id, secret, challenge),
        ChapAlg::Sha256 => run::<Sha256>(id, secret, challenge),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChapError {
    /// The target chose an algorithm we did not offer (or answered Reject).
    NoCommonAlgorithm,
    /// The target's challenge is not 1..=1024 bytes long.
    BadChallenge,
    /// CHAP_I is not a number in 0..=255.
    BadIdentifier,
    MissingKey(&'static str),
    /// A CHAP key appears twice in one response.
    DuplicateKey(&'static str),
    /// Mutual CHAP: the target's CHAP_R does not prove it knows the secret.
    TargetAuthFailed,
    /// Mutual CHAP: the target's CHAP_N is not the configured name.
    TargetNameMismatch,
    /// The target sent back our own challenge (reflection attack).
    ReflectedChallenge,
    /// A binary value is not valid 0x-hex or 0b-base64.
    Malformed(&'static str),
    /// Keys arrived before start(), or after the exchange failed.
    OutOfOrder,
}

// No "CHAP:" prefix here: LoginError::Chap, the only place these reach a
// message, names the exchange already.
impl fmt::Display for ChapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChapError::NoCommonAlgorithm => write!(f, "no common algorithm"),
            ChapError::BadChallenge => write!(f, "challenge length out of range"),
            ChapError::BadIdentifier => write!(f, "bad identifier"),
            ChapError::MissingKey(k) => write!(f, "{k} missing"),
            ChapError::DuplicateKey(k) => write!(f, "{k} sent twice"),
            ChapError::TargetAuthFailed => write!(f, "target failed mutual authentication"),
            ChapError::TargetNameMismatch => write!(f, "unexpected target CHAP name"),
            ChapError::ReflectedChallenge => write!(f, "target reflected our challenge"),
            ChapError::Malformed(what) => write!(f, "malformed {what}"),
            ChapError::OutOfOrder => write!(f, "unexpected step"),
        }
    }
}

impl std::error::Error for ChapError {}

/// RFC 7143 5.1 binary value, as "0x" and lowercase hex.
pub fn encode_binary(b: &[u8]) -> String {
    let mut s = String::with_capacity(2 + 2 * b.len());
    s.push_str("0x");
    for byte in b {
        s.push_str(&format!("{byte:02x}"));
    }
    s
}

/// RFC 7143 5.1 binary value: "0x"/"0X" hex (an odd digit count means a
/// leading nibble) or "0b"/"0B" base64.
pub fn decode_binary(s: &str) -> Result<Vec<u8>, ChapError> {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        decode_hex(h.as_bytes())
    } else if let Some(b) = s.strip_prefix("0b").or_else(|| s.strip_prefix("0B")) {
        decode_base64(b.as_bytes())
    } else {
        Err(ChapError::Malformed("binary value prefix"))
    }
}

fn decode_hex(h: &[u8]) -> Result<Vec<u8>, ChapError> {
    let bad = ChapError::Malformed("hex value");
    if h.is_empty() {
        return Err(bad);
    }
    let nibble = |c: &u8| char::from(*c).to_digit(16).ok_or(bad.clone());
    let mut out = Vec::with_capacity(h.len().div_ceil(2));
    // An odd count leaves the first digit alone as the high byte's low nibble.
    let (head, rest) = h.split_at(h.len() % 2);
    if let Some(c) = head.first() {
        out.push(nibble(c)? as u8);
    }
    for pair in rest.chunks_exact(2) {
        if let [hi, lo] = pair {
            out.push(((nibble(hi)? << 4) | nibble(lo)?) as u8);
        }
    }
    Ok(out)
}

fn b64_value(c: u8) -> Option<u32> {
    let v = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// RFC 4648 base64 (standard alphabet); padding optional but, if present,
/// it must be exactly right.
fn decode_base64(b: &[u8]) -> Result<Vec<u8>, ChapError> {
    let bad = ChapError::Malformed("base64 value");
    let body_len = b.iter().rposition(|&c| c != b'=').map_or(0, |p| p + 1);
    let (body, pad) = b.split_at(body_len);
    let expected_pad = (4 - body.len() % 4) % 4;
    if body.is_empty() || body.len() % 4 == 1 || (!pad.is_empty() && pad.len() != expected_pad) {
        return Err(bad);
    }
    let mut out = Vec::with_capacity(body.len() / 4 * 3 + 2);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &c in body {
        acc = (acc << 6) | b64_value(c).ok_or(bad.clone())?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

/// Comparison whose time does not depend on where the inputs differ.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Clone)]
pub struct ChapConfig {
    pub name: String,
    pub secret: Vec<u8>,
    /// Mutual CHAP: the name and secret the target must prove.
    pub mutual: Option<(String, Vec<u8>)>,
    /// Preference order; empty means SHA-256 then MD5.
    pub algs: Vec<ChapAlg>,
}

impl fmt::Debug for ChapConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChapConfig")
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .field(
                "mutual",
                &self.mutual.as_ref().map(|(n, _)| (n, "<redacted>")),
            )
            .field("algs", &self.algs)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChapStep {
    Send(Vec<(String, String)>),
    Done,
}

#[derive(Debug)]
enum State {
    Idle,
    AwaitChallenge,
    AwaitMutual { id: u8, challenge: Vec<u8> },
    Done,
    Failed,
}

pub struct ChapClient {
    cfg: ChapConfig,
    random: [u8; 33],
    state: State,
    alg: Option<ChapAlg>,
}

impl fmt::Debug for ChapClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChapClient")
            .field("cfg", &self.cfg)
            .field("state", &self.state)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// The value of `name` in `keys`, refusing repeats (an ambiguous response).
fn find<'a>(keys: &'a [(String, String)], name: &'static str) -> Result<&'a str, ChapError> {
    let mut hits = keys.iter().filter(|(k, _)| k == name);
    let first = hits.next().ok_or(ChapError::MissingKey(name))?;
    if hits.next().is_some() {
        return Err(ChapError::DuplicateKey(name));
    }
    Ok(first.1.as_str())
}

impl ChapClient {
    /// `random` supplies the mutual-CHAP identifier (byte 0) and challenge
    /// (the bytes after it); the caller fills it from getrandom.
    pub fn new(cfg: ChapConfig, random: [u8; 33]) -> ChapClient {
        ChapClient {
            cfg,
            random,
            state: State::Idle,
            alg: None,
        }
    }

    fn algs(&self) -> Vec<ChapAlg> {
        let mut algs: Vec<ChapAlg> = Vec::new();
        for a in &self.cfg.algs {
            if !algs.contains(a) {
                algs.push(*a);
            }
        }
        if algs.is_empty() {
            algs = vec![ChapAlg::Sha256, ChapAlg::Md5];
        }
        algs
    }

    /// After the target chose AuthMethod=CHAP: the CHAP_A offer.
    pub fn start(&mut self) -> Vec<(String, String)> {
        self.state = State::AwaitChallenge;
        let codes: Vec<String> = self.algs().iter().map(|a| a.code().to_string()).collect();
        vec![("CHAP_A".to_owned(), codes.join(","))]
    }

    /// Keys from the target's next Login Response. Any error leaves the
    /// client failed: the login must be abandoned.
    pub fn on_keys(&mut self, keys: &[(String, String)]) -> Result<ChapStep, ChapError> {
        match std::mem::replace(&mut self.state, State::Failed) {
            State::AwaitChallenge => self.on_challenge(keys),
            State::AwaitMutual { id, challenge } => self.on_mutual(keys, id, &challenge),
            // One-way CHAP ends once CHAP_R is sent; later responses are
            // the login code's business.
            State::Done => {
                self.state = State::Done;
                Ok(ChapStep::Done)
            }
            State::Idle | State::Failed => Err(ChapError::OutOfOrder),
        }
    }

    fn on_challenge(&mut self, keys: &[(String, String)]) -> Result<ChapStep, ChapError> {
        let alg = parse_number(find(keys, "CHAP_A")?)
            .ok()
            .and_then(|c| u32::try_from(c).ok())
            .and_then(ChapAlg::from_code)
            .filter(|a| self.algs().contains(a))
            .ok_or(ChapError::NoCommonAlgorithm)?;
        let id = parse_number(find(keys, "CHAP_I")?)
            .ok()
            .and_then(|n| u8::try_from(n).ok())
            .ok_or(ChapError::BadIdentifier)?;
        let challenge = decode_binary(find(keys, "CHAP_C")?)?;
        if !(MIN_CHALLENGE..=MAX_CHALLENGE).contains(&challenge.len()) {
            return Err(ChapError::BadChallenge);
        }

        let mut mutual = None;
        if self.cfg.mutual.is_some() {
            let len = alg.digest_len().max(MIN_OUR_CHALLENGE);
            let [our_id, rest @ ..] = self.random;
            let our_challenge = rest.get(..len).unwrap_or(&rest).to_vec();
            // Checked before answering: replying would hand the target the
            // response to our own challenge.
            if our_challenge == challenge {
                return Err(ChapError::ReflectedChallenge);
            }
            mutual = Some((our_id, our_challenge));
        }

        let r = response(alg, id, &self.cfg.secret, &challenge);
        let mut out = vec![
            ("CHAP_N".to_owned(), self.cfg.name.clone()),
            ("CHAP_R".to_owned(), encode_binary(&r)),
        ];
        self.alg = Some(alg);
        self.state = match mutual {
            Some((our_id, our_challenge)) => {
                out.push(("CHAP_I".to_owned(), our_id.to_string()));
                out.push(("CHAP_C".to_owned(), encode_binary(&our_challenge)));
                State::AwaitMutual {
                    id: our_id,
                    challenge: our_challenge,
                }
            }
            None => State::Done,
        };
        Ok(ChapStep::Send(out))
    }

    fn on_mutual(
        &mut self,
        keys: &[(String, String)],
        id: u8,
        challenge: &[u8],
    ) -> Result<ChapStep, ChapError> {
        let (Some((name, secret)), Some(alg)) = (&self.cfg.mutual, self.alg) else {
            return Err(ChapError::OutOfOrder);
        };
        let got_name = find(keys, "CHAP_N")?;
        let got = decode_binary(find(keys, "CHAP_R")?)?;
        if got_name != name {
            return Err(ChapError::TargetNameMismatch);
        }
        if !ct_eq(&got, &response(alg, id, secret, challenge)) {
            return Err(ChapError::TargetAuthFailed);
        }
        self.state = State::Done;
        Ok(ChapStep::Done)
    }

    /// The algorithm the target chose, once known.
    pub fn alg(&self) -> Option<ChapAlg> {
        self.alg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn hex(s: &str) -> Vec<u8> {
        decode_binary(&format!("0x{s}")).unwrap()
    }

    const SECRET: &[u8] = b"secretsecret12";
    const MSECRET: &[u8] = b"tgtsecret1234";
    // Expected values computed independently with Python's hashlib:
    // md5/sha256(bytes([1]) + b"secretsecret12" + bytes(range(16))).
    const MD5_R: &str = "c69b78dc6ac14bd854fdade1fcb18a77";
    const SHA_R: &str = "5d16fcb2f22bd26fb851f29bc90b8fd75a0b57441c9bde26b53c1c1eac454004";
    // hashlib over bytes([0x42]) + b"tgtsecret1234" + bytes(range(0x80, 0x80 + n)).
    const MD5_MUTUAL: &str = "233eaa70ded2a458e694df8a7b04eb19";
    const SHA_MUTUAL: &str = "9386532258813e0fc1a58bced41ce181102e7656ea6bbc7b52d74b199ea676e5";
    const CHALLENGE: &str = "0x000102030405060708090a0b0c0d0e0f";

    fn random() -> [u8; 33] {
        let mut r = [0u8; 33];
        r[0] = 0x42;
        for (i, b) in r.iter_mut().enumerate().skip(1) {
            *b = 0x7f + i as u8;
        }
        r
    }

    fn cfg(mutual: bool, algs: &[ChapAlg]) -> ChapConfig {
        ChapConfig {
            name: "alice".into(),
            secret: SECRET.to_vec(),
            mutual: mutual.then(|| ("tgt".to_string(), MSECRET.to_vec())),
            algs: algs.to_vec(),
        }
    }

    fn client(mutual: bool) -> ChapClient {
        let mut c = ChapClient::new(cfg(mutual, &[ChapAlg::Sha256, ChapAlg::Md5]), random());
        assert_eq!(c.start(), kv(&[("CHAP_A", "7,5")]));
        c
    }

    #[test]
    fn alg_codes() {
        assert_eq!(ChapAlg::Md5.code(), 5);
        assert_eq!(ChapAlg::Sha256.code(), 7);
        assert_eq!(ChapAlg::from_code(5), Some(ChapAlg::Md5));
        assert_eq!(ChapAlg::from_code(7), Some(ChapAlg::Sha256));
        assert_eq!(ChapAlg::from_code(6), None);
        assert_eq!(ChapAlg::from_code(8), None);
        assert_eq!(ChapAlg::Md5.digest_len(), 16);
        assert_eq!(ChapAlg::Sha256.digest_len(), 32);
    }

    #[test]
    fn response_vectors() {
        let ch: Vec<u8> = (0..16).collect();
        assert_eq!(response(ChapAlg::Md5, 1, SECRET, &ch), hex(MD5_R));
        assert_eq!(response(ChapAlg::Sha256, 1, SECRET, &ch), hex(SHA_R));
        // hashlib.md5(bytes([0xab]) + b"password" + bytes.fromhex("deadbeef"))
        assert_eq!(
            response(ChapAlg::Md5, 0xab, b"password", &hex("deadbeef")),
            hex("b523df20ebdc7a01d09ddfb382bf5eb5")
        );
        // The identifier is part of the hash.
        assert_ne!(response(ChapAlg::Md5, 2, SECRET, &ch), hex(MD5_R));
    }

    #[test]
    fn binary_hex() {
        assert_eq!(encode_binary(&[0x00, 0xab, 0xff]), "0x00abff");
        assert_eq!(encode_binary(&[]), "0x");
        assert_eq!(decode_binary("0x00abff").unwrap(), vec![0x00, 0xab, 0xff]);
        assert_eq!(decode_binary("0XABcd").unwrap(), vec![0xab, 0xcd]);
        assert_eq!(decode_binary("0xabc").unwrap(), vec![0x0a, 0xbc]);
        assert_eq!(decode_binary("0x1").unwrap(), vec![0x01]);
        for bad in ["0x", "0xzz", "0xabg", "0x 1", "abcd", "", "1234", "x12"] {
            assert!(decode_binary(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn binary_base64() {
        let seq: Vec<u8> = (0..16).collect();
        assert_eq!(decode_binary("0bAAECAwQFBgcICQoLDA0ODw==").unwrap(), seq);
        assert_eq!(decode_binary("0B//4=").unwrap(), vec![0xff, 0xfe]);
        assert_eq!(decode_binary("0bYWJjZGU=").unwrap(), b"abcde".to_vec());
        assert_eq!(decode_binary("0bYWJjZGU").unwrap(), b"abcde".to_vec());
        assert_eq!(decode_binary("0bYWJj").unwrap(), b"abc".to_vec());
        for bad in [
            "0b",
            "0b====",
            "0bA",
            "0bAAAAA",
            "0bYW=jZGU=",
            "0bYWJjZGU==",
            "0bYWJj=",
            "0b!!!!",
            "0bYWJj\n",
        ] {
            assert!(decode_binary(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn one_way_md5() {
        let mut c = client(false);
        let step = c
            .on_keys(&kv(&[
                ("CHAP_A", "5"),
                ("CHAP_I", "1"),
                ("CHAP_C", CHALLENGE),
            ]))
            .unwrap();
        let r = format!("0x{MD5_R}");
        assert_eq!(
            step,
            ChapStep::Send(kv(&[("CHAP_N", "alice"), ("CHAP_R", r.as_str())]))
        );
        assert_eq!(c.alg(), Some(ChapAlg::Md5));
        assert_eq!(c.on_keys(&[]).unwrap(), ChapStep::Done);
    }

    #[test]
    fn one_way_sha256_base64_challenge_hex_id() {
        let mut c = client(false);
        let step = c
            .on_keys(&kv(&[
                ("TargetPortalGroupTag", "1"),
                ("CHAP_A", "7"),
                ("CHAP_I", "0x01"),
                ("CHAP_C", "0bAAECAwQFBgcICQoLDA0ODw=="),
            ]))
            .unwrap();
        let r = format!("0x{SHA_R}");
        assert_eq!(
            step,
            ChapStep::Send(kv(&[("CHAP_N", "alice"), ("CHAP_R", r.as_str())]))
        );
        assert_eq!(c.alg(), Some(ChapAlg::Sha256));
    }

    #[test]
    fn mutual_sha256() {
        let mut c = client(true);
        let step = c
            .on_keys(&kv(&[
                ("CHAP_A", "7"),
                ("CHAP_I", "1"),
                ("CHAP_C", CHALLENGE),
            ]))
            .unwrap();
        let ours: Vec<u8> = (0x80..0xa0).collect();
        let r = format!("0x{SHA_R}");
        let our_c = encode_binary(&ours);
        assert_eq!(
            step,
            ChapStep::Send(kv(&[
                ("CHAP_N", "alice"),
                ("CHAP_R", r.as_str()),
                ("CHAP_I", "66"),
                ("CHAP_C", our_c.as_str()),
            ]))
        );
        let tr = format!("0x{SHA_MUTUAL}");
        assert_eq!(
            c.on_keys(&kv(&[("CHAP_N", "tgt"), ("CHAP_R", tr.as_str())]))
                .unwrap(),
            ChapStep::Done
        );
    }

    #[test]
    fn mutual_md5_uses_16_byte_challenge() {
        let mut c = client(true);
        let ChapStep::Send(keys) = c
            .on_keys(&kv(&[
                ("CHAP_A", "5"),
                ("CHAP_I", "1"),
                ("CHAP_C", CHALLENGE),
            ]))
            .unwrap()
        else {
            panic!("expected Send");
        };
        let sent_c = &keys.iter().find(|(k, _)| k == "CHAP_C").unwrap().1;
        assert_eq!(
            decode_binary(sent_c).unwrap(),
            (0x80..0x90).collect::<Vec<u8>>()
        );
        let tr = format!("0x{MD5_MUTUAL}");
        assert_eq!(
            c.on_keys(&kv(&[("CHAP_N", "tgt"), ("CHAP_R", tr.as_str())]))
                .unwrap(),
            ChapStep::Done
        );
    }

    fn mutual_after_challenge() -> ChapClient {
        let mut c = client(true);
        c.on_keys(&kv(&[
            ("CHAP_A", "7"),
            ("CHAP_I", "1"),
            ("CHAP_C", CHALLENGE),
        ]))
        .unwrap();
        c
    }

    #[test]
    fn mutual_wrong_response() {
        let mut c = mutual_after_challenge();
        // Right digest for the wrong secret: hashlib over b"tgtsecret1234" +
        // ... is SHA_MUTUAL; flip one bit.
        let mut bad = hex(SHA_MUTUAL);
        bad[31] ^= 1;
        let bad = encode_binary(&bad);
        assert_eq!(
            c.on_keys(&kv(&[("CHAP_N", "tgt"), ("CHAP_R", bad.as_str())])),
            Err(ChapError::TargetAuthFailed)
        );
        // The client stays failed.
        assert_eq!(c.on_keys(&[]), Err(ChapError::OutOfOrder));

        // A truncated response fails as well.
        let mut c = mutual_after_challenge();
        let short = format!("0x{}", &SHA_MUTUAL[..32]);
        assert_eq!(
            c.on_keys(&kv(&[("CHAP_N", "tgt"), ("CHAP_R", short.as_str())])),
            Err(ChapError::TargetAuthFailed)
        );
    }

    #[test]
    fn mutual_wrong_name_or_missing_keys() {
        let tr = format!("0x{SHA_MUTUAL}");
        let mut c = mutual_after_challenge();
        assert_eq!(
            c.on_keys(&kv(&[("CHAP_N", "mallory"), ("CHAP_R", tr.as_str())])),
            Err(ChapError::TargetNameMismatch)
        );
        let mut c = mutual_after_challenge();
        assert_eq!(
            c.on_keys(&kv(&[("CHAP_N", "tgt")])),
            Err(ChapError::MissingKey("CHAP_R"))
        );
        let mut c = mutual_after_challenge();
        assert_eq!(c.on_keys(&[]), Err(ChapError::MissingKey("CHAP_N")));
    }

    #[test]
    fn reflected_challenge() {
        let mut c = client(true);
        let ours = encode_binary(&(0x80..0xa0).collect::<Vec<u8>>());
        assert_eq!(
            c.on_keys(&kv(&[
                ("CHAP_A", "7"),
                ("CHAP_I", "66"),
                ("CHAP_C", ours.as_str())
            ])),
            Err(ChapError::ReflectedChallenge)
        );
    }

    #[test]
    fn algorithm_negotiation() {
        // Target picks MD5 from "7,5": fine.
        let mut c = client(false);
        c.on_keys(&kv(&[
            ("CHAP_A", "5"),
            ("CHAP_I", "1"),
            ("CHAP_C", CHALLENGE),
        ]))
        .unwrap();
        assert_eq!(c.alg(), Some(ChapAlg::Md5));
        // Something we did not offer, or nothing at all.
        for a in ["6", "8", "Reject", "7,5", "", "0x100000005"] {
            let mut c = client(false);
            assert_eq!(
                c.on_keys(&kv(&[
                    ("CHAP_A", a),
                    ("CHAP_I", "1"),
                    ("CHAP_C", CHALLENGE)
                ])),
                Err(ChapError::NoCommonAlgorithm),
                "{a:?}"
            );
        }
        // SHA-256 when we only offered MD5.
        let mut c = ChapClient::new(cfg(false, &[ChapAlg::Md5]), random());
        assert_eq!(c.start(), kv(&[("CHAP_A", "5")]));
        assert_eq!(
            c.on_keys(&kv(&[
                ("CHAP_A", "7"),
                ("CHAP_I", "1"),
                ("CHAP_C", CHALLENGE)
            ])),
            Err(ChapError::NoCommonAlgorithm)
        );
    }

    #[test]
    fn offer_order_and_defaults() {
        let mut c = ChapClient::new(
            cfg(false, &[ChapAlg::Md5, ChapAlg::Sha256, ChapAlg::Md5]),
            random(),
        );
        assert_eq!(c.start(), kv(&[("CHAP_A", "5,7")]));
        let mut c = ChapClient::new(cfg(false, &[]), random());
        assert_eq!(c.start(), kv(&[("CHAP_A", "7,5")]));
    }

    #[test]
    fn challenge_limits() {
        let max = encode_binary(&[7u8; MAX_CHALLENGE]);
        let mut c = client(false);
        assert!(c
            .on_keys(&kv(&[
                ("CHAP_A", "5"),
                ("CHAP_I", "1"),
                ("CHAP_C", max.as_str())
            ]))
            .is_ok());
        let over = encode_binary(&[7u8; MAX_CHALLENGE + 1]);
        let mut c = client(false);
        assert_eq!(
            c.on_keys(&kv(&[
                ("CHAP_A", "5"),
                ("CHAP_I", "1"),
                ("CHAP_C", over.as_str())
            ])),
            Err(ChapError::BadChallenge)
        );
        let mut c = client(false);
        assert!(matches!(
            c.on_keys(&kv(&[("CHAP_A", "5"), ("CHAP_I", "1"), ("CHAP_C", "0x")])),
            Err(ChapError::Malformed(_))
        ));
        let mut c = client(false);
        assert!(matches!(
            c.on_keys(&kv(&[
                ("CHAP_A", "5"),
                ("CHAP_I", "1"),
                ("CHAP_C", "hello")
            ])),
            Err(ChapError::Malformed(_))
        ));
    }

    #[test]
    fn malformed_first_response() {
        for (keys, err) in [
            (
                vec![("CHAP_I", "1"), ("CHAP_C", CHALLENGE)],
                ChapError::MissingKey("CHAP_A"),
            ),
            (
                vec![("CHAP_A", "5"), ("CHAP_C", CHALLENGE)],
                ChapError::MissingKey("CHAP_I"),
            ),
            (
                vec![("CHAP_A", "5"), ("CHAP_I", "1")],
                ChapError::MissingKey("CHAP_C"),
            ),
            (
                vec![("CHAP_A", "5"), ("CHAP_I", "256"), ("CHAP_C", CHALLENGE)],
                ChapError::BadIdentifier,
            ),
            (
                vec![("CHAP_A", "5"), ("CHAP_I", "one"), ("CHAP_C", CHALLENGE)],
                ChapError::BadIdentifier,
            ),
            (
                vec![
                    ("CHAP_A", "5"),
                    ("CHAP_I", "1"),
                    ("CHAP_C", CHALLENGE),
                    ("CHAP_C", "0x01"),
                ],
                ChapError::DuplicateKey("CHAP_C"),
            ),
        ] {
            let mut c = client(false);
            assert_eq!(c.on_keys(&kv(&keys)), Err(err.clone()), "{keys:?}");
        }
    }

    #[test]
    fn keys_before_start() {
        let mut c = ChapClient::new(cfg(false, &[]), random());
        assert_eq!(
            c.on_keys(&kv(&[
                ("CHAP_A", "5"),
                ("CHAP_I", "1"),
                ("CHAP_C", CHALLENGE)
            ])),
            Err(ChapError::OutOfOrder)
        );
    }

    #[test]
    fn secrets_stay_out_of_debug_and_errors() {
        let mut c = client(true);
        let dbg = format!("{c:?} {:?}", cfg(true, &[]));
        assert!(dbg.contains("alice") && dbg.contains("tgt"));
        for s in ["secretsecret12", "tgtsecret1234", "115, 101, 99"] {
            assert!(!dbg.contains(s), "{s} leaked in {dbg}");
        }
        c.on_keys(&kv(&[
            ("CHAP_A", "7"),
            ("CHAP_I", "1"),
            ("CHAP_C", CHALLENGE),
        ]))
        .unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("secretsecret12") && !dbg.contains("tgtsecret1234"));
        let e = c
            .on_keys(&kv(&[("CHAP_N", "tgt"), ("CHAP_R", "0x00")]))
            .unwrap_err();
        assert!(!e.to_string().contains("secret"));
    }

    #[test]
    fn constant_time_compare() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(ct_eq(b"", b""));
    }
}
