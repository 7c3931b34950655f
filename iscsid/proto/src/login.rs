//! The login phase (RFC 7143 sections 6 and 11.12-11.13): security stage
//! with AuthMethod None or CHAP, operational stage with the key
//! negotiation, multi-PDU text both ways (C bit), redirection, and every
//! login status class turned into a clear error.

use std::collections::VecDeque;
use std::fmt;

use super::chap::{ChapClient, ChapConfig, ChapError, ChapStep};
use super::negotiate::{DigestPref, NegError, NegEvent, Negotiation, Params, Prefs, SessionKind};
use super::pdu::{login_class, login_detail, LoginReq, LoginRsp};
use super::text::{self, TextBuf, TextError};

/// Login stages (CSG/NSG values), by shorter names.
pub use super::pdu::stage::{
    FULL_FEATURE_PHASE as FULL_FEATURE, OPERATIONAL_NEGOTIATION as OPERATIONAL,
    SECURITY_NEGOTIATION as SECURITY,
};

/// Data segment limit during login (RFC 7143 section 6.2: 8192 until
/// MaxRecvDataSegmentLength takes effect).
pub const LOGIN_MAX_DATA: usize = 8192;

#[derive(Clone)]
pub struct LoginConfig {
    pub isid: [u8; 6],
    pub tsih: u16,
    pub cid: u16,
    pub itt: u32,
    pub cmdsn: u32,
    pub initiatorname: String,
    /// None for discovery sessions.
    pub targetname: Option<String>,
    pub kind: SessionKind,
    pub prefs: Prefs,
    pub chap: Option<ChapConfig>,
}

