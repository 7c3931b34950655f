//! The engine process's start: its descriptors (received by
//! `child::main`), its signal handling, pledge, then the event loop.

use log::error;

use super::Engine;
use crate::arena::Arena;
use crate::child::{self, Startup};
use crate::procmsg;

pub fn main(mut startup: Startup) -> i32 {
    let fds = startup.take(procmsg::CONTROL_SOCKET).and_then(|c| {
        Ok((
            c,
            startup.take(procmsg::RELAY_CHANNEL)?,
            startup.take(procmsg::ARENA)?,
        ))
    });
    let (control, relay, arena) = match fds {
        Ok(v) => v,
        Err(e) => {
            error!("{e}");
            return 1;
        }
    };
    // Mapped before pledge; the descriptor is closed once mapped.
    let arena = match Arena::map(arena) {
        Ok(a) => a,
        Err(e) => {
            error!("{e}");
            return 1;
        }
    };
    // Engine::new installs the handlers of SIGTERM, SIGINT and SIGHUP; the
    // signals stay blocked until then, so one sent during start-up waits
    // for them rather than killing the engine.
    let mut engine = match Engine::new(startup.parent, control, relay, arena) {
        Ok(e) => e,
        Err(e) => {
            error!("{e}");
            return 1;
        }
    };
    if let Err(e) = child::unblock_signals() {
        error!("{e}");
        return 1;
    }
    if let Err(e) = common::sandbox::pledge("stdio inet unix") {
        error!("pledge: {e}");
        return 1;
    }
    match engine.run() {
        Ok(()) => 0,
        Err(e) => {
            error!("{e}");
            1
        }
    }
}
