//! Ctrl-C and SIGTERM for work that must undo what it did (restore, drill): a [`Stop`]
//! token that the signal listener trips and the work checks, and the test hook that
//! pauses at named points (compiled only with the cargo feature `test-hooks`).

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::error::Error;

/// Tripped once by a signal (or by hand); cheap to clone and to check.
#[derive(Clone, Default)]
pub struct Stop(Arc<Inner>);

#[derive(Default)]
struct Inner {
    signal: AtomicI32,
    notify: Notify,
}

impl std::fmt::Debug for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Stop({:?})", self.signal())
    }
}

impl Stop {
    /// A token that SIGINT or SIGTERM trips from now on. Once installed, those signals
    /// no longer end the process: the work stops, undoes what it did and returns.
    pub fn on_signals() -> Result<Stop, Error> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut int = signal(SignalKind::interrupt())
            .map_err(Error::io("cannot install the SIGINT handler"))?;
        let mut term = signal(SignalKind::terminate())
            .map_err(Error::io("cannot install the SIGTERM handler"))?;
        let stop = Stop::default();
        let s = stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    Some(()) = int.recv() => s.trip(libc::SIGINT),
                    Some(()) = term.recv() => s.trip(libc::SIGTERM),
                    else => break,
                }
            }
        });
        Ok(stop)
    }

    /// Records the first signal and wakes every waiter.
    pub fn trip(&self, signal: i32) {
        let _ = self
            .0
            .signal
            .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    /// The signal that tripped it, if any.
    pub fn signal(&self) -> Option<i32> {
        match self.0.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }

    pub fn is_set(&self) -> bool {
        self.signal().is_some()
    }

    /// Waits until tripped; returns the signal.
    pub async fn wait(&self) -> i32 {
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(s) = self.signal() {
                return s;
            }
            notified.await;
        }
    }

    /// `Err(Error::Interrupted)` once tripped (what was undone is filled in later).
    pub fn check(&self) -> Result<(), Error> {
        match self.signal() {
            Some(signal) => Err(Error::Interrupted {
                signal,
                undone: String::new(),
            }),
            None => Ok(()),
        }
    }
}

/// "SIGINT", "SIGTERM", or "signal N".
pub fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        n => format!("signal {n}"),
    }
}

/// The shell's exit status for death by `signal`: 130 for SIGINT, 143 for SIGTERM.
pub fn exit_code(signal: i32) -> u8 {
    (128 + signal).clamp(0, 255) as u8
}

/// Test hook: when `OPSCTL_TEST_PAUSE_AT` names `point` (a comma-separated list is fine),
/// says `opsctl: test hook: paused at POINT` on stderr and waits there until `stop` is
/// tripped (or an hour passed), so a test can signal the process at exactly that point.
/// Does nothing unless built with the `test-hooks` feature.
pub async fn pause_at(point: &str, stop: &Stop) {
    #[cfg(feature = "test-hooks")]
    if pause_wanted(point) {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
            _ = stop.wait() => {}
        }
    }
    #[cfg(not(feature = "test-hooks"))]
    let _ = (point, stop);
}

/// [`pause_at`] for code running on a blocking thread.
pub fn pause_at_blocking(point: &str, stop: &Stop) {
    #[cfg(feature = "test-hooks")]
    if pause_wanted(point) {
        let t0 = std::time::Instant::now();
        while !stop.is_set() && t0.elapsed().as_secs() < 3600 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    #[cfg(not(feature = "test-hooks"))]
    let _ = (point, stop);
}

#[cfg(feature = "test-hooks")]
fn pause_wanted(point: &str) -> bool {
    let wanted = std::env::var("OPSCTL_TEST_PAUSE_AT")
        .map(|v| v.split(',').any(|p| p.trim() == point))
        .unwrap_or(false);
    if wanted {
        eprintln!("opsctl: test hook: paused at {point}");
    }
    wanted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tripped_stop_wakes_waiters_and_keeps_the_first_signal() {
        let stop = Stop::default();
        assert!(stop.check().is_ok());
        let s = stop.clone();
        let waiter = tokio::spawn(async move { s.wait().await });
        tokio::task::yield_now().await;
        stop.trip(libc::SIGTERM);
        stop.trip(libc::SIGINT);
        assert_eq!(waiter.await.unwrap(), libc::SIGTERM);
        assert_eq!(stop.wait().await, libc::SIGTERM);
        assert!(matches!(
            stop.check(),
            Err(Error::Interrupted { signal, .. }) if signal == libc::SIGTERM
        ));
        assert_eq!(exit_code(libc::SIGINT), 130);
        assert_eq!(exit_code(libc::SIGTERM), 143);
    }
}