/// Why a login did not succeed. Status classes 2 and 3 are the target's
/// answer (RFC 7143 section 11.13.5); the rest are our own findings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    /// Class 2, detail 1, with CHAP configured: the target did not take
    /// our name or response.
    AuthFailed,
    /// Class 2, detail 1 with no CHAP configured: the target wants
    /// authentication we cannot offer.
    AuthRequired,
    /// Class 2, detail 2.
    Forbidden,
    /// Class 2, detail 3.
    NotFound,
    /// Class 2, detail 4.
    Removed,
    /// Class 2, detail 5.
    UnsupportedVersion,
    /// Class 2, detail 6.
    TooManyConnections,
    /// Class 2, detail 7.
    MissingParameter,
    /// Class 2, detail 8.
    CantIncludeInSession,
    /// Class 2, detail 9.
    SessionTypeUnsupported,
    /// Class 2, detail 0x0a.
    SessionDoesNotExist,
    /// Class 2, detail 0x0b.
    InvalidDuringLogin,
    /// Class 2, detail 0 or unknown.
    InitiatorError(u8),
    /// Class 3, detail 0.
    TargetError,
    /// Class 3, detail 1.
    ServiceUnavailable,
    /// Class 3, detail 2.
    OutOfResources,
    /// Class 3, other details.
    TargetErrorDetail(u8),
    /// A status class RFC 7143 does not define.
    UnknownStatus(u8, u8),
    /// Redirection without a TargetAddress.
    RedirectWithoutAddress,
    /// The target offered no authentication method we accept.
    NoAuthMethod(String),
    /// The target requires CHAP and we have no secret for it.
    ChapNotConfigured,
    Chap(ChapError),
    Negotiation(NegError),
    Text(TextError),
    /// We require a CRC32C digest and the target would not do it.
    DigestRefused(&'static str),
    /// The target answered Reject to our digest offer (None, or
    /// CRC32C,None): it insists on CRC32C. Taking that as None would log
    /// in, then have the target drop the connection, forever. Not
    /// permanent: the owner may log in again offering CRC32C,None.
    DigestRejected {
        header: bool,
        data: bool,
    },
    /// Something the RFC forbids: wrong stage, version, ITT, ISID, transit.
    Protocol(&'static str),
}

impl LoginError {
    /// Errors an administrator must fix; retrying soon will not help.
    pub fn is_permanent(&self) -> bool {
        !matches!(
            self,
            LoginError::ServiceUnavailable
                | LoginError::OutOfResources
                | LoginError::TargetError
                | LoginError::TargetErrorDetail(_)
                | LoginError::TooManyConnections
                | LoginError::SessionDoesNotExist
                | LoginError::DigestRejected { .. }
        )
    }

    fn from_status(class: u8, detail: u8) -> LoginError {
        use login_class::{INITIATOR_ERROR, TARGET_ERROR};
        use login_detail as d;
        match (class, detail) {
            (INITIATOR_ERROR, d::AUTH_FAILED) => LoginError::AuthFailed,
            (INITIATOR_ERROR, d::FORBIDDEN) => LoginError::Forbidden,
            (INITIATOR_ERROR, d::NOT_FOUND) => LoginError::NotFound,
            (INITIATOR_ERROR, d::REMOVED) => LoginError::Removed,
            (INITIATOR_ERROR, d::UNSUPPORTED_VERSION) => LoginError::UnsupportedVersion,
            (INITIATOR_ERROR, d::TOO_MANY_CONNECTIONS) => LoginError::TooManyConnections,
            (INITIATOR_ERROR, d::MISSING_PARAMETER) => LoginError::MissingParameter,
            (INITIATOR_ERROR, d::CANT_INCLUDE_IN_SESSION) => LoginError::CantIncludeInSession,
            (INITIATOR_ERROR, d::SESSION_TYPE_UNSUPPORTED) => LoginError::SessionTypeUnsupported,
            (INITIATOR_ERROR, d::SESSION_DOES_NOT_EXIST) => LoginError::SessionDoesNotExist,
            (INITIATOR_ERROR, d::INVALID_DURING_LOGIN) => LoginError::InvalidDuringLogin,
            (INITIATOR_ERROR, d) => LoginError::InitiatorError(d),
            (TARGET_ERROR, d::TARGET_ERROR) => LoginError::TargetError,
            (TARGET_ERROR, d::SERVICE_UNAVAILABLE) => LoginError::ServiceUnavailable,
            (TARGET_ERROR, d::OUT_OF_RESOURCES) => LoginError::OutOfResources,
            (TARGET_ERROR, d) => LoginError::TargetErrorDetail(d),
            (c, d) => LoginError::UnknownStatus(c, d),
        }
    }
}

impl fmt::Display for LoginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoginError::AuthFailed => {
                write!(f, "authentication failed (check chap name and secret)")
            }
            LoginError::AuthRequired => write!(
                f,
                "target requires authentication and no chap is configured"
            ),
            LoginError::Forbidden => write!(f, "initiator not authorized to access the target"),
            LoginError::NotFound => write!(f, "target not found (check targetname)"),
            LoginError::Removed => write!(f, "target removed"),
            LoginError::UnsupportedVersion => {
                write!(f, "iSCSI version not supported by the target")
            }
            LoginError::TooManyConnections => write!(f, "target refuses more connections"),
            LoginError::MissingParameter => write!(f, "target says a parameter is missing"),
            LoginError::CantIncludeInSession => {
                write!(f, "target can't include connection in session")
            }
            LoginError::SessionTypeUnsupported => {
                write!(f, "session type not supported by the target")
            }
            LoginError::SessionDoesNotExist => write!(f, "session does not exist on the target"),
            LoginError::InvalidDuringLogin => {
                write!(f, "target says the request is invalid during login")
            }
            LoginError::InitiatorError(d) => write!(f, "initiator error (status 0x02{d:02x})"),
            LoginError::TargetError => write!(f, "target error"),
            LoginError::ServiceUnavailable => write!(f, "target service unavailable"),
            LoginError::OutOfResources => write!(f, "target out of resources"),
            LoginError::TargetErrorDetail(d) => write!(f, "target error (status 0x03{d:02x})"),
            LoginError::UnknownStatus(c, d) => write!(f, "unknown login status 0x{c:02x}{d:02x}"),
            LoginError::RedirectWithoutAddress => write!(f, "redirected without TargetAddress"),
            LoginError::NoAuthMethod(m) => {
                write!(f, "target offers AuthMethod {m}, which we don't accept")
            }
            LoginError::ChapNotConfigured => {
                write!(f, "target requires CHAP but no chap secret is configured")
            }
            LoginError::Chap(e) => write!(f, "CHAP: {e}"),
            LoginError::Negotiation(e) => write!(f, "negotiation: {e}"),
            LoginError::Text(e) => write!(f, "login text: {e}"),
            LoginError::DigestRefused(k) => write!(
                f,
                "target refuses {k}=CRC32C, which the configuration requires"
            ),
            LoginError::DigestRejected { header, data } => {
                // The iscsi.conf keywords (common/src/config/params.rs).
                let (keys, settings) = match (header, data) {
                    (true, true) => (
                        "HeaderDigest and DataDigest",
                        "headerdigest crc32c and datadigest crc32c",
                    ),
                    (true, false) => ("HeaderDigest", "headerdigest crc32c"),
                    _ => ("DataDigest", "datadigest crc32c"),
                };
                write!(
                    f,
                    "target rejects our {keys} offer and requires CRC32C (set {settings} or any)"
                )
            }
            LoginError::Protocol(m) => write!(f, "login protocol error: {m}"),
        }
    }
}

