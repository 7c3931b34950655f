//! Discovery: `iscsictl discover` asks a portal once and reports to the
//! client; a discovery block of iscsi.conf creates a normal session for
//! each target its portal reports.

use std::fmt;
use std::time::Instant;

use log::{debug, info, warn};

use super::config::TargetConfig;
use super::{Action, ClientId, Initiator, SessionId};
use crate::discovery::{self, TargetRecord};
use crate::names;
use crate::negotiate::SessionKind;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoverError {
    /// A discovery of this portal is already running.
    Busy,
    /// No portal to ask.
    NoPortal,
    /// The initiator name is not an iSCSI name.
    BadInitiatorName(names::NameError),
}

impl fmt::Display for DiscoverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiscoverError::Busy => write!(f, "a discovery of this portal is already running"),
            DiscoverError::NoPortal => write!(f, "no portal to discover"),
            DiscoverError::BadInitiatorName(e) => write!(f, "initiatorname: {e}"),
        }
    }
}

impl std::error::Error for DiscoverError {}

impl Initiator {
    /// A one-off discovery session whose result goes to `client` as
    /// `Discovered` or `DiscoverFailed`.
    pub fn discover(
        &mut self,
        client: ClientId,
        mut cfg: TargetConfig,
        now: Instant,
    ) -> Result<(), DiscoverError> {
        let portal = cfg.portal.ok_or(DiscoverError::NoPortal)?;
        // It came over the control socket: checked again here.
        if let Some(n) = &cfg.initiatorname {
            names::check(n).map_err(DiscoverError::BadInitiatorName)?;
        }
        cfg.name = format!("discover {portal}");
        cfg.kind = SessionKind::Discovery;
        cfg.disabled = false;
        if self.sessions.values().any(|s| s.name() == cfg.name) {
            return Err(DiscoverError::Busy);
        }
        debug!("{}: starting", cfg.name);
        let sid = self.add_session(cfg, now).ok_or(DiscoverError::NoPortal)?;
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.waiter = Some(client);
            s.oneoff = true;
        }
        Ok(())
    }

    /// A control client went away: nobody waits for its discoveries.
    pub fn client_gone(&mut self, client: ClientId) {
        for s in self.sessions.values_mut() {
            if s.waiter == Some(client) {
                s.waiter = None;
            }
        }
    }

    /// SendTargets answered: report to the waiting client, or, for a
    /// discovery block, create the sessions it found.
    pub(super) fn discovered(&mut self, sid: SessionId, recs: Vec<TargetRecord>, now: Instant) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        info!("{}: found {} targets", s.name(), recs.len());
        if let Some(client) = s.waiter.take() {
            self.actions.push_back(Action::Discovered {
                client,
                targets: recs,
            });
            return;
        }
        // A one-off discovery whose client went away reports to nobody and
        // never logs in anywhere; a block being removed or disabled creates
        // nothing that would outlive it.
        if s.oneoff || s.ending.is_some() {
            return;
        }
        let parent = s.cfg.clone();
        for r in recs {
            if let Err(e) = names::check(&r.name) {
                warn!(
                    "{}: ignoring reported target {:?}: {e}",
                    parent.name, r.name
                );
                continue;
            }
            let exists = self.sessions.values().any(|s| {
                s.cfg.kind == SessionKind::Normal && s.cfg.targetname.as_deref() == Some(&r.name)
            });
            if exists {
                continue;
            }
            let portal = r
                .addresses
                .iter()
                .find_map(|a| discovery::parse_address(a))
                .or(parent.portal);
            let cfg = TargetConfig {
                name: format!("{}/{}", parent.name, r.name),
                kind: SessionKind::Normal,
                targetname: Some(r.name.clone()),
                portal,
                ..parent.clone()
            };
            match self.add_session(cfg, now) {
                Some(child) => {
                    if let Some(c) = self.sessions.get_mut(&child) {
                        c.parent = Some(parent.name.clone());
                    }
                    info!("{}: adding session for {}", parent.name, r.name);
                }
                None => warn!("{}: no free vscsi target for {}", parent.name, r.name),
            }
        }
    }
}
