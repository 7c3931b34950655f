//! `iscsictl reload`: make the sessions match the configuration. New
//! blocks start; blocks whose login settings changed log out and in again
//! with their commands held across; disabled and removed ones log out and
//! their disks detach. Sessions a discovery block created live as long as
//! that block does. A new ISID base applies to sessions created afterwards.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Instant;

use log::{info, warn};

use super::config::{InitiatorConfig, TargetConfig};
use super::sess::{Ending, Sess, BACKOFF_MIN};
use super::{Initiator, SessionId, State};
use crate::names::{self, NameError};
use crate::negotiate::SessionKind;

/// What a reload could not do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReloadReport {
    pub not_started: Vec<NotStarted>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotStarted {
    pub name: String,
    pub reason: NotStartedReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStartedReason {
    /// All 256 vscsi targets are taken.
    NoFreeVscsiTarget,
}

impl fmt::Display for NotStartedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotStartedReason::NoFreeVscsiTarget => write!(f, "no free vscsi target"),
        }
    }
}

/// A configuration the initiator refuses whole (it came over the control
/// socket, so it is checked again here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadError {
    BadName {
        block: String,
        what: &'static str,
        error: NameError,
    },
    DuplicateBlock(String),
}

impl fmt::Display for ReloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReloadError::BadName { block, what, error } => {
                write!(f, "target {block:?}: {what}: {error}")
            }
            ReloadError::DuplicateBlock(b) => write!(f, "target {b:?} defined twice"),
        }
    }
}

impl std::error::Error for ReloadError {}

fn check(cfg: &InitiatorConfig) -> Result<(), ReloadError> {
    let bad = |block: &str, what, error| ReloadError::BadName {
        block: block.to_owned(),
        what,
        error,
    };
    if let Some(n) = &cfg.initiatorname {
        names::check(n).map_err(|e| bad("", "initiatorname", e))?;
    }
    let mut seen = BTreeSet::new();
    for t in &cfg.targets {
        names::check_block_name(&t.name).map_err(|e| bad(&t.name, "name", e))?;
        if !seen.insert(t.name.as_str()) {
            return Err(ReloadError::DuplicateBlock(t.name.clone()));
        }
        if let Some(n) = &t.initiatorname {
            names::check(n).map_err(|e| bad(&t.name, "initiatorname", e))?;
        }
        if let Some(n) = &t.targetname {
            names::check(n).map_err(|e| bad(&t.name, "targetname", e))?;
        }
    }
    Ok(())
}

/// The ISID qualifiers of discovery sessions count from here, past the
/// 256 vscsi targets that normal sessions add to theirs.
const DISCOVERY_QUALIFIER_BASE: u16 = 0x100;

impl Initiator {
    /// The ISID for a new session: the configured or random base, with the
    /// qualifier offset by the vscsi target (or a serial for discovery
    /// sessions) so that two sessions to one target never reinstate each
    /// other.
    pub(super) fn isid_for(&mut self, vscsi_target: Option<u32>) -> [u8; 6] {
        let mut isid = self.isid;
        let q = u16::from_be_bytes([isid[4], isid[5]]);
        let off = match vscsi_target {
            Some(t) => t as u16,
            None => {
                self.discoveries = self.discoveries.wrapping_add(1);
                DISCOVERY_QUALIFIER_BASE.wrapping_add(self.discoveries)
            }
        };
        isid[4..].copy_from_slice(&q.wrapping_add(off).to_be_bytes());
        isid
    }

    /// Creates a session for `cfg`, with a vscsi target if it is a normal
    /// one; None when no target is free.
    pub(super) fn add_session(&mut self, cfg: TargetConfig, now: Instant) -> Option<SessionId> {
        let sid = self.sessions.vacant_id();
        let wants = cfg.kind == SessionKind::Normal && !cfg.disabled;
        let vt = match wants {
            true => Some(self.alloc_target(sid)?),
            false => None,
        };
        let isid = self.isid_for(vt);
        let mut s = Sess::new(sid, cfg, isid, vt);
        s.retry_at = Some(now);
        let placed = self.sessions.insert(s);
        debug_assert_eq!(placed, sid);
        Some(sid)
    }

