//! iscsictl(8): control the iSCSI initiator daemon.

mod json;
mod parser;
mod show;

use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::thread::sleep;
use std::time::Duration;

use common::config::{self, Config};
use common::ctl::{self, kind, DiscoverRequest, PollResult, ReloadResult};
use common::imsg::{Imsg, ImsgBuf};
use parser::Command;

const USAGE: &str = "usage: iscsictl [-j] [-f file] [-s socket] command [argument ...]";
const POLL_ATTEMPTS: u32 = 10;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("iscsictl: {msg}");
            }
            ExitCode::from(1)
        }
    }
}

struct Ctl {
    ib: ImsgBuf,
}

impl Ctl {
    /// The control connection. iscsictl is pledged without "recvfd", so
    /// it reads with read(2) and never accepts a descriptor: the kernel
    /// discards any the daemon passes instead of killing iscsictl, and a
    /// message that announces one is an error.
    fn new(stream: UnixStream) -> Ctl {
        let mut ib = ImsgBuf::new(stream.into());
        ib.set_max_size(ctl::MAX_MSG);
        ib.refuse_fds();
        Ctl { ib }
    }

    fn send(&mut self, k: u32, data: &[u8]) -> Result<(), String> {
        self.ib
            .compose(k, 0, std::process::id(), data, None)
            .and_then(|()| self.ib.write_all())
            .map_err(|e| format!("control socket: {e}"))
    }

    fn recv(&mut self) -> Result<Imsg, String> {
        match self.ib.recv_blocking() {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err("connection to iscsid closed".into()),
            Err(common::imsg::Error::MissingFd) => {
                Err("control socket: iscsid sent a file descriptor; iscsictl accepts none".into())
            }
            Err(e) => Err(format!("control socket: {e}")),
        }
    }

