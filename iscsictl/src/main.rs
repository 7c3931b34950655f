//! iscsictl(8): control the iSCSI initiator daemon.

mod parser;
mod show;

use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::thread::sleep;
use std::time::Duration;

use common::config::{self, Config};
use common::ctl::{self, kind, DiscoverRequest, PollResult};
use common::imsg::{Imsg, ImsgBuf};
use parser::Command;

const USAGE: &str = "usage: iscsictl [-f file] [-s socket] command [argument ...]";
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
    let m = o.parse(&args).map_err(|_| USAGE.to_owned())?;
    let file = PathBuf::from(
        m.opt_str("f")
            .unwrap_or_else(|| config::DEFAULT_PATH.into()),
    );
    let socket = m.opt_str("s").unwrap_or_else(|| ctl::SOCKET.into());
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
    let mut ib = ImsgBuf::new(stream.into());
    ib.set_max_size(ctl::MAX_MSG);
    let mut c = Ctl { ib };
    match cmd {
        Command::Reload => reload(&mut c, cfg.as_ref()),
        Command::Discover { addr, port } => discover(&mut c, &addr, port, &file),
        Command::ShowSessions => show(&mut c, None, false),
        Command::ShowSession(n) => show(&mut c, Some(&n), false),
        Command::ShowSummary => show(&mut c, None, true),
        Command::ShowVscsiStats => {
            c.send(kind::VSCSI_STATS, &[])?;
            let m = c.recv()?;
            match m.kind {
                kind::STATS => {
                    let s = ctl::VscsiStats::decode(&m.data).map_err(|e| e.to_string())?;
                    print!("{}", show::vscsi_stats(&s));
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
    c.simple(kind::RELOAD, &ctl::encode_config(cfg))?;
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

fn show(c: &mut Ctl, name: Option<&str>, summary: bool) -> Result<(), String> {
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
    if summary {
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
