//! Child processes: each step runs in its own process group so a timeout or
//! an interrupt can stop the step together with everything it started.
//!
//! Workers block in `wait()`; one watchdog thread enforces deadlines and
//! cancellation by signalling whole process groups, which keeps the per-step
//! cost at the spawn itself.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// How long a process group gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(2);

/// Every process group watched in this process, so that [`kill_everything`]
/// (a second Ctrl-C) can stop them all before dg exits.
static ALL_GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());
/// Set by [`kill_everything`]: a group registered afterwards is killed at once.
static KILLING: AtomicBool = AtomicBool::new(false);

/// Kills (SIGKILL) every running step's process group, now and for any step
/// that registers later. For a forced stop just before dg exits: without it,
/// a step that ignores SIGTERM would outlive dg.
pub fn kill_everything() {
    KILLING.store(true, Ordering::SeqCst);
    let all = ALL_GROUPS.lock().unwrap_or_else(|e| e.into_inner());
    for &pgid in all.iter() {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
}

#[derive(Debug)]
struct Entry {
    deadline: Option<Instant>,
    /// When SIGTERM was sent, if it was.
    terminated_at: Option<Instant>,
    timed_out: Arc<AtomicBool>,
}

/// Running process groups, watched for deadlines and cancellation.
#[derive(Clone, Default)]
pub struct Watchdog {
    groups: Arc<Mutex<HashMap<i32, Entry>>>,
}

/// Registration of one running process group; dropping it unregisters.
pub struct Guard {
    dog: Watchdog,
    pgid: i32,
    pub timed_out: Arc<AtomicBool>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut g = self.dog.groups.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = g.remove(&self.pgid)
            && e.terminated_at.is_some()
        {
            // Make sure nothing of the group survives (grandchildren that
            // ignored SIGTERM).
            let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGKILL);
        }
        drop(g);
        ALL_GROUPS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.pgid);
    }
}

impl Watchdog {
    /// Starts the watchdog thread, which stops when `done` is set.
    pub fn start(cancel: Arc<AtomicBool>, done: Arc<AtomicBool>) -> Watchdog {
        let dog = Watchdog::default();
        let d = dog.clone();
        std::thread::Builder::new()
            .name("dg-watchdog".into())
            .spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    d.tick(cancel.load(Ordering::Relaxed));
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
            .expect("spawn watchdog thread");
        dog
    }

    /// Watches process group `pgid` until the guard is dropped.
    pub fn watch(&self, pgid: i32, timeout: Option<Duration>) -> Guard {
        let timed_out = Arc::new(AtomicBool::new(false));
        ALL_GROUPS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pgid);
        if KILLING.load(Ordering::SeqCst) {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                pgid,
                Entry {
                    // Checked: a deadline past what the clock can hold is none.
                    deadline: timeout.and_then(|t| Instant::now().checked_add(t)),
                    terminated_at: None,
                    timed_out: timed_out.clone(),
                },
            );
        Guard {
            dog: self.clone(),
            pgid,
            timed_out,
        }
    }

    fn tick(&self, cancel: bool) {
        let now = Instant::now();
        let mut g = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        for (&pgid, e) in g.iter_mut() {
            match e.terminated_at {
                None => {
                    let expired = e.deadline.is_some_and(|d| now >= d);
                    if expired || cancel {
                        if expired {
                            e.timed_out.store(true, Ordering::Relaxed);
                        }
                        let _ = killpg(Pid::from_raw(pgid), Signal::SIGTERM);
                        e.terminated_at = Some(now);
                    }
                }
                Some(t) if now.duration_since(t) >= GRACE => {
                    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
                }
                Some(_) => {}
            }
        }
    }
}
