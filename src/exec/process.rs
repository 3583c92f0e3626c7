//! Child processes: each step runs in its own process group so a timeout or
//! an interrupt can stop the step together with everything it started.
//!
//! Workers block in `wait()`; one watchdog thread enforces deadlines and
//! cancellation by signalling whole process groups, which keeps the per-step
//! cost at the spawn itself.
//!
//! Steps also die with dg: each step process gets `PR_SET_PDEATHSIG`, and a
//! small reaper process (this program started with [`REAPER_ARG`]) learns
//! every process group through a pipe. When dg dies, even by `kill -9`, the
//! pipe closes and the reaper stops the groups dg had not finished with.

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

/// The argument that turns a dg process into a step reaper (see [`reaper_main`]).
pub const REAPER_ARG: &str = "__dg-step-reaper";

/// The pipe to this process's reaper: `+PGID` / `-PGID` lines. `None` when
/// it could not be started (steps then only have `PR_SET_PDEATHSIG`).
static REAPER: Mutex<Option<Option<std::process::ChildStdin>>> = Mutex::new(None);

/// Set by [`enable_reaper`]: only a program that routes [`REAPER_ARG`] to
/// [`reaper_main`] (dg's CLI does) may be started again as the reaper.
static REAPER_ENABLED: AtomicBool = AtomicBool::new(false);

/// Lets steps be watched by a reaper: this program, started again with
/// [`REAPER_ARG`] as its first argument, runs [`reaper_main`].
pub fn enable_reaper() {
    REAPER_ENABLED.store(true, Ordering::SeqCst);
}

/// Tells the reaper (started on first use) about a process group.
fn tell_reaper(line: &str) {
    use std::io::Write;
    if !REAPER_ENABLED.load(Ordering::SeqCst) {
        return;
    }
    let mut r = REAPER.lock().unwrap_or_else(|e| e.into_inner());
    if r.is_none() {
        *r = Some(start_reaper());
    }
    if let Some(Some(pipe)) = r.as_mut()
        && writeln!(pipe, "{line}").is_err()
    {
        *r = Some(None);
    }
}

/// Starts a copy of this program as the reaper: in its own process group
/// (so terminal signals do not reach it), reading the groups to watch on
/// its stdin. The pipe's write end is close-on-exec, so steps do not hold it.
fn start_reaper() -> Option<std::process::ChildStdin> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().ok()?;
    let child = std::process::Command::new(exe)
        .arg(REAPER_ARG)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn();
    match child {
        Ok(mut c) => {
            let pipe = c.stdin.take();
            // Reaped by a thread, so it never lingers as a zombie.
            let _ = std::thread::Builder::new()
                .name("dg-reaper-wait".into())
                .spawn(move || {
                    let _ = c.wait();
                });
            pipe
        }
        Err(e) => {
            tracing::warn!("cannot start the step reaper: {e}");
            None
        }
    }
}

/// The reaper: when dg dies however it dies (`kill -9`, an out-of-memory
/// kill, a lost terminal), its end of the pipe closes, and the reaper stops
/// every step process group dg had not finished with: SIGTERM, then SIGKILL
/// after the grace period. Returns the exit code.
pub fn reaper_main() -> i32 {
    use nix::sys::signal::{SigHandler, signal};
    use std::io::BufRead;
    for sig in [
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGPIPE,
    ] {
        // SAFETY: ignoring a signal installs no handler code.
        let _ = unsafe { signal(sig, SigHandler::SigIgn) };
    }
    let mut groups = BTreeSet::new();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let (op, n) = line.split_at(line.len().min(1));
        let Ok(pgid) = n.parse::<i32>() else { continue };
        if pgid <= 1 {
            continue;
        }
        match op {
            "+" => {
                groups.insert(pgid);
            }
            "-" => {
                groups.remove(&pgid);
            }
            _ => {}
        }
    }
    let alive = |g: &BTreeSet<i32>| -> Vec<i32> {
        g.iter()
            .copied()
            .filter(|&p| killpg(Pid::from_raw(p), None).is_ok())
            .collect()
    };
    for &p in &groups {
        let _ = killpg(Pid::from_raw(p), Signal::SIGTERM);
    }
    let until = Instant::now() + GRACE;
    while Instant::now() < until && !alive(&groups).is_empty() {
        std::thread::sleep(Duration::from_millis(20));
    }
    for p in alive(&groups) {
        let _ = killpg(Pid::from_raw(p), Signal::SIGKILL);
    }
    0
}

/// Makes a step's process die with dg's thread that started it (Linux
/// `PR_SET_PDEATHSIG`); the reaper stops the rest of its group. Call in
/// `pre_exec`: it only makes a system call.
pub fn die_with_parent() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
    Ok(())
}

/// Makes `cmd` a step's (or a check's) process: run in `dir`, reading
/// nothing, its output and errors appended to `log`, in a process group of
/// its own, killed when dg dies.
pub fn as_step(
    cmd: &mut std::process::Command,
    dir: &std::path::Path,
    log: &std::fs::File,
) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    cmd.current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log.try_clone()?))
        .process_group(0);
    // SAFETY: the hook only makes one system call (prctl).
    unsafe {
        cmd.pre_exec(die_with_parent);
    }
    Ok(())
}

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
        tell_reaper(&format!("-{}", self.pgid));
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
        tell_reaper(&format!("+{pgid}"));
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

    /// Waits for `child` (the leader of its own process group, a `what`:
    /// step or check), stopping its group after `timeout`: its exit status,
    /// and whether it timed out.
    pub(crate) fn wait(
        &self,
        child: &mut std::process::Child,
        timeout: Option<Duration>,
        what: &'static str,
    ) -> Result<(std::process::ExitStatus, bool), super::StepError> {
        let guard = self.watch(child.id() as i32, timeout);
        let status = child
            .wait()
            .map_err(|error| super::StepError::Wait { what, error })?;
        Ok((status, guard.timed_out.load(Ordering::Relaxed)))
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