impl std::error::Error for LoginError {}

impl From<ChapError> for LoginError {
    fn from(e: ChapError) -> Self {
        LoginError::Chap(e)
    }
}

impl From<NegError> for LoginError {
    fn from(e: NegError) -> Self {
        LoginError::Negotiation(e)
    }
}

impl From<TextError> for LoginError {
    fn from(e: TextError) -> Self {
        LoginError::Text(e)
    }
}

/// A finished login.
#[derive(Debug, Clone)]
pub struct LoggedIn {
    pub params: Params,
    pub events: Vec<NegEvent>,
    pub tsih: u16,
    pub expstatsn: u32,
    pub expcmdsn: u32,
    pub maxcmdsn: u32,
}

#[derive(Debug)]
pub enum Step {
    Send(LoginReq),
    Done(Box<LoggedIn>),
    /// Status class 1: log in again at `addr` ("host:port" or "host",
    /// possibly ",tpgt" removed already).
    Redirect {
        addr: String,
        permanent: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    /// AuthMethod not settled yet.
    Offered,
    None,
    /// CHAP_A sent, waiting for the challenge.
    Chap,
    /// Our response sent (and our challenge, for mutual CHAP).
    ChapResponded,
    Done,
}

pub struct Login {
    cfg: LoginConfig,
    neg: Option<Negotiation>,
    chap: Option<ChapClient>,
    auth: Auth,
    csg: u8,
    /// Text received with C=1, waiting for the rest.
    rx_text: TextBuf,
    /// Our text chunks not yet sent (C=1 on all but the last).
    tx_chunks: VecDeque<Vec<u8>>,
    /// What the next request says about transit once all chunks are out.
    tx_transit: (bool, u8),
    expstatsn: u32,
    first_response: bool,
}

impl Login {
    /// `random` feeds the mutual CHAP identifier and challenge.
    pub fn new(cfg: LoginConfig, random: [u8; 33]) -> Login {
        let chap = cfg.chap.clone().map(|c| ChapClient::new(c, random));
        let neg = Negotiation::new(&cfg.prefs, cfg.kind);
        Login {
            cfg,
            neg: Some(neg),
            chap,
            auth: Auth::Offered,
            csg: SECURITY,
            rx_text: TextBuf::default(),
            tx_chunks: VecDeque::new(),
            tx_transit: (false, SECURITY),
            expstatsn: 0,
            first_response: true,
        }
    }

