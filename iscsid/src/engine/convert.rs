//! iscsi.conf(5) and the control protocol in the core's terms, and back:
//! the only place the engine translates between `common` and the core.

use std::time::Duration;

use common::config::{self, ChapAlgorithm, Config, SessionType, Target, Timer};
use common::ctl::{ReloadResult, SessionInfo};
use proto::initiator::{
    ChapAlgs, ChapIdentity, InitiatorConfig, ReloadReport, SessionStatus, TargetConfig, Timers,
    DEFAULT_QUEUE_DEPTH,
};
use proto::negotiate::{self, Params, Prefs, SessionKind};

pub fn initiator_config(c: &Config) -> InitiatorConfig {
    InitiatorConfig {
        isid: c.isid.map(|i| i.bytes()),
        initiatorname: c.initiatorname.clone(),
        targets: c.targets.iter().map(target).collect(),
    }
}

pub fn target(t: &Target) -> TargetConfig {
    let p = &t.params;
    TargetConfig {
        name: t.name.clone(),
        disabled: t.disabled,
        kind: match t.session_type {
            SessionType::Normal => SessionKind::Normal,
            SessionType::Discovery => SessionKind::Discovery,
        },
        targetname: t.targetname.clone(),
        initiatorname: t.initiatorname.clone(),
        portal: t.targetaddr,
        local: t.initiatoraddr,
        prefs: prefs(p),
        chap: p.chap.as_ref().map(|c| ChapIdentity {
            name: c.name.clone(),
            secret: c.secret.clone(),
            mutual: p
                .chap_mutual
                .as_ref()
                .map(|m| (m.name.clone(), m.secret.clone())),
            algs: match p.chap_algorithm {
                Some(ChapAlgorithm::Md5) => ChapAlgs::Md5,
                Some(ChapAlgorithm::Sha256) => ChapAlgs::Sha256,
                Some(ChapAlgorithm::Any) | None => ChapAlgs::Any,
            },
        }),
        queue_depth: p.queue_depth.unwrap_or(DEFAULT_QUEUE_DEPTH),
        timers: timers(p),
    }
}

/// The timers in effect: the configured ones, else the defaults.
fn timers(p: &config::Params) -> Timers {
    let secs = |t: Timer| Duration::from_secs(u64::from(t.effective(p)));
    Timers {
        login: secs(Timer::Login),
        nop_interval: secs(Timer::NopInterval),
        nop_timeout: secs(Timer::NopTimeout),
        command: secs(Timer::Command),
        tmf: secs(Timer::Tmf),
        replacement: secs(Timer::Replacement),
        reconnect_max: secs(Timer::ReconnectMax),
        reissue_limit: u8::try_from(Timer::ReissueLimit.effective(p)).unwrap_or(u8::MAX),
    }
}

/// A timer's value as iscsi.conf(5) writes it.
fn timer_value(t: &Timers, which: Timer) -> u64 {
    match which {
        Timer::Login => t.login.as_secs(),
        Timer::NopInterval => t.nop_interval.as_secs(),
        Timer::NopTimeout => t.nop_timeout.as_secs(),
        Timer::Command => t.command.as_secs(),
        Timer::Tmf => t.tmf.as_secs(),
        Timer::Replacement => t.replacement.as_secs(),
        Timer::ReconnectMax => t.reconnect_max.as_secs(),
        Timer::ReissueLimit => u64::from(t.reissue_limit),
    }
}

/// (keyword, value) of every timer, for `show`.
fn describe_timers(t: &Timers) -> Vec<(String, String)> {
    Timer::ALL
        .iter()
        .map(|&w| (w.keyword().to_owned(), timer_value(t, w).to_string()))
        .collect()
}

