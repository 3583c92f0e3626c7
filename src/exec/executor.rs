//! Where ready steps run. The scheduler ([`super::schedule`]) decides which
//! steps are ready and hands them to an [`Executor`], which runs them and
//! gives their [`StepReport`]s back as they finish.
//!
//! - [`Local`]: worker threads of this process, each running
//!   [`super::run_step`] (one step at a time per worker).
//! - [`super::slurm::Slurm`]: `sbatch` jobs running `dg step` on a cluster.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::Scope;
use std::time::Duration;

use super::{Reporter, RunCtx, StepError, StepReport, process};

/// The result of waiting for a step. (A report is moved once per step, so
/// its size does not matter.)
#[allow(clippy::large_enum_variant)]
pub enum Wait {
    /// A step finished.
    Done(StepReport),
    /// Nothing finished within the time given.
    Timeout,
    /// The executor cannot report anything any more.
    Gone,
}

/// Runs the steps the scheduler hands it.
pub trait Executor {
    /// How many steps may be in flight at once.
    fn capacity(&self) -> usize;
    /// Starts step `si`, whose upstream steps have succeeded. `Err` when it
    /// could not be handed over (the step fails with that message).
    fn submit(&mut self, rc: &RunCtx, si: usize) -> Result<(), StepError>;
    /// The next step to finish: waits at most `timeout` (`None`: as long
    /// as it takes).
    fn wait(&mut self, rc: &RunCtx, timeout: Option<Duration>) -> Wait;
    /// The run was interrupted (`rc.cancel` is set): stop every step in
    /// flight. Their reports still come through [`Executor::wait`].
    fn cancel(&mut self, rc: &RunCtx);
    /// The scheduler is done with the executor.
    fn finish(&mut self, _rc: &RunCtx) {}
}

/// Runs steps on worker threads of this process. A child process of a
/// step is watched by one [`process::Watchdog`] (timeouts, interrupts).
pub struct Local {
    jobs: usize,
    job_tx: Option<mpsc::Sender<usize>>,
    res_rx: mpsc::Receiver<StepReport>,
    finished: Arc<AtomicBool>,
}

impl Local {
    /// Starts `jobs` workers in `scope`.
    pub fn start<'scope, 'env: 'scope>(
        scope: &'scope Scope<'scope, 'env>,
        rc: &'env RunCtx,
        jobs: usize,
        reporter: &'env dyn Reporter,
    ) -> Local {
        let finished = Arc::new(AtomicBool::new(false));
        let dog = process::Watchdog::start(rc.cancel.clone(), finished.clone());
        let (job_tx, job_rx) = mpsc::channel::<usize>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (res_tx, res_rx) = mpsc::channel::<StepReport>();
        for w in 0..jobs.max(1) {
            let job_rx = job_rx.clone();
            let res_tx = res_tx.clone();
            let dog = dog.clone();
            std::thread::Builder::new()
                .name(format!("dg-worker-{w}"))
                .spawn_scoped(scope, move || {
                    loop {
                        let next = job_rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        let Ok(si) = next else { break };
                        let report = super::run_step(rc, si, &dog, reporter);
                        if res_tx.send(report).is_err() {
                            break;
                        }
                    }
                })
                .expect("spawn worker thread");
        }
        Local {
            jobs: jobs.max(1),
            job_tx: Some(job_tx),
            res_rx,
            finished,
        }
    }
}

impl Executor for Local {
    fn capacity(&self) -> usize {
        self.jobs
    }

    fn submit(&mut self, _rc: &RunCtx, si: usize) -> Result<(), StepError> {
        match &self.job_tx {
            Some(tx) => tx.send(si).map_err(|_| StepError::WorkersStopped),
            None => Err(StepError::WorkersStopped),
        }
    }

    fn wait(&mut self, _rc: &RunCtx, timeout: Option<Duration>) -> Wait {
        match timeout {
            None => match self.res_rx.recv() {
                Ok(r) => Wait::Done(r),
                Err(_) => Wait::Gone,
            },
            Some(t) => match self.res_rx.recv_timeout(t) {
                Ok(r) => Wait::Done(r),
                Err(mpsc::RecvTimeoutError::Timeout) => Wait::Timeout,
                Err(mpsc::RecvTimeoutError::Disconnected) => Wait::Gone,
            },
        }
    }

    /// The watchdog sees `rc.cancel` and stops the steps' processes.
    fn cancel(&mut self, _rc: &RunCtx) {}

    fn finish(&mut self, _rc: &RunCtx) {
        self.job_tx.take();
        self.finished
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        self.job_tx.take();
        self.finished
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
