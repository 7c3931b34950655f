//! What the initiator is told to do: the sessions to keep and their
//! settings, in the core's own terms. The daemon turns iscsi.conf(5) into
//! this; the core never sees the file (nor line numbers, so a comment
//! added above a block changes nothing here).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::chap::ChapAlg;
use crate::negotiate::{Prefs, SessionKind};

/// Everything one reload hands over.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InitiatorConfig {
    /// The ISID base for sessions created from now on; None keeps the
    /// current one (random at start).
    pub isid: Option<[u8; 6]>,
    /// The default initiator name for blocks without one.
    pub initiatorname: Option<String>,
    /// Target blocks in file order.
    pub targets: Vec<TargetConfig>,
}

/// One session to keep: a `target` block of iscsi.conf(5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetConfig {
    /// The block name: the session's name everywhere.
    pub name: String,
    pub disabled: bool,
    pub kind: SessionKind,
    /// TargetName (normal sessions).
    pub targetname: Option<String>,
    /// Overrides the default initiator name.
    pub initiatorname: Option<String>,
    pub portal: Option<SocketAddr>,
    /// Local address to bind before connecting.
    pub local: Option<IpAddr>,
    pub prefs: Prefs,
    pub chap: Option<ChapIdentity>,
    /// Most commands in flight at once (besides the target's window).
    pub queue_depth: u32,
    pub timers: Timers,
}

impl TargetConfig {
    /// A block with our defaults, for tests and `iscsictl discover`.
    pub fn new(name: &str, kind: SessionKind, portal: Option<SocketAddr>) -> TargetConfig {
        TargetConfig {
            name: name.to_owned(),
            disabled: false,
            kind,
            targetname: None,
            initiatorname: None,
            portal,
            local: None,
            prefs: Prefs::default(),
            chap: None,
            queue_depth: DEFAULT_QUEUE_DEPTH,
            timers: Timers::default(),
        }
    }

    /// Settings that log in differently: a change of these restarts the
    /// session. `disabled` and `kind` are handled on their own; the timers
    /// take effect without a new login.
    pub(super) fn login_settings_differ(&self, other: &TargetConfig) -> bool {
        self.targetname != other.targetname
            || self.initiatorname != other.initiatorname
            || self.portal != other.portal
            || self.local != other.local
            || self.prefs != other.prefs
            || self.chap != other.chap
            || self.queue_depth != other.queue_depth
    }
}

/// Commands in flight per session unless iscsi.conf says otherwise.
pub const DEFAULT_QUEUE_DEPTH: u32 = 64;

/// Which CHAP algorithms to offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChapAlgs {
    Md5,
    Sha256,
    /// SHA-256 first, then MD5; MD5 alone after a failed SHA-256 login.
    Any,
}

impl ChapAlgs {
    pub fn offer(self, md5_only: bool) -> Vec<ChapAlg> {
        match self {
            ChapAlgs::Md5 => vec![ChapAlg::Md5],
            ChapAlgs::Sha256 => vec![ChapAlg::Sha256],
            ChapAlgs::Any if md5_only => vec![ChapAlg::Md5],
            ChapAlgs::Any => vec![ChapAlg::Sha256, ChapAlg::Md5],
        }
    }
}

/// Our CHAP identity, and the target's for mutual CHAP.
#[derive(Clone, PartialEq, Eq)]
pub struct ChapIdentity {
    pub name: String,
    pub secret: Vec<u8>,
    pub mutual: Option<(String, Vec<u8>)>,
    pub algs: ChapAlgs,
}

// By hand so that a logged configuration never shows a secret.
impl fmt::Debug for ChapIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChapIdentity")
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .field("mutual", &self.mutual.as_ref().map(|(n, _)| n))
            .field("algs", &self.algs)
            .finish()
    }
}

/// The timers of one session (iscsi.conf(5) names them); `Default` gives
/// the values iscsid uses unless told otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// From connect to the final Login Response.
    pub login: Duration,
    /// Idle time before a NOP-Out ping.
    pub nop_interval: Duration,
    /// No PDU at all this long after a ping: the connection is dead.
    pub nop_timeout: Duration,
    /// From a command's first issue until task management starts; reissues
    /// on new connections do not restart it.
    pub command: Duration,
    /// Each task management step (ABORT TASK, LOGICAL UNIT RESET, TARGET
    /// WARM RESET) waits this long for its answer.
    pub tmf: Duration,
    /// How long commands are held while the session is down before they
    /// go back to the kernel.
    pub replacement: Duration,
    /// The longest wait between reconnect attempts.
    pub reconnect_max: Duration,
    /// Connections a command may go down with before it goes back.
    pub reissue_limit: u8,
}

/// The timers iscsid uses unless iscsi.conf(5) says otherwise; the
/// configuration's bounds and documentation start from these.
pub const DEFAULT_TIMERS: Timers = Timers {
    login: Duration::from_secs(15),
    nop_interval: Duration::from_secs(10),
    nop_timeout: Duration::from_secs(15),
    command: Duration::from_secs(60),
    tmf: Duration::from_secs(10),
    replacement: Duration::from_secs(30),
    reconnect_max: Duration::from_secs(60),
    reissue_limit: 3,
};

impl Default for Timers {
    fn default() -> Self {
        DEFAULT_TIMERS
    }
}
