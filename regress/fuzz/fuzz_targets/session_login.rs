//! A Session in the login phase fed a fuzz script (raw bytes, framed PDUs,
//! clock steps, commands, logout; see `Rig::play`). Commands submitted
//! during the login must come back exactly once, whatever happens.
#![no_main]

use iscsid_fuzz::rig::{Options, Rig};
use iscsid_fuzz::Cursor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let mut c = Cursor::new(input);
    let o = Options::from_bytes(c.u8(), c.u8());
    // Not strict: a fuzzed login can finish in the middle of a buffer, with
    // the rest of the session's output under digests.
    let mut rig = Rig::new(o.session_config(), false);
    rig.sent();
    rig.play(&mut c);
});