    pub fn itt(&self) -> u32 {
        self.cfg.itt
    }

    /// The first Login Request.
    pub fn start(&mut self) -> LoginReq {
        let mut keys: Vec<(String, String)> =
            vec![("InitiatorName".into(), self.cfg.initiatorname.clone())];
        match (&self.cfg.targetname, self.cfg.kind) {
            (Some(t), SessionKind::Normal) => {
                keys.push(("TargetName".into(), t.clone()));
                keys.push(("SessionType".into(), "Normal".into()));
            }
            _ => keys.push(("SessionType".into(), "Discovery".into())),
        }
        let transit = match &self.cfg.chap {
            // Mutual CHAP authenticates the target: never let it pick None.
            Some(c) if c.mutual.is_some() => {
                keys.push(("AuthMethod".into(), "CHAP".into()));
                (false, SECURITY)
            }
            Some(_) => {
                keys.push(("AuthMethod".into(), "CHAP,None".into()));
                (false, SECURITY)
            }
            None => {
                keys.push(("AuthMethod".into(), "None".into()));
                (true, OPERATIONAL)
            }
        };
        self.queue_text(&keys, transit);
        self.next_request()
    }

    fn queue_text(&mut self, keys: &[(String, String)], transit: (bool, u8)) {
        let data = text::encode(keys.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        self.tx_chunks = text::chunks(&data, LOGIN_MAX_DATA)
            .map(<[u8]>::to_vec)
            .collect();
        self.tx_transit = transit;
    }

    fn next_request(&mut self) -> LoginReq {
        let data = self.tx_chunks.pop_front().unwrap_or_default();
        let more = !self.tx_chunks.is_empty();
        let (transit, nsg) = if more { (false, 0) } else { self.tx_transit };
        self.request(transit, more, if transit { nsg } else { 0 }, data)
    }

    pub fn on_response(&mut self, rsp: LoginRsp) -> Result<Step, LoginError> {
        if rsp.itt != self.cfg.itt {
            return Err(LoginError::Protocol("Login Response for another ITT"));
        }
        if self.first_response || rsp.status_class == login_class::SUCCESS {
            self.expstatsn = rsp.statsn.wrapping_add(1);
        }
        self.first_response = false;
        match (rsp.status_class, rsp.status_detail) {
            (login_class::SUCCESS, _) => {}
            (login_class::REDIRECTION, _) => return self.redirect(&rsp),
            // Without a secret, "check chap name and secret" would send the
            // administrator after settings that do not exist.
            (login_class::INITIATOR_ERROR, login_detail::AUTH_FAILED)
                if self.cfg.chap.is_none() =>
            {
                return Err(LoginError::AuthRequired)
            }
            (c, d) => return Err(LoginError::from_status(c, d)),
        }
        if rsp.version_active != 0 {
            return Err(LoginError::Protocol("unsupported version"));
        }
        if rsp.isid != self.cfg.isid {
            return Err(LoginError::Protocol("ISID mismatch"));
        }
        if rsp.csg != self.csg {
            return Err(LoginError::Protocol("response for another stage"));
        }
        if rsp.transit && rsp.cont {
            return Err(LoginError::Protocol("T and C both set"));
        }
        self.rx_text.push(&rsp.data)?;
        if rsp.cont {
            // More text to come: an empty request asks for it.
            return Ok(Step::Send(self.empty_request()));
        }
        if !self.tx_chunks.is_empty() {
            // The target acknowledged a chunk of ours; send the next.
            return Ok(Step::Send(self.next_request()));
        }
        let keys = self.rx_text.finish()?;
        if rsp.transit && rsp.nsg <= self.csg {
            return Err(LoginError::Protocol("transit to an earlier stage"));
        }
        // Stage 2 is reserved: going on would loop in the operational stage
        // until the login timer fires.
        if rsp.transit && rsp.nsg != OPERATIONAL && rsp.nsg != FULL_FEATURE {
            return Err(LoginError::Protocol("transit to a reserved stage"));
        }
        match self.csg {
            SECURITY => self.security(&keys, &rsp),
            OPERATIONAL => self.operational(&keys, &rsp),
            _ => Err(LoginError::Protocol(
                "login response after full feature phase",
            )),
        }
    }

    fn empty_request(&self) -> LoginReq {
        self.request(false, false, 0, Vec::new())
    }

    /// A Login Request of this login's stage and identity.
    fn request(&self, transit: bool, cont: bool, nsg: u8, data: Vec<u8>) -> LoginReq {
        LoginReq {
            transit,
            cont,
            csg: self.csg,
            nsg,
            version_max: 0,
            version_min: 0,
            isid: self.cfg.isid,
            tsih: self.cfg.tsih,
            itt: self.cfg.itt,
            cid: self.cfg.cid,
            cmdsn: self.cfg.cmdsn,
            expstatsn: self.expstatsn,
            data,
        }
    }

    fn redirect(&self, rsp: &LoginRsp) -> Result<Step, LoginError> {
        let keys = text::decode(&rsp.data)?;
        let addr = keys
            .iter()
            .find(|(k, _)| k == "TargetAddress")
            .map(|(_, v)| v.split(',').next().unwrap_or_default().to_owned())
            .filter(|a| !a.is_empty())
            .ok_or(LoginError::RedirectWithoutAddress)?;
        match rsp.status_detail {
            login_detail::REDIRECT_TEMPORARY => Ok(Step::Redirect {
                addr,
                permanent: false,
            }),
            login_detail::REDIRECT_PERMANENT => Ok(Step::Redirect {
                addr,
                permanent: true,
            }),
            d => Err(LoginError::UnknownStatus(login_class::REDIRECTION, d)),
        }
    }

    fn neg(&mut self) -> Result<&mut Negotiation, LoginError> {
        self.neg
            .as_mut()
            .ok_or(LoginError::Protocol("negotiation already finished"))
    }

    fn security(&mut self, keys: &[(String, String)], rsp: &LoginRsp) -> Result<Step, LoginError> {
        // Declaratives such as TargetPortalGroupTag may come now.
        let replies = self.neg()?.respond(keys)?;
        if self.auth == Auth::Offered {
            let chosen = keys
                .iter()
                .find(|(k, _)| k == "AuthMethod")
                .map(|(_, v)| v.as_str());
            self.auth = match (chosen, &self.cfg.chap) {
                (Some("CHAP"), Some(_)) => Auth::Chap,
                (Some("CHAP"), None) => return Err(LoginError::ChapNotConfigured),
                (Some("None"), Some(c)) if c.mutual.is_some() => {
                    return Err(LoginError::NoAuthMethod("None".into()))
                }
                (Some("None"), _) => Auth::None,
                (None, None) => Auth::None,
                (None, Some(_)) => return Err(LoginError::Protocol("AuthMethod not answered")),
                (Some("Reject"), None) => return Err(LoginError::ChapNotConfigured),
                (Some(m), _) => return Err(LoginError::NoAuthMethod(m.to_owned())),
            };
            if self.auth == Auth::Chap {
                let Some(chap) = self.chap.as_mut() else {
                    return Err(LoginError::ChapNotConfigured);
                };
                let mut out = chap.start();
                out.extend(replies);
                self.queue_text(&out, (false, SECURITY));
                return Ok(Step::Send(self.next_request()));
            }
        }
        match self.auth {
            Auth::Chap => {
                let Some(chap) = self.chap.as_mut() else {
                    return Err(LoginError::ChapNotConfigured);
                };
                match chap.on_keys(keys)? {
                    ChapStep::Send(mut out) => {
                        out.extend(replies);
                        self.auth = Auth::ChapResponded;
                        self.queue_text(&out, (true, OPERATIONAL));
                        Ok(Step::Send(self.next_request()))
                    }
                    ChapStep::Done => {
                        Err(LoginError::Protocol("CHAP finished without a challenge"))
                    }
                }
            }
            Auth::ChapResponded => {
                let mutual = self.cfg.chap.as_ref().is_some_and(|c| c.mutual.is_some());
                if mutual {
                    let Some(chap) = self.chap.as_mut() else {
                        return Err(LoginError::ChapNotConfigured);
                    };
                    match chap.on_keys(keys)? {
                        ChapStep::Done => {}
                        ChapStep::Send(_) => {
                            return Err(LoginError::Protocol("CHAP went on after our response"))
                        }
                    }
                }
                self.auth = Auth::Done;
                self.after_auth(rsp, replies)
            }
            Auth::None | Auth::Done => self.after_auth(rsp, replies),
            Auth::Offered => Err(LoginError::Protocol("AuthMethod not settled")),
        }
    }

    /// Authentication is over: move to the operational stage once the
    /// target agrees to transit.
    fn after_auth(
        &mut self,
        rsp: &LoginRsp,
        replies: Vec<(String, String)>,
    ) -> Result<Step, LoginError> {
        if rsp.transit {
            if rsp.nsg == FULL_FEATURE {
                // Allowed (no operational keys to negotiate), but we always
                // want ours: treat the defaults as the result.
                return self.finish(rsp);
            }
            self.csg = OPERATIONAL;
            let offer = self.neg()?.offer();
            let mut out = replies;
            out.extend(offer);
            self.queue_text(&out, (true, FULL_FEATURE));
            return Ok(Step::Send(self.next_request()));
        }
        self.queue_text(&replies, (true, OPERATIONAL));
        Ok(Step::Send(self.next_request()))
    }

    fn operational(
        &mut self,
        keys: &[(String, String)],
        rsp: &LoginRsp,
    ) -> Result<Step, LoginError> {
        let replies = self.neg()?.respond(keys)?;
        self.check_digests()?;
        if rsp.transit && rsp.nsg == FULL_FEATURE {
            if !replies.is_empty() {
                return Err(LoginError::Protocol(
                    "target left the operational stage with keys unanswered",
                ));
            }
            return self.finish(rsp);
        }
        self.queue_text(&replies, (true, FULL_FEATURE));
        Ok(Step::Send(self.next_request()))
    }

    /// A digest offer answered Reject leaves the digest at None, which the
    /// target has just refused: going on would only end in a reset.
    fn check_digests(&mut self) -> Result<(), LoginError> {
        let (header, data) = self.neg()?.digests_rejected();
        let prefs = &self.cfg.prefs;
        if header && prefs.header_digest == DigestPref::Crc32c {
            return Err(LoginError::DigestRefused("HeaderDigest"));
        }
        if data && prefs.data_digest == DigestPref::Crc32c {
            return Err(LoginError::DigestRefused("DataDigest"));
        }
        if header || data {
            return Err(LoginError::DigestRejected { header, data });
        }
        Ok(())
    }

    fn finish(&mut self, rsp: &LoginRsp) -> Result<Step, LoginError> {
        let neg = self
            .neg
            .take()
            .ok_or(LoginError::Protocol("negotiation already finished"))?;
        let (params, events) = neg.finish()?;
        // A required digest that the target rejected must not quietly
        // become no digest.
        if self.cfg.prefs.header_digest == DigestPref::Crc32c && !params.header_digest {
            return Err(LoginError::DigestRefused("HeaderDigest"));
        }
        if self.cfg.prefs.data_digest == DigestPref::Crc32c && !params.data_digest {
            return Err(LoginError::DigestRefused("DataDigest"));
        }
        Ok(Step::Done(Box::new(LoggedIn {
            params,
            events,
            tsih: rsp.tsih,
            expstatsn: self.expstatsn,
            expcmdsn: rsp.expcmdsn,
            maxcmdsn: rsp.maxcmdsn,
        })))
    }
}