    /// Sends a request that is answered with OK or FAIL.
    fn simple(&mut self, k: u32, data: &[u8]) -> Result<(), String> {
        self.send(k, data)?;
        let m = self.recv()?;
        match m.kind {
            kind::OK => {
                println!("command successful");
                Ok(())
            }
            kind::FAIL => Err(format!("command failed: {}", ctl::decode_text(&m.data))),
            k => Err(format!("unexpected reply {k}")),
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut o = getopts::Options::new();
    o.parsing_style(getopts::ParsingStyle::StopAtFirstFree);
    o.optopt("f", "", "configuration file", "file");
    o.optopt("s", "", "control socket", "socket");
    o.optflag("j", "", "show as JSON");
    let m = o.parse(&args).map_err(|_| USAGE.to_owned())?;
    let file = PathBuf::from(
        m.opt_str("f")
            .unwrap_or_else(|| config::DEFAULT_PATH.into()),
    );
    let socket = m.opt_str("s").unwrap_or_else(|| ctl::SOCKET.into());
    let out = if m.opt_present("j") {
        Output::Json
    } else {
        Output::Text
    };
    if m.free.is_empty() {
        return Err(USAGE.to_owned());
    }
    let cmd = parser::parse(&m.free).map_err(|e| e.to_string())?;

    // Like base: the configuration is read and checked before anything is
    // sent, so a broken file changes nothing.
    let cfg = match &cmd {
        Command::Reload => Some(load(&file)?),
        _ => None,
    };
    let stream = UnixStream::connect(&socket).map_err(|e| format!("connect: {socket}: {e}"))?;
    if let Err(e) = common::sandbox::pledge("stdio rpath dns") {
        return Err(format!("pledge: {e}"));
    }
    let mut c = Ctl::new(stream);
    match cmd {
        Command::Reload => reload(&mut c, cfg.as_ref()),
        Command::Discover { addr, port } => discover(&mut c, &addr, port, &file),
        Command::ShowSessions => show(&mut c, None, false, out),
        Command::ShowSession(n) => show(&mut c, Some(&n), false, out),
        Command::ShowSummary => show(&mut c, None, true, out),
        Command::ShowVscsiStats => {
            c.send(kind::VSCSI_STATS, &[])?;
            let m = c.recv()?;
            match m.kind {
                kind::STATS => {
                    let s = ctl::VscsiStats::decode(&m.data).map_err(|e| e.to_string())?;
                    match out {
                        Output::Json => println!("{}", json::vscsi_stats(&s)),
                        Output::Text => print!("{}", show::vscsi_stats(&s)),
                    }
                    Ok(())
                }
                kind::FAIL => Err(format!("command failed: {}", ctl::decode_text(&m.data))),
                k => Err(format!("unexpected reply {k}")),
            }
        }
        Command::LogVerbose => c.simple(kind::LOG_VERBOSE, &ctl::encode_bool(true)),
        Command::LogBrief => c.simple(kind::LOG_VERBOSE, &ctl::encode_bool(false)),
    }
}

fn load(file: &std::path::Path) -> Result<Config, String> {
    config::parse_file(file).map_err(|errs| {
        for e in errs {
            eprintln!("{e}");
        }
        "errors while loading configuration file.".to_owned()
    })
}

fn reload(c: &mut Ctl, cfg: Option<&Config>) -> Result<(), String> {
    let Some(cfg) = cfg else {
        return Err("no configuration".into());
    };
    c.send(kind::RELOAD, &ctl::encode_config(cfg))?;
    let m = c.recv()?;
    let result = match m.kind {
        // A daemon that started every block, or one older than
        // RELOAD_RESULT.
        kind::OK => ReloadResult::default(),
        kind::RELOAD_RESULT => ReloadResult::decode(&m.data).map_err(|e| e.to_string())?,
        kind::FAIL => return Err(format!("command failed: {}", ctl::decode_text(&m.data))),
        k => return Err(format!("unexpected reply {k}")),
    };
    println!("command successful");
    for n in &result.not_started {
        eprintln!("iscsictl: {}", show::not_started(n));
    }
    // The blocks that did start are still worth waiting for.
    settle(c)?;
    if result.not_started.is_empty() {
        Ok(())
    } else {
        // Already reported, line by line.
        Err(String::new())
    }
}

/// Waits for the sessions to log in or fail once, as base iscsictl does.
fn settle(c: &mut Ctl) -> Result<(), String> {
    print!("waiting for config to settle..");
    let mut last = PollResult::default();
    for _ in 0..POLL_ATTEMPTS {
        c.send(kind::POLL, &[])?;
        let m = c.recv()?;
        if m.kind != kind::POLL_RESULT {
            return Err(format!("unexpected reply {}", m.kind));
        }
        last = PollResult::decode(&m.data).map_err(|e| e.to_string())?;
        if last.settled() {
            println!("ok");
            return Ok(());
        }
        print!(".");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        sleep(Duration::from_secs(1));
    }
    println!("giving up.");
    print!("{}", show::poll_failure(&last));
    Ok(())
}

/// How `show` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    Text,
    Json,
}

fn show(c: &mut Ctl, name: Option<&str>, summary: bool, out: Output) -> Result<(), String> {
    c.send(kind::SHOW, &[])?;
    let mut list = Vec::new();
    loop {
        let m = c.recv()?;
        match m.kind {
            kind::SESSION => {
                list.push(ctl::SessionInfo::decode(&m.data).map_err(|e| e.to_string())?)
            }
            kind::END => break,
            kind::FAIL => return Err(format!("command failed: {}", ctl::decode_text(&m.data))),
            k => return Err(format!("unexpected reply {k}")),
        }
    }
    if let Some(n) = name {
        list.retain(|s| s.name == n);
        if list.is_empty() {
            return Err(format!("no session named {n}"));
        }
    }
    if out == Output::Json {
        println!("{}", json::sessions(&list));
    } else if summary {
        print!("{}", show::summary(&list));
    } else {
        for (i, s) in list.iter().enumerate() {
            if i > 0 {
                println!();
            }
            print!("{}", show::session(s));
        }
    }
    Ok(())
}

/// "host", "host:port", "[v6]:port" or a bare IPv6 address, with the port
/// of a `port` argument if there was one (the parser made sure the address
/// has none then), else 3260.
fn resolve(addr: &str, port: Option<u16>) -> Result<SocketAddr, String> {
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return Ok(sa);
    }
    let port = port.unwrap_or(config::DEFAULT_PORT);
    if let Ok(ip) = addr
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
    {
        return Ok(SocketAddr::new(ip, port));
    }
    let with_port = if parser::has_port(addr) {
        addr.to_owned()
    } else {
        format!("{addr}:{port}")
    };
    with_port
        .to_socket_addrs()
        .map_err(|e| format!("parse_host: {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("parse_host: {addr}: no address"))
}

fn discover(
    c: &mut Ctl,
    addr: &str,
    port: Option<u16>,
    file: &std::path::Path,
) -> Result<(), String> {
    let sa = resolve(addr, port)?;
    // The global settings of iscsi.conf (initiator name, CHAP) apply if the
    // file is there; discovery works without one.
    let cfg = if file.exists() {
        load(file)?
    } else {
        Config::default()
    };
    let params = cfg.defaults.clone();
    let req = DiscoverRequest {
        addr: sa,
        initiatorname: cfg.initiatorname.clone(),
        params,
    };
    println!("discover {sa}");
    c.send(kind::DISCOVER, &req.encode())?;
    loop {
        let m = c.recv()?;
        match m.kind {
            kind::DISCOVERED => {
                let d = ctl::Discovered::decode(&m.data).map_err(|e| e.to_string())?;
                print!("{}", show::discovered(&d));
            }
            kind::END => return Ok(()),
            kind::FAIL => return Err(format!("discovery failed: {}", ctl::decode_text(&m.data))),
            k => return Err(format!("unexpected reply {k}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::ctl::{NotStarted, NotStartedReason};

    /// Runs `reload` against a daemon that answers RELOAD with
    /// (`reply_kind`, `reply`) and every POLL with "settled".
    fn reload_against(reply_kind: u32, reply: Vec<u8>) -> Result<(), String> {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let daemon = std::thread::spawn(move || {
            let mut ib = ImsgBuf::new(theirs.into());
            ib.set_max_size(ctl::MAX_MSG);
            let m = ib.recv_blocking().unwrap().unwrap();
            assert_eq!(m.kind, kind::RELOAD);
            assert_eq!(ctl::decode_config(&m.data).unwrap(), Config::default());
            ib.compose(reply_kind, 0, 0, &reply, None).unwrap();
            ib.write_all().unwrap();
            let settled = PollResult {
                sessions: 1,
                logged_in: 1,
                ..PollResult::default()
            };
            while let Ok(Some(m)) = ib.recv_blocking() {
                assert_eq!(m.kind, kind::POLL);
                ib.compose(kind::POLL_RESULT, 0, 0, &settled.encode(), None)
                    .unwrap();
                ib.write_all().unwrap();
            }
        });
        let mut c = Ctl::new(ours);
        let r = reload(&mut c, Some(&Config::default()));
        drop(c);
        daemon.join().unwrap();
        r
    }

    #[test]
    fn reload_takes_the_old_ok_and_the_new_result() {
        assert_eq!(reload_against(kind::OK, Vec::new()), Ok(()));
        assert_eq!(
            reload_against(kind::RELOAD_RESULT, ReloadResult::default().encode()),
            Ok(())
        );
    }

    #[test]
    fn reload_fails_when_a_block_was_not_started() {
        let r = ReloadResult {
            not_started: vec![NotStarted {
                name: "disk9".into(),
                reason: NotStartedReason::NoFreeVscsiTarget,
            }],
        };
        // The lines are printed by reload itself; the status is 1 with no
        // further message.
        assert_eq!(
            reload_against(kind::RELOAD_RESULT, r.encode()),
            Err(String::new())
        );
    }

    #[test]
    fn reload_reports_failures_and_garbage() {
        assert_eq!(
            reload_against(kind::FAIL, b"no".to_vec()),
            Err("command failed: no".into())
        );
        assert_eq!(
            reload_against(kind::RELOAD_RESULT, vec![0, 0, 0, 1]),
            Err("bad control message: truncated message: need 4 bytes, have 0".into())
        );
        assert_eq!(
            reload_against(kind::END, Vec::new()),
            Err(format!("unexpected reply {}", kind::END))
        );
    }

    /// A daemon that answers LOG_VERBOSE with OK, `with_fd` the write end
    /// of a pipe passed along. Returns what `simple` made of it and
    /// whether the pipe's read end then saw end of file, that is, whether
    /// no copy of the write end was left open in iscsictl.
    fn log_verbose_against(with_fd: bool) -> (Result<(), String>, bool) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let (pr, pw) = nix::unistd::pipe().unwrap();
        let daemon = std::thread::spawn(move || {
            let mut ib = ImsgBuf::new(theirs.into());
            let m = ib.recv_blocking().unwrap().unwrap();
            assert_eq!(m.kind, kind::LOG_VERBOSE);
            let fd = with_fd.then_some(pw);
            ib.compose(kind::OK, 0, 0, &[], fd).unwrap();
            ib.compose(kind::OK, 0, 0, &[], None).unwrap();
            ib.write_all().unwrap();
            // Waits for iscsictl to hang up.
            while let Ok(Some(_)) = ib.recv_blocking() {}
        });
        let mut c = Ctl::new(ours);
        let first = c.simple(kind::LOG_VERBOSE, &ctl::encode_bool(true));
        // The stream stays framed: the next reply is read normally.
        assert_eq!(c.recv().map(|m| m.kind), Ok(kind::OK));
        drop(c);
        daemon.join().unwrap();
        let mut buf = [0u8; 1];
        let eof = nix::unistd::read(&pr, &mut buf).unwrap() == 0;
        (first, eof)
    }

    #[test]
    fn a_passed_descriptor_is_refused_not_accepted() {
        let (r, eof) = log_verbose_against(true);
        let e = r.unwrap_err();
        assert!(e.contains("file descriptor"), "{e}");
        assert!(eof, "iscsictl kept the passed descriptor");
        assert_eq!(log_verbose_against(false), (Ok(()), true));
    }
}