    /// A session by block name that is not on its way out.
    pub(super) fn live(&self, name: &str) -> Option<SessionId> {
        self.sessions
            .values()
            .find(|s| s.name() == name && !s.removing() && !s.oneoff)
            .map(|s| s.id)
    }

    pub fn reload(
        &mut self,
        cfg: InitiatorConfig,
        now: Instant,
    ) -> Result<ReloadReport, ReloadError> {
        check(&cfg)?;
        let mut report = ReloadReport::default();
        if let Some(i) = cfg.isid {
            self.isid = i;
        }
        if let Some(n) = &cfg.initiatorname {
            self.initiatorname = n.clone();
        }
        let names: BTreeSet<&str> = cfg.targets.iter().map(|t| t.name.as_str()).collect();
        let discovery: BTreeSet<&str> = cfg
            .targets
            .iter()
            .filter(|t| t.kind == SessionKind::Discovery && !t.disabled)
            .map(|t| t.name.as_str())
            .collect();
        // Sessions to end: gone from the file, or born of a discovery block
        // that is gone or disabled. One-off discoveries are not ours to end.
        let gone: Vec<SessionId> = self
            .sessions
            .values()
            .filter(|s| !s.oneoff && !s.removing())
            .filter(|s| match &s.parent {
                Some(p) => !discovery.contains(p.as_str()),
                None => !names.contains(s.name()),
            })
            .map(|s| s.id)
            .collect();
        for sid in gone {
            if let Some(s) = self.sessions.get(&sid) {
                info!("{}: removed from the configuration", s.name());
            }
            self.end_session(sid, Ending::Remove, now);
        }
        for t in cfg.targets {
            let name = t.name.clone();
            match self.live(&t.name) {
                None => {
                    if self.add_session(t, now).is_none() {
                        warn!("{name}: no free vscsi target");
                        report.not_started.push(NotStarted {
                            name,
                            reason: NotStartedReason::NoFreeVscsiTarget,
                        });
                    }
                }
                Some(sid) => self.update(sid, t, now, &mut report),
            }
        }
        Ok(report)
    }

    fn update(&mut self, sid: SessionId, t: TargetConfig, now: Instant, report: &mut ReloadReport) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        let name = t.name.clone();
        if s.cfg.disabled != t.disabled || s.cfg.kind != t.kind {
            // Disabled, enabled, or changed between normal and discovery:
            // the old session goes with its disks, a new one starts.
            info!(
                "{name}: {}",
                if t.disabled {
                    "disabled"
                } else if s.cfg.disabled {
                    "enabled"
                } else {
                    "session type changed"
                }
            );
            self.end_session(sid, Ending::Remove, now);
            if self.add_session(t, now).is_none() {
                warn!("{name}: no free vscsi target");
                report.not_started.push(NotStarted {
                    name,
                    reason: NotStartedReason::NoFreeVscsiTarget,
                });
            }
            return;
        }
        if !s.cfg.login_settings_differ(&t) {
            // Timers apply from the next connection; a reload also asks
            // discovery blocks again for new targets.
            s.cfg = t;
            if s.state == State::Done {
                s.state = State::Idle;
                s.retry_at = Some(now);
            }
            return;
        }
        info!("{name}: configuration changed");
        s.cfg = t;
        s.redirect = None;
        s.moved_to = None;
        s.chap_md5_only = false;
        s.digest_any = (false, false);
        if s.conn.is_none() {
            s.state = if s.cfg.disabled {
                State::Disabled
            } else {
                State::Idle
            };
            s.retry_at = Some(now);
            s.backoff = BACKOFF_MIN;
        } else {
            self.end_session(sid, Ending::Restart, now);
        }
    }
}
