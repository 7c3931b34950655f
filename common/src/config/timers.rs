//! The daemon's timers and recovery limits that iscsi.conf(5) may set,
//! globally or per target block. Base iscsid has fixed timers; these are
//! an extension. This is the one place that holds their defaults and
//! bounds (the defaults are the core's own): the parser checks against
//! it and the daemon falls back on it.

use std::time::Duration;

use proto::initiator::DEFAULT_TIMERS;

use super::lexer::Keyword;
use super::Params;

/// Whole seconds, as iscsi.conf(5) writes them (the defaults are whole).
const fn secs(d: Duration) -> u32 {
    d.as_secs() as u32
}

/// A timer (in seconds) or a count the administrator may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// A login must finish within this many seconds.
    Login,
    /// Idle seconds before a NOP-Out ping.
    NopInterval,
    /// Seconds without any PDU after a ping before the connection is
    /// taken for dead.
    NopTimeout,
    /// Seconds from a command's first issue until task management starts.
    Command,
    /// Seconds each task management step (ABORT TASK, LOGICAL UNIT RESET,
    /// TARGET WARM RESET) waits for its response.
    Tmf,
    /// Seconds commands are held while the session is down before they go
    /// back to the kernel.
    Replacement,
    /// Upper bound, in seconds, of the reconnect backoff.
    ReconnectMax,
    /// Failed connections a command may be in flight on before it is given
    /// back to the kernel.
    ReissueLimit,
}

/// The default and the inclusive bounds of one timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub default: u32,
    pub min: u32,
    pub max: u32,
}

pub const LOGIN_TIMEOUT: Limits = Limits {
    default: secs(DEFAULT_TIMERS.login),
    min: 1,
    max: 3600,
};
pub const NOP_INTERVAL: Limits = Limits {
    default: secs(DEFAULT_TIMERS.nop_interval),
    min: 1,
    max: 3600,
};
pub const NOP_TIMEOUT: Limits = Limits {
    default: secs(DEFAULT_TIMERS.nop_timeout),
    min: 1,
    max: 3600,
};
pub const COMMAND_TIMEOUT: Limits = Limits {
    default: secs(DEFAULT_TIMERS.command),
    min: 1,
    max: 3600,
};
pub const TMF_TIMEOUT: Limits = Limits {
    default: secs(DEFAULT_TIMERS.tmf),
    min: 1,
    max: 600,
};
/// 0 gives held commands back at once; a day is long enough for any
/// planned outage of a target.
pub const REPLACEMENT_TIMEOUT: Limits = Limits {
    default: secs(DEFAULT_TIMERS.replacement),
    min: 0,
    max: 86400,
};
pub const RECONNECT_MAX: Limits = Limits {
    default: secs(DEFAULT_TIMERS.reconnect_max),
    min: 1,
    max: 3600,
};
/// 0 never sends a command again after a connection failed under it.
pub const REISSUE_LIMIT: Limits = Limits {
    default: DEFAULT_TIMERS.reissue_limit as u32,
    min: 0,
    max: 100,
};

impl Timer {
    /// Every timer, in the order iscsi.conf(5) and `iscsictl show` list them.
    pub const ALL: [Timer; 8] = [
        Timer::Login,
        Timer::NopInterval,
        Timer::NopTimeout,
        Timer::Command,
        Timer::Tmf,
        Timer::Replacement,
        Timer::ReconnectMax,
        Timer::ReissueLimit,
    ];

    pub fn limits(self) -> Limits {
        match self {
            Timer::Login => LOGIN_TIMEOUT,
            Timer::NopInterval => NOP_INTERVAL,
            Timer::NopTimeout => NOP_TIMEOUT,
            Timer::Command => COMMAND_TIMEOUT,
            Timer::Tmf => TMF_TIMEOUT,
            Timer::Replacement => REPLACEMENT_TIMEOUT,
            Timer::ReconnectMax => RECONNECT_MAX,
            Timer::ReissueLimit => REISSUE_LIMIT,
        }
    }

    /// The iscsi.conf keyword; the spelling lives in the lexer's table.
    pub fn keyword(self) -> &'static str {
        Keyword::Timer(self).name()
    }

    /// The configured value, if any.
    pub fn get(self, p: &Params) -> Option<u32> {
        match self {
            Timer::Login => p.login_timeout,
            Timer::NopInterval => p.nop_interval,
            Timer::NopTimeout => p.nop_timeout,
            Timer::Command => p.command_timeout,
            Timer::Tmf => p.tmf_timeout,
            Timer::Replacement => p.replacement_timeout,
            Timer::ReconnectMax => p.reconnect_max,
            Timer::ReissueLimit => p.reissue_limit,
        }
    }

    pub(crate) fn slot(self, p: &mut Params) -> &mut Option<u32> {
        match self {
            Timer::Login => &mut p.login_timeout,
            Timer::NopInterval => &mut p.nop_interval,
            Timer::NopTimeout => &mut p.nop_timeout,
            Timer::Command => &mut p.command_timeout,
            Timer::Tmf => &mut p.tmf_timeout,
            Timer::Replacement => &mut p.replacement_timeout,
            Timer::ReconnectMax => &mut p.reconnect_max,
            Timer::ReissueLimit => &mut p.reissue_limit,
        }
    }

    /// The value in effect: the configured one, else the default.
    pub fn effective(self, p: &Params) -> u32 {
        self.get(p).unwrap_or(self.limits().default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_lie_within_their_bounds() {
        for t in Timer::ALL {
            let l = t.limits();
            assert!(l.min <= l.default && l.default <= l.max, "{t:?}");
        }
    }

    #[test]
    fn every_timer_has_its_own_keyword_and_field() {
        let mut seen = std::collections::HashSet::new();
        for t in Timer::ALL {
            assert!(seen.insert(t.keyword()), "{t:?}");
            let mut p = Params::default();
            assert_eq!(t.get(&p), None);
            *t.slot(&mut p) = Some(7);
            assert_eq!(t.get(&p), Some(7));
            // No other timer reads the same field.
            for u in Timer::ALL.iter().filter(|&&u| u != t) {
                assert_eq!(u.get(&p), None, "{t:?} and {u:?}");
            }
        }
        assert_eq!(Timer::Login.keyword(), "logintimeout");
        assert_eq!(Timer::ReissueLimit.keyword(), "reissuelimit");
    }

    #[test]
    fn effective_falls_back_on_the_default() {
        let p = Params {
            nop_interval: Some(3),
            replacement_timeout: Some(0),
            ..Params::default()
        };
        assert_eq!(Timer::NopInterval.effective(&p), 3);
        assert_eq!(Timer::Replacement.effective(&p), 0);
        assert_eq!(Timer::Login.effective(&p), 15);
        assert_eq!(Timer::ReissueLimit.effective(&p), 3);
    }
}
