//! A deliberately misbehaving iSCSI target for integration tests.
//!
//! Real targets (tgtd, istgt) never corrupt a digest, skip a DataSN or
//! answer for a task that does not exist on purpose; this one does, when
//! told to. Otherwise it is a plain target: two portals on loopback, login
//! with AuthMethod None and every operational key answered, RAM disk LUNs,
//! and the SCSI commands the emulated kernel sends. Each connection runs
//! on its own thread; [`Fault`]s are armed from the test and fire once, on
//! whichever connection meets them first.

mod conn;
mod scsi;

use std::io;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub use scsi::BLOCK;

/// The one target name this target serves.
pub const IQN_BAD: &str = "iqn.2026-11.org.example:bad";

/// A misbehaviour, armed with [`BadTarget::arm`], fired once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The next Data-In with data goes out with a wrong data digest
    /// (waits for a connection with DataDigest=CRC32C).
    CorruptDataDigest,
    /// Before answering the next READ, a Data-In for an ITT never issued.
    StrayDataIn,
    /// Before answering the next READ, a SCSI Response for an ITT never
    /// issued.
    StrayResponse,
    /// The next READ's Data-In PDUs skip DataSN 1.
    SkipDataSn,
    /// The connection closes when the next READ arrives.
    DropOnRead,
    /// The connection closes during the next WRITE: right when the
    /// command arrives, or (`persist`) after its data reached the disk
    /// but before the status went out.
    DropMidWrite { persist: bool },
    /// Async event 1: the target asks for a logout.
    AsyncLogout,
    /// Async event 2: the target drops the connection.
    AsyncDrop,
    /// The next READ or WRITE gets no answer, and nothing else is read
    /// from the connection, for this long.
    Stall(Duration),
    /// The next READ is swallowed: never answered, while the connection
    /// goes on answering pings (a target whose disk hangs).
    SwallowRead,
    /// The next task management request with this function gets no
    /// answer at all.
    IgnoreTmf { function: u8 },
    /// The next task management request with this function is answered
    /// with this response code.
    AnswerTmf { function: u8, response: u8 },
}

impl Fault {
    /// Faults sent on their own, not in answer to a command.
    fn unprompted(&self) -> bool {
        matches!(self, Fault::AsyncLogout | Fault::AsyncDrop)
    }
}

/// How the target answers when nothing is armed.
#[derive(Debug, Clone)]
pub struct BadConfig {
    /// (LUN, size in blocks) of the RAM disks at start.
    pub luns: Vec<(u32, u64)>,
    /// Pick CRC32C for both digests when the initiator offers it.
    pub digests: bool,
    /// Our MaxRecvDataSegmentLength.
    pub max_recv_dsl: u32,
    /// Largest Data-In data segment we send (also bounded by the
    /// initiator's MaxRecvDataSegmentLength), so reads take several PDUs.
    pub data_in_chunk: u32,
    /// MaxBurstLength we accept (also the R2T size).
    pub max_burst: u32,
}

impl Default for BadConfig {
    fn default() -> Self {
        BadConfig {
            luns: vec![(0, 16384)],
            digests: false,
            max_recv_dsl: 65536,
            data_in_chunk: 8192,
            max_burst: 65536,
        }
    }
}

/// One successful login (full feature phase reached).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRecord {
    /// 0 for the first portal, 1 for the second.
    pub portal: usize,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub header_digest: bool,
    pub data_digest: bool,
}

#[derive(Debug, Default)]
struct State {
    luns: scsi::Luns,
    armed: Vec<Fault>,
    fired: Vec<Fault>,
    /// Logins on the first portal go to the second: permanent or not.
    redirect: Option<bool>,
    logins: Vec<LoginRecord>,
    notes: Vec<String>,
    next_tsih: u16,
    connections: u32,
}

struct Shared {
    cfg: BadConfig,
    ports: [u16; 2],
    st: Mutex<State>,
    stop: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking connection thread must not take the others down.
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn note(&self, s: String) {
        self.state().notes.push(s);
    }

    /// Takes the first armed fault `pred` accepts.
    fn take(&self, pred: impl Fn(&Fault) -> bool) -> Option<Fault> {
        let mut st = self.state();
        let i = st.armed.iter().position(pred)?;
        let f = st.armed.remove(i);
        st.fired.push(f.clone());
        st.notes.push(format!("fault fired: {f:?}"));
        Some(f)
    }
}

/// The running target; stops (and closes every connection) on drop.
pub struct BadTarget {
    /// The first portal (the one to configure); `port2` is the second,
    /// where redirects point.
    pub port: u16,
    pub port2: u16,
    sh: Arc<Shared>,
    listeners: Vec<JoinHandle<()>>,
}

