//! What `iscsictl show` and `iscsictl reload`'s wait see of the sessions.

use std::fmt;
use std::net::SocketAddr;

use super::config::Timers;
use super::{Initiator, SessionId};
use crate::negotiate::{Params, SessionKind};

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Configured, not started yet.
    Idle,
    /// `disabled` in iscsi.conf.
    Disabled,
    /// TCP connect in progress.
    Connecting,
    /// Login exchange in progress.
    LoggingIn,
    /// Full feature phase.
    LoggedIn,
    LoggingOut,
    /// The last attempt failed; waiting to retry.
    Failed,
    /// A discovery session that finished.
    Done,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Idle => "idle",
            State::Disabled => "disabled",
            State::Connecting => "connecting",
            State::LoggingIn => "logging in",
            State::LoggedIn => "logged in",
            State::LoggingOut => "logging out",
            State::Failed => "failed",
            State::Done => "done",
        })
    }
}

/// One session as `show` reports it.
#[derive(Debug, Clone)]
pub struct SessionStatus {
    pub id: SessionId,
    pub name: String,
    pub kind: SessionKind,
    pub state: State,
    pub targetname: Option<String>,
    pub portal: Option<SocketAddr>,
    pub initiatorname: String,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub vscsi_target: Option<u32>,
    /// Negotiated parameters, while logged in.
    pub params: Option<Params>,
    /// (HeaderDigest, DataDigest) offered as "CRC32C,None" because the
    /// target rejected None.
    pub digest_fallback: (bool, bool),
    pub timers: Timers,
    pub luns: Vec<u32>,
    pub in_flight: usize,
    pub queued: usize,
    pub commands: u64,
    pub errors: u64,
    pub logins: u64,
    pub last_error: Option<String>,
}

/// Sessions by state, for `reload`'s wait.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub sessions: u32,
    pub disabled: u32,
    pub logged_in: u32,
    pub failed: u32,
    pub connecting: u32,
}

impl Initiator {
    /// Every session, in creation order.
    pub fn status(&self) -> Vec<SessionStatus> {
        self.sessions
            .values()
            .map(|s| {
                let (in_flight, queued) = match &s.conn {
                    Some(c) => (c.session.in_flight(), c.session.queued() + s.held.len()),
                    None => (0, s.held.len()),
                };
                SessionStatus {
                    id: s.id,
                    name: s.cfg.name.clone(),
                    kind: s.cfg.kind,
                    state: s.state,
                    targetname: s.cfg.targetname.clone(),
                    portal: s.conn.as_ref().map(|c| c.addr).or(s.portal()),
                    initiatorname: s
                        .cfg
                        .initiatorname
                        .clone()
                        .unwrap_or_else(|| self.initiatorname.clone()),
                    isid: s.current_isid(),
                    tsih: s.tsih,
                    vscsi_target: s.vscsi_target,
                    params: s.params.clone().filter(|_| s.state == State::LoggedIn),
                    digest_fallback: s.digest_any,
                    timers: s.cfg.timers,
                    luns: s.luns.iter().copied().collect(),
                    in_flight,
                    queued,
                    commands: s.stats.commands,
                    errors: s.stats.errors,
                    logins: s.stats.logins,
                    last_error: s.last_error.clone(),
                }
            })
            .collect()
    }

    /// Sessions by state; one-off discoveries do not count.
    pub fn counts(&self) -> Counts {
        let mut p = Counts::default();
        for s in self.sessions.values().filter(|s| !s.oneoff) {
            p.sessions += 1;
            match s.state {
                State::Disabled => p.disabled += 1,
                State::LoggedIn | State::Done => p.logged_in += 1,
                State::Failed => p.failed += 1,
                _ => p.connecting += 1,
            }
        }
        p
    }
}
