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
    free: Mutex<usize>,
    cv: Condvar,
}

/// One opening; handed back on drop.
pub(crate) struct Permit(Arc<Sem>);

impl Sem {
    pub(crate) fn new(n: usize) -> Arc<Sem> {
        Arc::new(Sem {
            free: Mutex::new(n),
            cv: Condvar::new(),
        })
    }

    /// Takes an opening, waiting until `deadline` at most.
    pub(crate) fn acquire(self: &Arc<Self>, deadline: Instant) -> Option<Permit> {
        let mut free = lock(&self.free);
        loop {
            if *free > 0 {
                *free -= 1;
                return Some(Permit(Arc::clone(self)));
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            free = self
                .cv
                .wait_timeout(free, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    #[cfg(test)]
    pub(crate) fn available(&self) -> usize {
        *lock(&self.free)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        *lock(&self.0.free) += 1;
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
        assert!(s.acquire(soon()).is_none());
        assert!(t0.elapsed() >= Duration::from_millis(25));
        drop(a);
        assert_eq!(s.available(), 1);
        assert!(s.acquire(soon()).is_some());
    }

    #[test]
    fn release_wakes_a_waiter() {
        let s = Sem::new(1);
        let p = s.acquire(Instant::now()).unwrap();
        let s2 = Arc::clone(&s);
        let t = thread::spawn(move || {
            s2.acquire(Instant::now() + Duration::from_secs(10))
                .is_some()
        });
        thread::sleep(Duration::from_millis(20));
        drop(p);
        assert!(t.join().unwrap());
    }
}
