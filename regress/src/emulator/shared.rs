//! State shared by the public API, the accept loop and each connection's
//! reader and task threads: the open device, what is attached, counters.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::link::Conn;
use super::scsi::Inquiry;
use super::sem::lock;
use super::topo::Topo;
use super::{DetachViolation, EmuConfig, EmuError};

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) connections: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) commands: AtomicU64,
    pub(crate) completed: AtomicU64,
    pub(crate) resets: AtomicU64,
    pub(crate) bytes_read: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    pub(crate) protocol_errors: AtomicU64,
}

/// Log lines kept for `protocol_log`.
const LOG_KEEP: usize = 256;

/// State shared by the API, the accept loop and each connection's threads.
pub(crate) struct Shared {
    pub(crate) cfg: EmuConfig,
    conn: Mutex<Option<Arc<Conn>>>,
    /// Lock order: `topo` before `conn`, never the other way.
    topo: Mutex<Topo>,
    /// Signalled on every change of `topo` or of the connection.
    changed: Condvar,
    tag: AtomicU32,
    pub(crate) ctr: Counters,
    log: Mutex<VecDeque<String>>,
    violations: Mutex<Vec<DetachViolation>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    pub(crate) fn new(cfg: EmuConfig) -> Shared {
        Shared {
            cfg,
            conn: Mutex::new(None),
            topo: Mutex::new(Topo::default()),
            changed: Condvar::new(),
            tag: AtomicU32::new(1),
            ctr: Counters::default(),
            log: Mutex::new(VecDeque::new()),
            violations: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn next_tag(&self) -> u32 {
        self.tag.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn current(&self) -> Option<Arc<Conn>> {
        lock(&self.conn).clone()
    }

    pub(crate) fn topo(&self) -> MutexGuard<'_, Topo> {
        lock(&self.topo)
    }

    fn notify(&self) {
        drop(self.topo());
        self.changed.notify_all();
    }

    pub(crate) fn set_conn(&self, c: Arc<Conn>) {
        *lock(&self.conn) = Some(c);
        self.ctr.connections.fetch_add(1, Ordering::Relaxed);
        self.notify();
    }

    /// Drops `c` as the open device, if it still is.
    pub(crate) fn forget_conn(&self, c: &Conn) {
        let mut cur = lock(&self.conn);
        if cur.as_deref().is_some_and(|x| std::ptr::eq(x, c)) {
            *cur = None;
        }
        drop(cur);
        self.notify();
    }

    pub(crate) fn keep_threads(&self, hs: impl IntoIterator<Item = JoinHandle<()>>) {
        let mut v = lock(&self.threads);
        v.retain(|h| !h.is_finished());
        v.extend(hs);
    }

    /// Every thread started so far, to join.
    pub(crate) fn take_threads(&self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut *lock(&self.threads))
    }

    pub(crate) fn log_lines(&self) -> Vec<String> {
        lock(&self.log).iter().cloned().collect()
    }

    pub(crate) fn load(&self, a: &AtomicU64) -> u64 {
        a.load(Ordering::Relaxed)
    }

    pub(crate) fn note(&self, msg: String) {
        let mut log = lock(&self.log);
        if log.len() == LOG_KEEP {
            log.pop_front();
        }
        log.push_back(msg);
    }

    /// Records something the relay did that the kernel would refuse.
    pub(crate) fn protocol_error(&self, msg: String) {
        self.ctr.protocol_errors.fetch_add(1, Ordering::Relaxed);
        self.note(msg);
    }

    pub(crate) fn detach_violation(&self, v: DetachViolation) {
        self.note(format!(
            "REQDETACH {}/{} with {} command(s) of link {}/{} outstanding: {:?}",
            v.target,
            v.lun,
            v.outstanding.len(),
            v.link.0,
            v.link.1,
            v.outstanding
        ));
        lock(&self.violations).push(v);
    }

    pub(crate) fn detach_violations(&self) -> Vec<DetachViolation> {
        lock(&self.violations).clone()
    }

    pub(crate) fn has_link(&self, target: u32, lun: u32) -> bool {
        self.topo().has_link(target, lun)
    }

    pub(crate) fn link_inquiry(&self, target: u32, lun: u32) -> Option<Vec<u8>> {
        self.topo().inquiry(target, lun).map(<[u8]>::to_vec)
    }

    /// Attaches unless `conn` closed meanwhile: the check and the insert
    /// share the lock `detach_all` takes, so no stale disk survives a close.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn attach_disk(
        &self,
        conn: &Conn,
        target: u32,
        lun: u32,
        raw: Vec<u8>,
        inq: &Inquiry,
        openings: usize,
        block_size: u32,
        blocks: u64,
    ) {
        let mut t = self.topo();
        if conn.is_alive() && !t.has_link(target, lun) {
            t.attach_disk(target, lun, raw, inq, openings, block_size, blocks);
        }
        drop(t);
        self.changed.notify_all();
    }

    pub(crate) fn attach_device(
        &self,
        conn: &Conn,
        target: u32,
        lun: u32,
        raw: Vec<u8>,
        inq: &Inquiry,
        openings: usize,
    ) {
        let mut t = self.topo();
        if conn.is_alive() && !t.has_link(target, lun) {
            t.attach_device(target, lun, raw, inq, openings);
        }
        drop(t);
        self.changed.notify_all();
    }

    pub(crate) fn detach(&self, target: u32, lun: u32) {
        // Links are named by what the bus holds: never a wildcard here.
        if let (Ok(t), Ok(l)) = (i32::try_from(target), i32::try_from(lun)) {
            self.topo().detach(t, l);
        }
        self.changed.notify_all();
    }

    pub(crate) fn detach_all(&self) {
        self.topo().clear();
        self.changed.notify_all();
    }

    pub(crate) fn task_done(&self) {
        self.topo().tasks_done += 1;
        self.changed.notify_all();
    }

    /// Waits until `f` on the topology gives `Some`.
    pub(crate) fn wait_for<T>(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&Topo) -> Option<T>,
    ) -> Result<T, EmuError> {
        let deadline = Instant::now() + timeout;
        let mut t = self.topo();
        loop {
            if let Some(v) = f(&t) {
                return Ok(v);
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .ok_or(EmuError::Timeout)?;
            t = self
                .changed
                .wait_timeout(t, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}
