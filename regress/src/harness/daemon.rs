//! iscsid started for a test (in the foreground, logging to a file), and
//! iscsictl run against it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{bin, wait_for, Scratch};

pub struct Daemon {
    child: Option<Child>,
    pub socket: PathBuf,
    pub log: PathBuf,
    pub dir: Scratch,
}

impl Daemon {
    /// Starts `iscsid -d -v -n device -s socket` and waits for its socket.
    pub fn start(device: &Path) -> Daemon {
        Self::start_args(device, &[])
    }

    pub fn start_args(device: &Path, extra: &[&str]) -> Daemon {
        super::require_root();
        let dir = Scratch::new("iscsid");
        let socket = dir.join("iscsid.sock");
        let log = dir.join("iscsid.log");
        // O_APPEND: three processes write here, each line must land at the end.
        let logf = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let child = Command::new(bin("iscsid"))
            .arg("-dv")
            .arg("-n")
            .arg(device)
            .arg("-s")
            .arg(&socket)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("log"))
            .stderr(logf)
            .spawn()
            .expect("spawn iscsid (build it first: cargo build --workspace --bins)");
        let d = Daemon {
            child: Some(child),
            socket,
            log,
            dir,
        };
        let up = wait_for(Duration::from_secs(10), || {
            std::os::unix::net::UnixStream::connect(&d.socket).ok()
        });
        assert!(up.is_some(), "iscsid did not come up:\n{}", d.log_text());
        d
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A control client for this daemon, with its own config file.
    pub fn ctl(&self) -> Ctl {
        Ctl {
            socket: self.socket.clone(),
            config: self.dir.join("iscsi.conf"),
        }
    }

    /// PIDs of the relay and the engine (the daemon's children).
    pub fn children(&self) -> Vec<u32> {
        let me = self.pid();
        let mut out = Vec::new();
        if let Ok(rd) = fs::read_dir("/proc") {
            for e in rd.flatten() {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                // pid (comm) state ppid ...
                let ppid = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .and_then(|p| p.parse::<u32>().ok());
                if ppid == Some(me) {
                    out.push(pid);
                }
            }
        }
        out
    }

    /// SIGTERM and wait; returns the exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let st = wait_for(Duration::from_secs(15), || child.try_wait().ok().flatten());
        match st {
            Some(s) => s.code(),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                None
            }
        }
    }

    /// Whether the daemon process is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
            if wait_for(Duration::from_secs(10), || c.try_wait().ok().flatten()).is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!("---- iscsid log ----\n{}", self.log_text());
        }
    }
}

pub struct Ctl {
    pub socket: PathBuf,
    pub config: PathBuf,
}

impl Ctl {
    /// Writes iscsi.conf (mode 0600, as it may hold secrets).
    pub fn write_config(&self, text: &str) {
        fs::write(&self.config, text).expect("write config");
        fs::set_permissions(&self.config, fs::Permissions::from_mode(0o600)).expect("chmod");
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(bin("iscsictl"))
            .arg("-s")
            .arg(&self.socket)
            .arg("-f")
            .arg(&self.config)
            .args(args)
            .output()
            .expect("run iscsictl")
    }

    /// Runs and insists on success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "iscsictl {args:?} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}
