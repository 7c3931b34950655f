//! common::config::parse_str on arbitrary UTF-8. A configuration that
//! parses must survive the control channel's encoding unchanged.
#![no_main]

use common::config::parse_str;
use common::ctl::{decode_config, encode_config};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    match parse_str(text, "fuzz.conf") {
        Ok(cfg) => {
            let wire = encode_config(&cfg);
            assert_eq!(
                decode_config(&wire),
                Ok(cfg),
                "config changed over the wire"
            );
        }
        Err(errs) => {
            assert!(!errs.is_empty(), "failure without an error");
            for e in &errs {
                let _ = e.to_string();
            }
        }
    }
});