impl BadTarget {
    pub fn start(cfg: BadConfig) -> io::Result<BadTarget> {
        let l1 = TcpListener::bind(("127.0.0.1", 0))?;
        let l2 = TcpListener::bind(("127.0.0.1", 0))?;
        let ports = [l1.local_addr()?.port(), l2.local_addr()?.port()];
        let mut st = State {
            next_tsih: 1,
            ..State::default()
        };
        for &(lun, blocks) in &cfg.luns {
            st.luns.disks.insert(lun, vec![0; blocks as usize * BLOCK]);
        }
        let sh = Arc::new(Shared {
            cfg,
            ports,
            st: Mutex::new(st),
            stop: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
        });
        let mut listeners = Vec::new();
        for (portal, l) in [l1, l2].into_iter().enumerate() {
            l.set_nonblocking(true)?;
            let sh = Arc::clone(&sh);
            listeners.push(
                thread::Builder::new()
                    .name(format!("badtarget-accept{portal}"))
                    .spawn(move || accept_loop(sh, l, portal))?,
            );
        }
        Ok(BadTarget {
            port: ports[0],
            port2: ports[1],
            sh,
            listeners,
        })
    }

    /// Arms a fault; it fires once.
    pub fn arm(&self, f: Fault) {
        self.sh.state().armed.push(f);
    }

    /// Faults armed and not fired yet.
    pub fn armed(&self) -> Vec<Fault> {
        self.sh.state().armed.clone()
    }

    pub fn fired(&self) -> Vec<Fault> {
        self.sh.state().fired.clone()
    }

    /// Sends logins on the first portal to the second one, with status
    /// 0x0101 (moved temporarily) or 0x0102 (permanently); None stops it.
    pub fn redirect(&self, permanent: Option<bool>) {
        self.sh.state().redirect = permanent;
    }

    /// Adds a RAM disk LUN and raises REPORTED LUNS DATA HAS CHANGED.
    pub fn add_lun(&self, lun: u32, blocks: u64) {
        let mut st = self.sh.state();
        st.luns.disks.insert(lun, vec![0; blocks as usize * BLOCK]);
        st.luns.unit_attention = true;
    }

    /// Takes a LUN away without a word (as an admin would while the
    /// initiator is disconnected).
    pub fn remove_lun(&self, lun: u32) {
        self.sh.state().luns.disks.remove(&lun);
    }

    /// Changes a LUN's size without a word, keeping what fits.
    pub fn resize_lun(&self, lun: u32, blocks: u64) {
        if let Some(d) = self.sh.state().luns.disks.get_mut(&lun) {
            d.resize(blocks as usize * BLOCK, 0);
        }
    }

    /// `len` bytes at byte `offset` of LUN `lun`'s RAM disk.
    pub fn disk(&self, lun: u32, offset: usize, len: usize) -> Option<Vec<u8>> {
        let st = self.sh.state();
        let d = st.luns.disks.get(&lun)?;
        d.get(offset..offset.checked_add(len)?).map(<[u8]>::to_vec)
    }

    /// Writes straight to the RAM disk, behind the initiator's back.
    pub fn fill(&self, lun: u32, offset: usize, data: &[u8]) {
        let mut st = self.sh.state();
        if let Some(area) = st
            .luns
            .disks
            .get_mut(&lun)
            .and_then(|d| d.get_mut(offset..offset.checked_add(data.len())?))
        {
            area.copy_from_slice(data);
        }
    }

    pub fn logins(&self) -> Vec<LoginRecord> {
        self.sh.state().logins.clone()
    }

    /// TCP connections accepted on either portal.
    pub fn connections(&self) -> u32 {
        self.sh.state().connections
    }

    /// What the target did, in order (faults fired, refusals, oddities).
    pub fn notes(&self) -> Vec<String> {
        self.sh.state().notes.clone()
    }

    /// Waits until no fault is armed.
    pub fn wait_fired(&self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if self.sh.state().armed.is_empty() {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits until `n` logins have completed.
    pub fn wait_logins(&self, n: usize, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if self.sh.state().logins.len() >= n {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for BadTarget {
    fn drop(&mut self) {
        self.sh.stop.store(true, Ordering::Release);
        for h in self.listeners.drain(..) {
            let _ = h.join();
        }
        let threads =
            std::mem::take(&mut *self.sh.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for h in threads {
            let _ = h.join();
        }
    }
}

fn accept_loop(sh: Arc<Shared>, l: TcpListener, portal: usize) {
    while !sh.stopped() {
        match l.accept() {
            Ok((stream, _)) => {
                sh.state().connections += 1;
                let sh2 = Arc::clone(&sh);
                let spawned = thread::Builder::new()
                    .name(format!("badtarget-conn{portal}"))
                    .spawn(move || conn::Conn::new(sh2, stream, portal).run());
                match spawned {
                    Ok(h) => sh.threads.lock().unwrap_or_else(|p| p.into_inner()).push(h),
                    Err(e) => sh.note(format!("spawn: {e}")),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                sh.note(format!("accept: {e}"));
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}
