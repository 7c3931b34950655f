//! A session's life across connections: what each event of the sans-IO
//! `Session` means for it, losing and replacing connections, holding and
//! reissuing commands, logging out, and the timers between connections.

use std::time::{Duration, Instant};

use log::{debug, info, warn};

use super::cause::CloseCause;
use super::sess::{Conn, Ending, REDIRECTS_AT_ONCE};
use super::{luns, Action, Initiator, SessionId, State};
use crate::discovery;
use crate::login::LoginError;
use crate::scsi::{self, Outcome};
use crate::session::{Event, Phase, SessionError};
use crate::task::{Completion, ScsiTask};

/// How a connection was lost.
#[derive(Debug)]
pub(super) enum Loss {
    Socket(CloseCause),
}

impl Initiator {
    /// Acts on everything the session's connection has to say, then asks
    /// for its bytes to be sent.
    pub(super) fn process(&mut self, sid: SessionId, now: Instant) {
        loop {
            let ev = match self.sessions.get_mut(&sid).and_then(|s| s.conn.as_mut()) {
                Some(c) => c.session.poll_event(),
                None => None,
            };
            let Some(ev) = ev else { break };
            self.event(sid, ev, now);
        }
        if let Some(c) = self.sessions.get_mut(&sid).and_then(|s| s.conn.as_mut()) {
            if !c.send_queued && !c.session.tx_data().is_empty() {
                c.send_queued = true;
                self.actions.push_back(Action::Send(c.id));
            }
        }
    }

    fn event(&mut self, sid: SessionId, ev: Event, now: Instant) {
        match ev {
            Event::LoggedIn => self.logged_in(sid, now),
            Event::Complete(c) => self.complete_in(sid, c, Some(now)),
            Event::Rescan => {
                if let Some(t) = self.sessions.get(&sid).and_then(|s| s.vscsi_target) {
                    self.actions.push_back(Action::Probe {
                        target: t,
                        lun: None,
                    });
                }
            }
            Event::Discovered(recs) => {
                if let Some(c) = self.sessions.get_mut(&sid).and_then(|s| s.conn.as_mut()) {
                    c.session.logout(now);
                }
                self.discovered(sid, recs, now);
            }
            Event::TargetLogout { time2wait } => {
                self.close_conn(sid);
                let Some(s) = self.sessions.get_mut(&sid) else {
                    return;
                };
                if s.ending.is_some() {
                    return self.after_logout(sid, now);
                }
                s.state = State::Failed;
                s.retry_at = Some(now + Duration::from_secs(u64::from(time2wait)));
                s.last_error = Some("target requested logout".into());
            }
            Event::LoggedOut => {
                if let Some(s) = self.sessions.get(&sid) {
                    info!("{}: logged out", s.name());
                }
                self.close_conn(sid);
                self.after_logout(sid, now);
            }
            Event::Redirect { addr, permanent } => self.redirected(sid, &addr, permanent, now),
            Event::Failed(e) => self.failed(sid, e, now),
        }
    }

