//! iscsi.conf(5): the configuration file shared by iscsictl(8) and iscsid(8).
//!
//! The lexer and the grammar follow base OpenBSD's parse.y (see
//! `openbsd-iscsid.md` section 4.3): `#` comments, backslash-newline
//! continuation, single or double quotes, `$macro` expansion outside quotes,
//! `name = value` macros, nested `include "file"`, and the NUMBER-versus-STRING
//! rule that makes `10.0.0.2` a string. On top of base this parser accepts
//! `port 3260`, IPv6 addresses with scope, CHAP and operational parameters,
//! the daemon's timers, global defaults for those parameters, and a global
//! `initiatorname`.
//!
//! Like parse.y it keeps going after an error so that one run reports every
//! problem; nothing is returned unless the whole file is clean. Global
//! statements apply to every target wherever they appear in the file.
//!
//! Files that hold CHAP secrets must not be readable by group or others, in
//! the way ssh(1) treats private keys.

mod block;
mod check;
mod error;
mod lexer;
mod params;
mod parser;
mod resolve;
mod source;
#[cfg(test)]
mod testutil;
pub mod timers;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

pub use error::{ConfigError, ErrorKind, FileProblem, NumberProblem, Place};
pub use timers::Timer;

/// Where iscsictl(8) looks for the configuration by default.
pub const DEFAULT_PATH: &str = "/etc/iscsi.conf";
/// The iSCSI well-known port, used when `targetaddr` has no `port`.
pub const DEFAULT_PORT: u16 = 3260;
/// Longest target block name: base copies it into a 32-byte SessionName.
pub const MAX_TARGET_NAME: usize = proto::names::MAX_BLOCK_NAME;
/// Bounds of a CHAP secret in bytes.
pub const CHAP_SECRET_MIN: usize = 1;
pub const CHAP_SECRET_MAX: usize = 255;

/// Everything one configuration file (with its includes) describes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    /// Set by `isid`; without it the daemon picks a random ISID.
    pub isid: Option<Isid>,
    /// The global `initiatorname`, already copied into targets without one.
    pub initiatorname: Option<String>,
    /// Target blocks in file order, includes expanded in place.
    pub targets: Vec<Target>,
    /// The global parameter lines (already merged into every target); used
    /// by `iscsictl discover`, which has no target block.
    pub defaults: Params,
}

/// The initiator session ID, split as base iscsid keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Isid {
    /// Type bits (top two) plus type-specific bits, as the first 4 bytes.
    pub base: u32,
    /// The qualifier, the last 2 bytes.
    pub qual: u16,
}

impl Isid {
    /// The six ISID bytes in the order they go on the wire.
    pub fn bytes(&self) -> [u8; 6] {
        let b = self.base.to_be_bytes();
        let q = self.qual.to_be_bytes();
        [b[0], b[1], b[2], b[3], q[0], q[1]]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionType {
    Normal,
    Discovery,
}

/// One `target NAME { ... }` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The block name (SessionName), at most [`MAX_TARGET_NAME`] bytes.
    pub name: String,
    /// Line of the `target` keyword in the file that holds the block.
    pub line: usize,
    pub disabled: bool,
    pub session_type: SessionType,
    pub targetname: Option<String>,
    /// The block's own value, else the global `initiatorname`.
    pub initiatorname: Option<String>,
    pub targetaddr: Option<SocketAddr>,
    /// Local address to bind; the port is always 0 in base, so only the IP.
    pub initiatoraddr: Option<IpAddr>,
    /// The block's parameters with the global ones filled in underneath.
    pub params: Params,
}

/// Login and session parameters; `None` means "not configured here".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Params {
    /// Our own CHAP identity, answered when the target challenges us.
    pub chap: Option<Chap>,
    /// What the target must prove when we challenge it (mutual CHAP).
    pub chap_mutual: Option<Chap>,
    pub chap_algorithm: Option<ChapAlgorithm>,
    pub header_digest: Option<DigestPref>,
    pub data_digest: Option<DigestPref>,
    pub max_recv_data_segment_length: Option<u32>,
    pub max_burst_length: Option<u32>,
    pub first_burst_length: Option<u32>,
    pub max_outstanding_r2t: Option<u32>,
    pub initial_r2t: Option<bool>,
    pub immediate_data: Option<bool>,
    pub default_time2wait: Option<u32>,
    pub default_time2retain: Option<u32>,
    /// Our per-session limit of commands in flight.
    pub queue_depth: Option<u32>,
    // The daemon's timers and recovery limits, not negotiated; defaults
    // and bounds are in `timers`. Seconds unless said otherwise.
    /// How long a login may take.
    pub login_timeout: Option<u32>,
    /// Idle time before a NOP-Out ping.
    pub nop_interval: Option<u32>,
    /// No PDU this long after a ping: the connection is dead.
    pub nop_timeout: Option<u32>,
    /// From a command's first issue until task management starts.
    pub command_timeout: Option<u32>,
    /// How long each task management step waits.
    pub tmf_timeout: Option<u32>,
    /// How long commands are held while the session is down.
    pub replacement_timeout: Option<u32>,
    /// Upper bound of the reconnect backoff.
    pub reconnect_max: Option<u32>,
    /// A count: failed connections a command may go down with.
    pub reissue_limit: Option<u32>,
}

