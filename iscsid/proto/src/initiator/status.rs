//! What `iscsictl show` and `iscsictl reload`'s wait see of the sessions.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

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

/// A session's counters over all its connections, as `show` lists them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub commands: u64,
    /// Commands that did not end GOOD, the unit attentions below aside.
    pub errors: u64,
    pub logins: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub pdus_in: u64,
    pub pdus_out: u64,
    pub digest_errors: u64,
    /// Commands not answered in time.
    pub timeouts: u64,
    pub aborts: u64,
    /// LOGICAL UNIT RESET and TARGET WARM RESET requests.
    pub resets: u64,
    /// Connections lost while logged in.
    pub reconnects: u64,
    /// UNIT ATTENTION for a reset or power-on, which every login meets:
    /// counted apart, not as errors.
    pub unit_attentions: u64,
    /// Commands the latency figures cover (the latest, at most
    /// `LATENCY_WINDOW`).
    pub latency_samples: u64,
    pub latency_mean_us: u64,
    pub latency_p99_us: u64,
}

impl Stats {
    /// The counters' names, in the order of [`Stats::values`]: the order
    /// on the control socket and the keys of `iscsictl -j show`.
    pub const NAMES: [&'static str; 16] = [
        "commands",
        "errors",
        "logins",
        "bytes_read",
        "bytes_written",
        "pdus_in",
        "pdus_out",
        "digest_errors",
        "timeouts",
        "aborts",
        "resets",
        "reconnects",
        "unit_attentions",
        "latency_samples",
        "latency_mean_us",
        "latency_p99_us",
    ];

    pub fn values(&self) -> [u64; 16] {
        [
            self.commands,
            self.errors,
            self.logins,
            self.bytes_read,
            self.bytes_written,
            self.pdus_in,
            self.pdus_out,
            self.digest_errors,
            self.timeouts,
            self.aborts,
            self.resets,
            self.reconnects,
            self.unit_attentions,
            self.latency_samples,
            self.latency_mean_us,
            self.latency_p99_us,
        ]
    }

    pub fn from_values(f: [u64; 16]) -> Stats {
        Stats {
            commands: f[0],
            errors: f[1],
            logins: f[2],
            bytes_read: f[3],
            bytes_written: f[4],
            pdus_in: f[5],
            pdus_out: f[6],
            digest_errors: f[7],
            timeouts: f[8],
            aborts: f[9],
            resets: f[10],
            reconnects: f[11],
            unit_attentions: f[12],
            latency_samples: f[13],
            latency_mean_us: f[14],
            latency_p99_us: f[15],
        }
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
    pub stats: Stats,
    pub last_error: Option<String>,
    /// How long until the next attempt, while not connected.
    pub next_attempt: Option<Duration>,
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
    pub fn status(&self, now: Instant) -> Vec<SessionStatus> {
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
                    stats: s.totals(),
                    last_error: s.last_error.clone(),
                    next_attempt: match &s.conn {
                        None if s.wants_connection(self.stopping) => {
                            s.retry_at.map(|t| t.saturating_duration_since(now))
                        }
                        _ => None,
                    },
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

#[cfg(test)]
mod tests {
    use super::Stats;

    #[test]
    fn stats_values_round_trip_in_name_order() {
        let v: [u64; 16] = std::array::from_fn(|i| i as u64 * 7 + 1);
        let s = Stats::from_values(v);
        assert_eq!(s.values(), v);
        assert_eq!(s.commands, 1);
        assert_eq!(s.latency_p99_us, 15 * 7 + 1);
        let n = Stats::NAMES;
        assert_eq!((n[0], n[15]), ("commands", "latency_p99_us"));
    }
}