/// Our wishes from iscsi.conf over our defaults.
fn prefs(p: &config::Params) -> Prefs {
    let d = Prefs::default();
    let digest = |x: Option<config::DigestPref>| match x {
        None | Some(config::DigestPref::None) => negotiate::DigestPref::None,
        Some(config::DigestPref::Crc32c) => negotiate::DigestPref::Crc32c,
        Some(config::DigestPref::Any) => negotiate::DigestPref::Any,
    };
    let max_burst = p.max_burst_length.unwrap_or(d.max_burst);
    Prefs {
        header_digest: digest(p.header_digest),
        data_digest: digest(p.data_digest),
        max_recv_dsl: p.max_recv_data_segment_length.unwrap_or(d.max_recv_dsl),
        max_burst,
        first_burst: p.first_burst_length.unwrap_or(d.first_burst.min(max_burst)),
        initial_r2t: p.initial_r2t.unwrap_or(d.initial_r2t),
        immediate_data: p.immediate_data.unwrap_or(d.immediate_data),
        max_outstanding_r2t: p.max_outstanding_r2t.unwrap_or(d.max_outstanding_r2t),
        default_time2wait: p.default_time2wait.unwrap_or(d.default_time2wait),
        default_time2retain: p.default_time2retain.unwrap_or(d.default_time2retain),
        ..d
    }
}

pub fn session_info(s: SessionStatus) -> SessionInfo {
    let mut isid = [0u8; 8];
    isid[2..].copy_from_slice(&s.isid);
    SessionInfo {
        name: s.name,
        discovery: s.kind == SessionKind::Discovery,
        state: Some(s.state),
        targetname: s.targetname,
        portal: s.portal,
        initiatorname: s.initiatorname,
        isid: u64::from_be_bytes(isid),
        tsih: s.tsih,
        vscsi_target: s.vscsi_target,
        params: s
            .params
            .as_ref()
            .map(|p| describe_params(p, s.digest_fallback))
            .unwrap_or_default(),
        timers: describe_timers(&s.timers),
        luns: s.luns,
        in_flight: u32::try_from(s.in_flight).unwrap_or(u32::MAX),
        queued: u32::try_from(s.queued).unwrap_or(u32::MAX),
        stats: s.stats,
        last_error: s.last_error,
        next_attempt_ms: s
            .next_attempt
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    }
}

fn yn(b: bool) -> String {
    if b { "Yes" } else { "No" }.to_owned()
}

/// A digest in effect; `forced` when we offered it only because the
/// target rejected None, which the admin should know to configure.
fn digest(on: bool, forced: bool) -> String {
    match (on, forced) {
        (true, true) => "CRC32C (the target rejected None)",
        (true, false) => "CRC32C",
        (false, _) => "None",
    }
    .to_owned()
}

fn describe_params(p: &Params, forced: (bool, bool)) -> Vec<(String, String)> {
    let mut v = vec![
        ("HeaderDigest".to_owned(), digest(p.header_digest, forced.0)),
        ("DataDigest".to_owned(), digest(p.data_digest, forced.1)),
        (
            "MaxRecvDataSegmentLength".to_owned(),
            p.max_recv_dsl.to_string(),
        ),
        (
            "MaxXmitDataSegmentLength".to_owned(),
            p.max_xmit_dsl.to_string(),
        ),
        ("MaxBurstLength".to_owned(), p.max_burst.to_string()),
        ("FirstBurstLength".to_owned(), p.first_burst.to_string()),
        ("InitialR2T".to_owned(), yn(p.initial_r2t)),
        ("ImmediateData".to_owned(), yn(p.immediate_data)),
        (
            "MaxOutstandingR2T".to_owned(),
            p.max_outstanding_r2t.to_string(),
        ),
        (
            "DefaultTime2Wait".to_owned(),
            p.default_time2wait.to_string(),
        ),
        (
            "DefaultTime2Retain".to_owned(),
            p.default_time2retain.to_string(),
        ),
        (
            "ErrorRecoveryLevel".to_owned(),
            p.error_recovery_level.to_string(),
        ),
    ];
    if let Some(t) = p.target_portal_group_tag {
        v.push(("TargetPortalGroupTag".to_owned(), t.to_string()));
    }
    if let Some(a) = &p.target_alias {
        v.push(("TargetAlias".to_owned(), a.clone()));
    }
    v
}

/// What a reload could not do, for iscsictl.
pub fn reload_result(r: &ReloadReport) -> ReloadResult {
    ReloadResult {
        not_started: r.not_started.clone(),
    }
}
