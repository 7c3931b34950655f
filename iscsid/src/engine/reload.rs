//! `iscsictl reload`: make the sessions match the configuration. New
//! targets start, changed ones log in again with the new settings,
//! disabled and removed ones log out and their disks detach. Sessions a
//! discovery entry created live as long as that entry does.

use std::collections::HashSet;
use std::time::Instant;

use common::config::{Config, SessionType};
use common::ctl::SessionState;
use log::info;

use super::{Ending, Engine, Sess};

impl Engine {
    /// The ISID for a new session: the configured or random base, with the
    /// qualifier offset by the vscsi target (or a serial for discovery
    /// sessions) so that two sessions to one target never reinstate each
    /// other.
    pub(super) fn isid_for(&mut self, vscsi_target: Option<u32>) -> [u8; 6] {
        let mut isid = self.isid;
        let q = u16::from_be_bytes([isid[4], isid[5]]);
        // Discovery sessions count from 0x100 up, past the 256 targets.
        let off = match vscsi_target {
            Some(t) => t as u16,
            None => {
                self.discoveries = self.discoveries.wrapping_add(1);
                0x100u16.wrapping_add(self.discoveries)
            }
        };
        let q = q.wrapping_add(off);
        isid[4..].copy_from_slice(&q.to_be_bytes());
        isid
    }

    pub(super) fn reload(&mut self, cfg: Config, now: Instant) {
        if let Some(i) = cfg.isid {
            self.isid = i.bytes();
        }
        if let Some(n) = &cfg.initiatorname {
            self.initiatorname = n.clone();
        }
        let names: HashSet<&str> = cfg.targets.iter().map(|t| t.name.as_str()).collect();
        let enabled_discovery: HashSet<&str> = cfg
            .targets
            .iter()
            .filter(|t| t.session_type == SessionType::Discovery && !t.disabled)
            .map(|t| t.name.as_str())
            .collect();
        // Sessions to end: gone from the file, or born of a discovery entry
        // that is gone or disabled. One-off discoveries are not ours to end.
        let gone: Vec<String> = self
            .sessions
            .iter()
            .filter(|s| !s.oneoff && s.ending != Some(Ending::Remove))
            .filter(|s| match &s.parent {
                Some(p) => !enabled_discovery.contains(p.as_str()),
                None => !names.contains(s.name.as_str()),
            })
            .map(|s| s.name.clone())
            .collect();
        for name in gone {
            if let Some(i) = self.live(&name) {
                info!("{name}: removed from the configuration");
                self.end_session(i, Ending::Remove, now);
            }
        }
        for t in cfg.targets {
            match self.live(&t.name) {
                None => {
                    let wants = t.session_type == SessionType::Normal && !t.disabled;
                    let vt = if wants { self.alloc_target() } else { None };
                    if wants && vt.is_none() {
                        log::warn!("{}: no free vscsi target", t.name);
                        continue;
                    }
                    let mut s = Sess::new(t, self.isid_for(vt), vt);
                    s.retry_at = Some(now);
                    self.sessions.push(s);
                }
                Some(i) if self.sessions[i].cfg == t => {
                    // A reload asks discovery entries again for new targets.
                    let s = &mut self.sessions[i];
                    if s.state == SessionState::Done {
                        s.state = SessionState::Idle;
                        s.retry_at = Some(now);
                    }
                }
                Some(i) if t.disabled || t.session_type != self.sessions[i].cfg.session_type => {
                    // Disabled, or changed between normal and discovery:
                    // the old session goes with its disks, a new one starts.
                    info!(
                        "{}: {}",
                        t.name,
                        if t.disabled {
                            "disabled"
                        } else {
                            "session type changed"
                        }
                    );
                    self.end_session(i, Ending::Remove, now);
                    let wants = t.session_type == SessionType::Normal && !t.disabled;
                    let vt = if wants { self.alloc_target() } else { None };
                    let mut s = Sess::new(t, self.isid_for(vt), vt);
                    s.retry_at = Some(now);
                    self.sessions.push(s);
                }
                Some(i) => {
                    info!("{}: configuration changed", t.name);
                    if t.session_type == SessionType::Normal
                        && self.sessions[i].vscsi_target.is_none()
                    {
                        let vt = self.alloc_target();
                        let isid = self.isid_for(vt);
                        let s = &mut self.sessions[i];
                        s.vscsi_target = vt;
                        s.isid = isid;
                    }
                    let s = &mut self.sessions[i];
                    let was_disabled = s.cfg.disabled;
                    s.cfg = t;
                    s.redirect = None;
                    s.moved_to = None;
                    s.chap_md5_only = false;
                    if was_disabled || s.conn.is_none() {
                        s.state = SessionState::Idle;
                        s.retry_at = Some(now);
                        s.backoff = std::time::Duration::from_secs(1);
                    } else {
                        self.end_session(i, Ending::Restart, now);
                    }
                }
            }
        }
    }

    /// A session by name that is not on its way out.
    fn live(&self, name: &str) -> Option<usize> {
        self.sessions
            .iter()
            .position(|s| s.name == name && s.ending != Some(Ending::Remove) && !s.oneoff)
    }
}
