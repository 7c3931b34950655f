//! A counting semaphore with deadlines: a link's openings (how many
//! commands the midlayer lets it have outstanding).

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// Locks, ignoring poisoning: a panicking test thread must not wedge the
/// emulator for the others.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) struct Sem {
    state: Mutex<State>,
    cv: Condvar,
}

struct State {
    free: usize,
    /// The link is being detached: waiters give up (scsi_link_shutdown
    /// wakes the processes sleeping for an xs with no io).
    shut: bool,
}

/// Why no opening was had.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NoOpening {
    Timeout,
    /// The link went (`Sem::shut`).
    Shut,
}

/// One opening; handed back on drop.
pub(crate) struct Permit(Arc<Sem>);

impl Sem {
    pub(crate) fn new(n: usize) -> Arc<Sem> {
        Arc::new(Sem {
            state: Mutex::new(State {
                free: n,
                shut: false,
            }),
            cv: Condvar::new(),
        })
    }

    /// Takes an opening, waiting until `deadline` at most.
    pub(crate) fn acquire(self: &Arc<Self>, deadline: Instant) -> Result<Permit, NoOpening> {
        let mut st = lock(&self.state);
        loop {
            if st.shut {
                return Err(NoOpening::Shut);
            }
            if st.free > 0 {
                st.free -= 1;
                return Ok(Permit(Arc::clone(self)));
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .ok_or(NoOpening::Timeout)?;
            st = self
                .cv
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Fails every waiter, now and later.
    pub(crate) fn shut(&self) {
        lock(&self.state).shut = true;
        self.cv.notify_all();
    }

    #[cfg(test)]
    pub(crate) fn available(&self) -> usize {
        lock(&self.state).free
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        lock(&self.0.state).free += 1;
        self.0.cv.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;
    use std::time::Duration;

    #[test]
    fn counts_and_times_out() {
        let s = Sem::new(2);
        let soon = || Instant::now() + Duration::from_millis(30);
        let a = s.acquire(soon()).unwrap();
        let _b = s.acquire(soon()).unwrap();
        assert_eq!(s.available(), 0);
        let t0 = Instant::now();
        assert_eq!(s.acquire(soon()).err(), Some(NoOpening::Timeout));
        assert!(t0.elapsed() >= Duration::from_millis(25));
        drop(a);
        assert_eq!(s.available(), 1);
        assert!(s.acquire(soon()).is_ok());
    }

    #[test]
    fn release_wakes_a_waiter() {
        let s = Sem::new(1);
        let p = s.acquire(Instant::now()).unwrap();
        let s2 = Arc::clone(&s);
        let t = thread::spawn(move || s2.acquire(Instant::now() + Duration::from_secs(10)).is_ok());
        thread::sleep(Duration::from_millis(20));
        drop(p);
        assert!(t.join().unwrap());
    }

    #[test]
    fn shut_fails_waiters_at_once() {
        let s = Sem::new(1);
        let _p = s.acquire(Instant::now()).unwrap();
        let s2 = Arc::clone(&s);
        let t = thread::spawn(move || s2.acquire(Instant::now() + Duration::from_secs(30)).err());
        s.shut();
        assert_eq!(t.join().unwrap(), Some(NoOpening::Shut));
        assert_eq!(s.acquire(Instant::now()).err(), Some(NoOpening::Shut));
    }
}
