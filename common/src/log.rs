//! Logging for the daemon processes, in the manner of base log.c: to stderr
//! in the foreground (`-d`), to syslog(3) (LOG_DAEMON) otherwise. Debug
//! messages show only when verbose (`-v`, `iscsictl log verbose`).
//!
//! openlog(3) is called with LOG_NDELAY before the processes chroot, so the
//! log socket stays usable inside /var/empty (OpenBSD uses sendsyslog(2)
//! and needs no socket at all).

use std::ffi::CString;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Logger {
    foreground: bool,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();
static PROCNAME: OnceLock<&'static str> = OnceLock::new();
static VERBOSE: AtomicBool = AtomicBool::new(false);

/// Starts logging. `ident` names the program in syslog.
pub fn init(ident: &'static str, foreground: bool, verbose: bool) {
    if !foreground {
        openlog(ident);
    }
    let logger = LOGGER.get_or_init(|| Logger { foreground });
    // A second init (tests) keeps the first logger.
    let _ = log::set_logger(logger);
    set_verbose(verbose);
}

/// Names the process in every line ("engine", "relay"), like log_procname.
pub fn set_procname(name: &'static str) {
    let _ = PROCNAME.set(name);
}

/// Turns debug messages on or off at run time.
pub fn set_verbose(v: bool) {
    VERBOSE.store(v, Ordering::Relaxed);
    log::set_max_level(if v {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    });
}

pub fn verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed)
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let msg = match PROCNAME.get() {
            Some(p) => format!("{p}: {}", r.args()),
            None => format!("{}", r.args()),
        };
        if self.foreground {
            let _ = writeln!(std::io::stderr().lock(), "{msg}");
        } else {
            syslog(r.level(), &msg);
        }
    }

    fn flush(&self) {}
}

fn openlog(ident: &'static str) {
    // openlog(3) keeps the pointer, so the string must live forever.
    static IDENT: OnceLock<CString> = OnceLock::new();
    let ident = IDENT.get_or_init(|| CString::new(ident).unwrap_or_default());
    // SAFETY: ident is a NUL-terminated string that lives for the whole
    // program, as openlog(3) requires.
    unsafe {
        libc::openlog(
            ident.as_ptr(),
            libc::LOG_PID | libc::LOG_NDELAY,
            libc::LOG_DAEMON,
        )
    };
}

fn syslog(level: Level, msg: &str) {
    let prio = match level {
        Level::Error => libc::LOG_ERR,
        Level::Warn => libc::LOG_WARNING,
        Level::Info => libc::LOG_INFO,
        Level::Debug | Level::Trace => libc::LOG_DEBUG,
    };
    // Interior NULs cannot come from our format strings; drop them if a
    // peer's string smuggled one in.
    let Ok(c) = CString::new(msg.replace('\0', "")) else {
        return;
    };
    // SAFETY: "%s" with one valid NUL-terminated string argument.
    unsafe { libc::syslog(prio, c"%s".as_ptr(), c.as_ptr()) };
}
