//! iscsid(8): the iSCSI initiator daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use iscsid::child::{self, Role};
use iscsid::parent::{self, Options};

const USAGE: &str = "usage: iscsid [-dv] [-n device] [-s socket] [-u user]";

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    // The parent execs each child with the role's flag first (see
    // `parent::start_child`); it is not in the usage, and not valid later.
    let role = args.first().and_then(|a| {
        Role::ALL
            .into_iter()
            .find(|r| a.strip_prefix('-') == Some(r.flag()))
    });
    let chan = match role {
        None => None,
        // Claimed before anything (syslog) opens a descriptor that could
        // take its number.
        Some(_) => match child::take_channel() {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("iscsid: {e}");
                return ExitCode::from(1);
            }
        },
    };
    if role.is_some() {
        args.remove(0);
    }
    let mut o = getopts::Options::new();
    o.parsing_style(getopts::ParsingStyle::StopAtFirstFree);
    o.optflag("d", "", "stay in the foreground, log to stderr");
    o.optflag("v", "", "verbose logging");
    o.optopt("n", "", "vscsi device or emulator socket", "device");
    o.optopt("s", "", "control socket", "socket");
    o.optopt("u", "", "unprivileged user", "user");
    let m = match o.parse(&args) {
        Ok(m) if m.free.is_empty() => m,
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(1);
        }
    };
    let opts = Options {
        debug: m.opt_present("d"),
        verbose: m.opt_present("v"),
        device: PathBuf::from(m.opt_str("n").unwrap_or_else(|| iscsid::DEVICE.into())),
        socket: PathBuf::from(m.opt_str("s").unwrap_or_else(|| common::ctl::SOCKET.into())),
        user: m
            .opt_str("u")
            .unwrap_or_else(|| iscsid::privdrop::DEFAULT_USER.into()),
    };
    common::log::init("iscsid", opts.debug, opts.verbose);
    if let (Some(role), Some(chan)) = (role, chan) {
        // The parent's -n and -s mean nothing here: the child gets
        // descriptors, not paths.
        return match child::main(role, chan, &opts.user) {
            0 => ExitCode::SUCCESS,
            _ => ExitCode::from(1),
        };
    }
    match parent::run(&opts) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            if opts.debug {
                eprintln!("iscsid: {e}");
            } else {
                // Before daemon(3) the terminal is still there; after, syslog.
                eprintln!("iscsid: {e}");
                log::error!("{e}");
            }
            ExitCode::from(1)
        }
    }
}