    fn logged_in(&mut self, sid: SessionId, now: Instant) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        let Some(c) = s.conn.as_mut() else { return };
        s.state = State::LoggedIn;
        s.stats.logins += 1;
        s.backoff = super::sess::BACKOFF_MIN;
        s.redirects = 0;
        s.last_error = None;
        s.params = Some(c.session.params().clone());
        s.tsih = c.session.tsih();
        info!(
            "{}: logged in to {} at {}",
            s.cfg.name,
            s.cfg.targetname.as_deref().unwrap_or("discovery"),
            c.addr
        );
        // Bytes after the final Login Response may already have closed the
        // session again; then the commands stay held.
        if c.session.phase() == Phase::FullFeature {
            s.held_deadline = None;
            for t in s.held.drain(..) {
                c.session.submit(t, now);
            }
        }
        if let Some(e) = s.ending {
            // Removed or changed while logging in.
            debug!("{}: logging out at once ({e:?})", s.cfg.name);
            c.session.logout(now);
        } else if let Some(t) = s.vscsi_target {
            let again = s.stats.logins > 1;
            self.actions.push_back(Action::Probe {
                target: t,
                lun: None,
            });
            if again {
                self.recheck_luns(sid, now);
            }
        }
    }

    fn redirected(&mut self, sid: SessionId, addr: &str, permanent: bool, now: Instant) {
        self.close_conn(sid);
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        info!(
            "{}: redirected to {addr}{}",
            s.name(),
            if permanent { " (permanent)" } else { "" }
        );
        match discovery::parse_address(addr) {
            Some(a) => {
                if permanent {
                    s.moved_to = Some(a);
                    s.redirect = None;
                } else {
                    s.redirect = Some(a);
                }
                s.redirects = s.redirects.saturating_add(1);
                if s.redirects <= REDIRECTS_AT_ONCE {
                    s.state = State::Idle;
                    s.retry_at = Some(now);
                } else {
                    let msg = format!("{} redirects without a login", s.redirects);
                    warn!("{}: {msg}, backing off", s.name());
                    self.fail_session(sid, msg, false, now);
                }
            }
            None => {
                let msg = format!("redirected to {addr}, not a numeric address");
                warn!("{}: {msg}", s.name());
                self.fail_session(sid, msg, true, now);
            }
        }
    }

    fn failed(&mut self, sid: SessionId, e: SessionError, now: Instant) {
        let Some(s) = self.sessions.get(&sid) else {
            return;
        };
        let permanent = matches!(&e, SessionError::Login(l) if l.is_permanent());
        let auth = matches!(
            &e,
            SessionError::Login(
                LoginError::AuthFailed | LoginError::InitiatorError(_) | LoginError::Chap(_)
            )
        );
        let msg = e.to_string();
        warn!("{}: {msg}", s.name());
        let digest = matches!(
            e,
            SessionError::HeaderDigest | SessionError::DataDigest { .. }
        );
        let was_up = s.state == State::LoggedIn;
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.stats.digest_errors += u64::from(digest);
            s.stats.reconnects += u64::from(was_up);
        }
        let Some(s) = self.sessions.get(&sid) else {
            return;
        };
        if e == SessionError::LoginTimeout && s.state == State::LoggingIn {
            self.new_isid_generation(sid);
        }
        self.take_back(sid, now);
        self.close_conn(sid);
        if let SessionError::Login(LoginError::DigestRejected { header, data }) = e {
            if self.digest_fallback(sid, header, data, now) {
                return;
            }
        }
        if auth && self.chap_fallback(sid, now) {
            if let Some(s) = self.sessions.get_mut(&sid) {
                s.last_error = Some(msg);
            }
            return;
        }
        self.fail_session(sid, msg, permanent, now);
    }

    /// The target may still act on a login we gave up on; the next one
    /// must not share its ISID, or the late one would reinstate the session
    /// over it (RFC 7143 section 6.3.5).
    fn new_isid_generation(&mut self, sid: SessionId) {
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.isid_generation = s.isid_generation.wrapping_add(1);
            let q = s.current_isid();
            info!(
                "{}: next login with ISID qualifier 0x{:04x}",
                s.name(),
                u16::from_be_bytes([q[4], q[5]])
            );
        }
    }

    /// A target that answers Reject to our digest offer of None (istgt with
    /// `UseDigest`) is tried once more at once, offering "CRC32C,None" for
    /// that digest; true if that is what happens now.
    fn digest_fallback(&mut self, sid: SessionId, header: bool, data: bool, now: Instant) -> bool {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return false;
        };
        let new = (header && !s.digest_any.0, data && !s.digest_any.1);
        if s.ending.is_some() || !(new.0 || new.1) {
            return false;
        }
        s.digest_any = (s.digest_any.0 || header, s.digest_any.1 || data);
        info!(
            "{}: target rejected digest None, retrying offering CRC32C for{}{}",
            s.name(),
            if header { " HeaderDigest" } else { "" },
            if data { " DataDigest" } else { "" }
        );
        s.state = State::Failed;
        s.retry_at = Some(now);
        true
    }

    /// A CHAP login that failed while SHA-256 was on offer is tried again
    /// at once with MD5 alone; true if that is what happens now.
    fn chap_fallback(&mut self, sid: SessionId, now: Instant) -> bool {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return false;
        };
        let any = s
            .cfg
            .chap
            .as_ref()
            .is_some_and(|c| c.algs == super::ChapAlgs::Any);
        if !any || s.chap_md5_only || s.ending.is_some() || s.state != State::LoggingIn {
            return false;
        }
        info!(
            "{}: CHAP login failed with SHA-256 offered, retrying with MD5 only",
            s.name()
        );
        s.chap_md5_only = true;
        s.state = State::Failed;
        s.retry_at = Some(now);
        true
    }

    /// The connection is gone: what it was doing decides what comes next.
    pub(super) fn conn_lost(&mut self, sid: SessionId, loss: Loss, now: Instant) {
        let Some(s) = self.sessions.get(&sid) else {
            return;
        };
        let Some(c) = s.conn.as_ref() else { return };
        let Loss::Socket(cause) = loss;
        let why = match s.state {
            State::Connecting => format!("connect to {}: {cause}", c.addr),
            // Some targets (tgt) just hang up on a wrong CHAP secret.
            State::LoggingIn if s.cfg.chap.is_some() && cause.is_hangup() => {
                format!("{cause} during login (authentication refused? check chap name and secret)")
            }
            State::LoggingIn => format!("{cause} during login"),
            _ => format!("connection lost: {cause}"),
        };
        warn!("{}: {why}", s.name());
        let was_up = s.state == State::LoggedIn;
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.stats.reconnects += u64::from(was_up);
        }
        // What the session produced before the loss (completions) counts.
        self.drain_events_only(sid);
        // tgt hangs up on a CHAP_A it does not know: try MD5 alone.
        let retry_md5 = cause.is_hangup() && self.chap_fallback(sid, now);
        self.take_back(sid, now);
        self.close_conn(sid);
        if retry_md5 {
            if let Some(s) = self.sessions.get_mut(&sid) {
                s.last_error = Some(why);
            }
            return;
        }
        self.fail_session(sid, why, false, now);
    }

    /// Completions the session produced before it closed reach the kernel;
    /// other events die with the connection.
    fn drain_events_only(&mut self, sid: SessionId) {
        loop {
            let ev = match self.sessions.get_mut(&sid).and_then(|s| s.conn.as_mut()) {
                Some(c) => c.session.poll_event(),
                None => None,
            };
            match ev {
                Some(Event::Complete(c)) => self.complete_in(sid, c, None),
                Some(other) => debug!("dropped event {other:?} with the connection"),
                None => break,
            }
        }
    }

    /// Commands of a dead connection wait for the next one, up to the
    /// reissue limit: a target that takes the login but never answers a
    /// command must not keep it for ever.
    fn take_back(&mut self, sid: SessionId, now: Instant) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if s.conn.is_none() {
            return;
        }
        let tasks = s.take_kernel_tasks();
        let limit = s.cfg.timers.reissue_limit;
        let mut keep = Vec::new();
        let mut give_up = Vec::new();
        for t in tasks {
            let n = s
                .reissued
                .get(&t.tag)
                .copied()
                .unwrap_or(0)
                .saturating_add(1);
            if n >= limit {
                give_up.push(t);
            } else {
                s.reissued.insert(t.tag, n);
                keep.push(t);
            }
        }
        if !give_up.is_empty() {
            warn!(
                "{}: {} commands failed on {} connections, giving up on them",
                s.name(),
                give_up.len(),
                limit
            );
        }
        let held: Vec<ScsiTask> = s.held.drain(..).collect();
        for t in keep.into_iter().chain(held) {
            s.hold(t, now);
        }
        for t in give_up {
            self.complete_in(
                sid,
                Completion::status_only(t.tag, t.dir, Outcome::Retry),
                None,
            );
        }
    }

    /// Held commands go back for the kernel to retry.
    fn give_back_held(&mut self, sid: SessionId) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        s.held_deadline = None;
        let held: Vec<ScsiTask> = s.held.drain(..).collect();
        for t in held {
            let c = Completion::status_only(t.tag, t.dir, Outcome::Retry);
            self.complete_in(sid, c, None);
        }
    }

    /// A command of this session is finished: it goes to the kernel, and
    /// its reissue count with it (the kernel reuses tags).
    /// Our own commands stay here; `now` is None when their connection is
    /// gone with them.
    fn complete_in(&mut self, sid: SessionId, c: Completion, now: Option<Instant>) {
        if luns::is_internal(c.tag) {
            return match now {
                Some(now) => self.internal_done(sid, c, now),
                None => {
                    if let Some(s) = self.sessions.get_mut(&sid) {
                        s.luns_state.connection_lost();
                    }
                }
            };
        }
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.reissued.remove(&c.tag);
            luns::kernel_completion(&mut s.luns_state, &c);
            if let (Some(t), Some(now)) = (s.started.remove(&c.tag), now) {
                s.note_latency(now.saturating_duration_since(t));
            }
            s.stats.bytes_read += c.data.len() as u64 + u64::from(c.placed);
            match c.status {
                Outcome::Good => {}
                _ if reset_attention(&c) => s.stats.unit_attentions += 1,
                _ => s.stats.errors += 1,
            }
        }
        self.complete(c);
    }

    pub(super) fn close_conn(&mut self, sid: SessionId) {
        // Completions still in the session's queue (commands refused after
        // it closed) must reach the kernel.
        self.drain_events_only(sid);
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        // A temporary redirect is good for one login (RFC 7143 11.13.5).
        s.redirect = None;
        if let Some(Conn { id, session, .. }) = s.conn.take() {
            s.conn_totals.add(session.counters());
            self.actions.push_back(Action::Close(id));
        }
    }

    pub(super) fn fail_session(
        &mut self,
        sid: SessionId,
        msg: String,
        permanent: bool,
        now: Instant,
    ) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        s.last_error = Some(msg.clone());
        if s.ending.is_some() {
            return self.after_logout(sid, now);
        }
        if s.oneoff {
            // A one-off discovery: report and forget it.
            if let Some(client) = s.waiter.take() {
                self.actions
                    .push_back(Action::DiscoverFailed { client, error: msg });
            }
            return self.remove_session(sid);
        }
        let Some(r) = self.random::<2>() else { return };
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        s.state = State::Failed;
        s.schedule_retry(now, permanent, u16::from_be_bytes(r));
    }

    /// The connection is gone after a logout (or failed while ending).
    pub(super) fn after_logout(&mut self, sid: SessionId, now: Instant) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        match s.ending {
            Some(Ending::Remove) | Some(Ending::Shutdown) | None => {
                // Commands never sent go back for the kernel to retry.
                self.give_back_held(sid);
            }
            // Held across the new login, within the replacement timeout.
            Some(Ending::Restart) => {}
        }
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        match s.ending {
            Some(Ending::Remove) => self.remove_session(sid),
            Some(Ending::Restart) => {
                s.ending = None;
                s.state = State::Idle;
                s.retry_at = Some(now);
            }
            Some(Ending::Shutdown) => s.state = State::Idle,
            None if s.discovery() => {
                s.state = State::Done;
                if s.oneoff {
                    self.remove_session(sid);
                }
            }
            None => {
                let Some(r) = self.random::<2>() else { return };
                let Some(s) = self.sessions.get_mut(&sid) else {
                    return;
                };
                s.state = State::Failed;
                s.schedule_retry(now, false, u16::from_be_bytes(r));
            }
        }
    }

    /// Logs a session out for good, for a restart, or for shutdown.
    pub(super) fn end_session(&mut self, sid: SessionId, why: Ending, now: Instant) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        s.ending = Some(why);
        if s.conn.is_none() {
            return self.after_logout(sid, now);
        }
        s.state = State::LoggingOut;
        if why == Ending::Restart {
            // Everything not finished comes along to the new login rather
            // than back to the kernel; the logout ends the old tasks on the
            // target.
            let tasks = s.take_kernel_tasks();
            let held: Vec<ScsiTask> = s.held.drain(..).collect();
            for t in tasks.into_iter().chain(held) {
                s.hold(t, now);
            }
        }
        if let Some(c) = s.conn.as_mut() {
            c.session.logout(now);
        }
        self.process(sid, now);
    }

    pub(super) fn remove_session(&mut self, sid: SessionId) {
        self.close_conn(sid);
        let Some(s) = self.sessions.remove(&sid) else {
            return;
        };
        if let Some(t) = s.vscsi_target {
            self.actions.push_back(Action::Detach {
                target: t,
                lun: None,
            });
            if let Some(slot) = self.targets.get_mut(t as usize) {
                *slot = None;
            }
        }
        debug!("{}: removed", s.name());
    }

    pub(super) fn session_timers(&mut self, sid: SessionId, now: Instant) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if s.held_deadline.is_some_and(|d| now >= d) {
            warn!(
                "{}: session not back in time, failing {} commands",
                s.name(),
                s.held.len()
            );
            self.give_back_held(sid);
        }
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if let Some(c) = s.conn.as_mut() {
            if c.session.next_timeout().is_some_and(|t| now >= t) {
                c.session.tick(now);
                self.process(sid, now);
            }
            return;
        }
        if !s.wants_connection(self.stopping) || s.retry_at.is_some_and(|t| now < t) {
            return;
        }
        self.connect(sid, now);
    }

    fn connect(&mut self, sid: SessionId, now: Instant) {
        let Some(random) = self.random::<43>() else {
            return;
        };
        let initiatorname = self.initiatorname.clone();
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        let Some(addr) = s.portal() else {
            let msg = "no targetaddr".to_owned();
            return self.fail_session(sid, msg, true, now);
        };
        let session = s.session(&initiatorname, now, random);
        let id = s.next_conn_id();
        s.conn = Some(Conn {
            id,
            session,
            addr,
            send_queued: false,
        });
        s.state = State::Connecting;
        s.retry_at = None;
        debug!("{}: connecting to {addr}", s.name());
        self.actions.push_back(Action::Connect {
            conn: id,
            addr,
            local: s.cfg.local,
        });
    }
}

/// CHECK CONDITION with UNIT ATTENTION for a power-on or reset: what the
/// first command after every login meets, and no error.
fn reset_attention(c: &Completion) -> bool {
    c.status == Outcome::Sense
        && c.sense
            .get(2)
            .is_some_and(|k| k & 0x0f == scsi::KEY_UNIT_ATTENTION)
        && c.sense.get(12) == Some(&scsi::ASC_RESET_OCCURRED)
}
