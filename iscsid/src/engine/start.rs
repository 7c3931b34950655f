//! The engine process's start: its descriptors from the parent, then
//! pledge, then the event loop.

use std::os::fd::OwnedFd;

use log::error;

use super::Engine;
use crate::procmsg;
use crate::relay::startup;

pub fn main(chan: OwnedFd) -> i32 {
    let (parent, fds) = match startup(chan, &[procmsg::CONTROL_SOCKET, procmsg::RELAY_CHANNEL]) {
        Ok(v) => v,
        Err(e) => {
            error!("startup: {e}");
            return 1;
        }
    };
    let mut control = None;
    let mut relay = None;
    for (k, fd) in fds {
        match k {
            procmsg::CONTROL_SOCKET => control = Some(fd),
            _ => relay = Some(fd),
        }
    }
    let (Some(control), Some(relay)) = (control, relay) else {
        error!("startup: missing descriptors");
        return 1;
    };
    let mut engine = match Engine::new(parent, control, relay) {
        Ok(e) => e,
        Err(e) => {
            error!("{e}");
            return 1;
        }
    };
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
