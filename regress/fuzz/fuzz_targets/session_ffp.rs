//! A Session logged in by a well-behaved target (options from the first
//! two bytes: digests, R2T and immediate-data settings, both sides'
//! MaxRecvDataSegmentLength, queue depth), a few commands submitted, then
//! a fuzz script in the full feature phase (see `Rig::play`). The rig
//! checks that the session's own output always decodes and respects the
//! target's MaxRecvDataSegmentLength, and that every command completes
//! exactly once (or comes back from take_tasks once the session closed).
#![no_main]

use iscsid_fuzz::rig::{Options, Rig};
use iscsid_fuzz::Cursor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let mut c = Cursor::new(input);
    let mut o = Options::from_bytes(c.u8(), c.u8());
    o.chap = 0;
    let cmds = c.u8();
    let mut rig = Rig::new(o.session_config(), true);
    assert!(rig.login(&o), "scripted login failed with {o:?}");
    // Up to three commands, each picked by two bits.
    for i in 0..usize::from(cmds & 3) {
        rig.submit(cmds >> (2 + 2 * i) & 3 | (cmds & 0x40) >> 4);
    }
    rig.sent();
    rig.check_accounting();
    rig.play(&mut c);
});