impl Params {
    /// `self` with every unset field taken from `defaults`. A CHAP identity
    /// is one unit: a block's name is never paired with a global secret.
    pub fn merged_over(&self, defaults: &Params) -> Params {
        fn pick<T: Clone>(own: &Option<T>, def: &Option<T>) -> Option<T> {
            own.as_ref().or(def.as_ref()).cloned()
        }
        Params {
            chap: pick(&self.chap, &defaults.chap),
            chap_mutual: pick(&self.chap_mutual, &defaults.chap_mutual),
            chap_algorithm: pick(&self.chap_algorithm, &defaults.chap_algorithm),
            header_digest: pick(&self.header_digest, &defaults.header_digest),
            data_digest: pick(&self.data_digest, &defaults.data_digest),
            max_recv_data_segment_length: pick(
                &self.max_recv_data_segment_length,
                &defaults.max_recv_data_segment_length,
            ),
            max_burst_length: pick(&self.max_burst_length, &defaults.max_burst_length),
            first_burst_length: pick(&self.first_burst_length, &defaults.first_burst_length),
            max_outstanding_r2t: pick(&self.max_outstanding_r2t, &defaults.max_outstanding_r2t),
            initial_r2t: pick(&self.initial_r2t, &defaults.initial_r2t),
            immediate_data: pick(&self.immediate_data, &defaults.immediate_data),
            default_time2wait: pick(&self.default_time2wait, &defaults.default_time2wait),
            default_time2retain: pick(&self.default_time2retain, &defaults.default_time2retain),
            queue_depth: pick(&self.queue_depth, &defaults.queue_depth),
            login_timeout: pick(&self.login_timeout, &defaults.login_timeout),
            nop_interval: pick(&self.nop_interval, &defaults.nop_interval),
            nop_timeout: pick(&self.nop_timeout, &defaults.nop_timeout),
            command_timeout: pick(&self.command_timeout, &defaults.command_timeout),
            tmf_timeout: pick(&self.tmf_timeout, &defaults.tmf_timeout),
            replacement_timeout: pick(&self.replacement_timeout, &defaults.replacement_timeout),
            reconnect_max: pick(&self.reconnect_max, &defaults.reconnect_max),
            reissue_limit: pick(&self.reissue_limit, &defaults.reissue_limit),
        }
    }
}

/// A CHAP name and secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Chap {
    pub name: String,
    pub secret: Vec<u8>,
}

// Written by hand so that logging a Config or a Target never leaks a secret.
impl fmt::Debug for Chap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chap")
            .field("name", &self.name)
            .field("secret", &format_args!("<redacted>"))
            .finish()
    }
}

/// Which CHAP_A values to offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChapAlgorithm {
    Md5,
    Sha256,
    /// SHA-256 first, then MD5.
    Any,
}

/// HeaderDigest / DataDigest preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestPref {
    None,
    Crc32c,
    /// Offer "CRC32C,None".
    Any,
}

/// A `port` argument as iscsi.conf writes it, for iscsictl's command
/// line: 1 to 65535 or `iscsi`.
pub fn parse_port(word: &str) -> Option<u16> {
    resolve::port_from_str(word).ok()
}

/// Parses `path` and every file it includes. Relative includes are taken
/// relative to the directory of the file that names them.
pub fn parse_file(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let draft = parser::parse_path(path)?;
    check::finish(draft)
}

/// Parses `text` as if it were a file called `name`. It has no mode to check
/// and no directory, so relative includes are taken relative to the current
/// directory.
pub fn parse_str(text: &str, name: &str) -> Result<Config, Vec<ConfigError>> {
    check::finish(parser::parse_bytes(text.as_bytes(), name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isid_bytes_are_big_endian_base_then_qualifier() {
        let isid = Isid {
            base: 0x8012_3456,
            qual: 0xabcd,
        };
        assert_eq!(isid.bytes(), [0x80, 0x12, 0x34, 0x56, 0xab, 0xcd]);
    }

    #[test]
    fn parse_port_takes_what_targetaddr_takes() {
        assert_eq!(parse_port("3261"), Some(3261));
        assert_eq!(parse_port("iscsi"), Some(DEFAULT_PORT));
        assert_eq!(parse_port("65535"), Some(65535));
        for bad in ["0", "65536", "-1", "", "www", "32x", "99999999999999999999"] {
            assert_eq!(parse_port(bad), None, "{bad}");
        }
    }

    #[test]
    fn chap_debug_hides_the_secret() {
        let chap = Chap {
            name: "alice".into(),
            secret: b"verysecretvalue".to_vec(),
        };
        let shown = format!("{chap:?}");
        assert!(shown.contains("alice"), "{shown}");
        assert!(!shown.contains("verysecret"), "{shown}");
        let params = Params {
            chap: Some(chap),
            ..Params::default()
        };
        assert!(!format!("{params:?}").contains("verysecret"));
    }

    #[test]
    fn merged_over_prefers_own_values_field_by_field() {
        let global = Params {
            chap: Some(Chap {
                name: "g".into(),
                secret: b"gsecret".to_vec(),
            }),
            header_digest: Some(DigestPref::Crc32c),
            max_burst_length: Some(65536),
            initial_r2t: Some(true),
            nop_interval: Some(30),
            tmf_timeout: Some(20),
            ..Params::default()
        };
        let own = Params {
            header_digest: Some(DigestPref::None),
            queue_depth: Some(8),
            nop_interval: Some(5),
            ..Params::default()
        };
        let m = own.merged_over(&global);
        assert_eq!(m.chap, global.chap);
        assert_eq!(m.header_digest, Some(DigestPref::None));
        assert_eq!(m.max_burst_length, Some(65536));
        assert_eq!(m.initial_r2t, Some(true));
        assert_eq!(m.queue_depth, Some(8));
        assert_eq!(m.data_digest, None);
        assert_eq!(m.nop_interval, Some(5));
        assert_eq!(m.tmf_timeout, Some(20));
        assert_eq!(m.command_timeout, None);
        assert_eq!(Params::default().merged_over(&global), global);
    }
}
