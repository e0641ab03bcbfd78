//! A named background thread that stops when its owner drops it.
//!
//! The watch folder, the serial link, the capture device, the alert, the DICOM listener and
//! the PACS outbox each run a loop on a thread of their own. They all stop the same way: the
//! owner sets a flag, the loop sees it within a few tens of milliseconds (a poll of a few
//! hundred), and the owner waits for the thread to end, so no file, port or line is left
//! half used when the daemon exits. Those that retry something that went away (the serial
//! port, the capture device, the PACS) share one [`Backoff`].

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::base::logging::Failing;

/// A running thread; dropping it asks the loop to stop and waits for it.
pub struct Worker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Run `body` on a thread called `name`. `body` gets the stop flag and should return
    /// soon after it is set.
    pub fn spawn(name: &str, body: impl FnOnce(&AtomicBool) + Send + 'static) -> io::Result<Worker> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || body(&flag))?;
        Ok(Worker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sleep `d` in short steps, returning early once `stop` is set.
pub fn nap(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The retry policy every reconnecting loop shares (the serial port, the capture device, the
/// PACS outbox): doubling waits from one second up to a maximum, and a failure logged once
/// per run of them, not at every retry.
#[derive(Debug)]
pub struct Backoff {
    wait: Duration,
    max: Duration,
    failing: Failing,
}

impl Backoff {
    const FIRST: Duration = Duration::from_secs(1);

    pub fn new(max: Duration) -> Backoff {
        Backoff {
            wait: Backoff::FIRST,
            max: max.max(Backoff::FIRST),
            failing: Failing::default(),
        }
    }

    /// An attempt failed. True when it is the first failure of a run: log it then.
    pub fn failed(&mut self) -> bool {
        self.failing.failed()
    }

    /// An attempt worked: the next failure waits one second again. True when it ends a run
    /// of failures: log the recovery then.
    pub fn worked(&mut self) -> bool {
        self.wait = Backoff::FIRST;
        self.failing.worked()
    }

    /// Sleep the current wait (ending early on `stop`), then double it up to the maximum.
    pub fn sleep(&mut self, stop: &AtomicBool) {
        nap(self.wait, stop);
        self.wait = (self.wait * 2).min(self.max);
    }

    /// The wait the next [`Backoff::sleep`] takes.
    pub fn next_wait(&self) -> Duration {
        self.wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_maximum_logs_once_and_resets_when_it_works() {
        let stop = AtomicBool::new(true); // sleeps return at once
        let mut b = Backoff::new(Duration::from_secs(5));
        assert!(b.failed(), "the first failure is logged");
        let mut waits = Vec::new();
        for _ in 0..5 {
            assert!(!b.failed(), "later failures of the run are not");
            waits.push(b.next_wait().as_secs());
            b.sleep(&stop);
        }
        assert_eq!(waits, [1, 2, 4, 5, 5]);
        assert!(b.worked(), "the recovery is logged");
        assert_eq!(b.next_wait(), Duration::from_secs(1));
        assert!(!b.worked());
        assert!(b.failed());
    }
}
