//! `iscsictl -j show ...`: the same answers as JSON, for scripts, as
//! `bgpctl -j` gives in base. The fields are listed in iscsictl(8).

use common::ctl::{SessionInfo, SessionStats, VscsiStats};
use serde_json::{json, Map, Value};

fn pairs(list: &[(String, String)]) -> Value {
    Value::Object(
        list.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

fn stats(s: &SessionStats) -> Value {
    let m: Map<String, Value> = SessionStats::NAMES
        .iter()
        .zip(s.values())
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    Value::Object(m)
}

pub fn session(s: &SessionInfo) -> Value {
    json!({
        "name": s.name,
        "type": if s.discovery { "discovery" } else { "normal" },
        "state": s.state.map(|st| st.to_string()),
        "targetname": s.targetname,
        "portal": s.portal.map(|p| p.to_string()),
        "initiatorname": s.initiatorname,
        "isid": format!("{:012x}", s.isid),
        "tsih": s.tsih,
        "vscsi_target": s.vscsi_target,
        "luns": s.luns,
        "in_flight": s.in_flight,
        "queued": s.queued,
        "stats": stats(&s.stats),
        "last_error": s.last_error,
        "next_attempt_ms": s.next_attempt_ms,
        "parameters": pairs(&s.params),
        "timers": pairs(&s.timers),
    })
}

/// `show`, `show session NAME` and `show summary`: a list of sessions.
pub fn sessions(list: &[SessionInfo]) -> String {
    let v = json!({ "sessions": list.iter().map(session).collect::<Vec<_>>() });
    v.to_string()
}

pub fn vscsi_stats(s: &VscsiStats) -> String {
    json!({
        "vscsi": {
            "probes": s.probes,
            "detaches": s.detaches,
            "commands": { "none": s.commands[0], "read": s.commands[1], "write": s.commands[2] },
            "completions": {
                "done": s.completions[0],
                "sense": s.completions[1],
                "reset": s.completions[2],
                "error": s.completions[3],
            },
            "data_reads": s.data_reads,
            "bytes_read": s.bytes_read,
            "data_writes": s.data_writes,
            "bytes_written": s.bytes_written,
            "errors": { "none": s.errors[0], "read": s.errors[1], "write": s.errors[2] },
        }
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_parse_back_with_every_field() {
        let s = SessionInfo {
            name: "disk \"1\"".into(),
            state: Some(common::ctl::SessionState::Failed),
            luns: vec![0, 3],
            params: vec![("MaxBurstLength".into(), "262144".into())],
            timers: vec![("logintimeout".into(), "15".into())],
            stats: SessionStats {
                commands: 7,
                latency_p99_us: 900,
                ..SessionStats::default()
            },
            last_error: Some("connection refused\u{1b}".into()),
            next_attempt_ms: Some(1500),
            ..SessionInfo::default()
        };
        let v: Value = serde_json::from_str(&sessions(&[s])).expect("valid JSON");
        let s0 = &v["sessions"][0];
        assert_eq!(s0["name"], "disk \"1\"");
        assert_eq!(s0["state"], "failed");
        assert_eq!(s0["luns"], json!([0, 3]));
        assert_eq!(s0["stats"]["commands"], 7);
        assert_eq!(s0["stats"]["latency_p99_us"], 900);
        assert_eq!(
            s0["stats"].as_object().unwrap().len(),
            SessionStats::NAMES.len()
        );
        assert_eq!(s0["parameters"]["MaxBurstLength"], "262144");
        assert_eq!(s0["timers"]["logintimeout"], "15");
        assert_eq!(s0["last_error"], "connection refused\u{1b}");
        assert_eq!(s0["next_attempt_ms"], 1500);
        assert_eq!(s0["portal"], Value::Null);
    }

    #[test]
    fn vscsi_stats_parse_back() {
        let s = VscsiStats {
            probes: 2,
            completions: [7, 1, 1, 0],
            ..VscsiStats::default()
        };
        let v: Value = serde_json::from_str(&vscsi_stats(&s)).expect("valid JSON");
        assert_eq!(v["vscsi"]["probes"], 2);
        assert_eq!(v["vscsi"]["completions"]["sense"], 1);
    }
}
