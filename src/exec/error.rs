//! Why a step, or the run around it, could not go on.
//!
//! A step's error becomes text only where it is shown or recorded: the
//! attempt's `error` (the terminal, `--json`, the step log and the run
//! history all show that text), or a failed check's message. Until then it
//! is a [`StepError`], whose variants say what went wrong and keep the
//! cause. The text of each variant is what users see, so it is part of the
//! contract of the tests and snapshots: change a message here, not at the
//! places that raise it. A cause is written into the message (`{error:#}`
//! for an I/O manager's `anyhow` chain) rather than exposed as
//! `Error::source`, so that no renderer repeats it.
//!
//! [`PrepareError`] is what keeps a run from starting: a resource that
//! cannot be created, a variable its steps need that is not set.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;

use crate::interp::{TemplateError, UnsetVar};

/// Why one attempt of a step, one of its checks, or its submission to an
/// executor failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StepError {
    /// The attempt's scratch folder could not be made.
    #[error("cannot create the step's work folder {}: {error}", .path.display())]
    WorkFolder {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A file or folder the step (or check, or job) needs could not be made.
    #[error("cannot create {}: {error}", .path.display())]
    Create {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A file the step (or job) reads could not be written.
    #[error("cannot write {}: {error}", .path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The step's log file could not be handed to the step.
    #[error("{0}")]
    Log(std::io::Error),
    /// A `${env:…}` in the asset's `field` (`command`, `env.NAME`,
    /// `metadata`, `tags`) names a variable that is not set.
    #[error("`{field}`: {error}")]
    Unset { field: String, error: UnsetVar },
    /// The run created no manager for this resource key.
    #[error("I/O manager `{0}` was not created for this run")]
    NoManager(String),
    /// Asking the manager of input `input` failed, or the loaded data could
    /// not be written for the step.
    #[error("input `{input}`: {error:#}")]
    Input { input: String, error: anyhow::Error },
    /// `load_input` failed.
    #[error("cannot load input `{input}` from `{upstream}` (manager `{manager}`): {error:#}")]
    Load {
        input: String,
        upstream: String,
        manager: String,
        error: anyhow::Error,
    },
    /// A pre-run `exists` check failed.
    #[error("checking `{asset}` through `{manager}`: {error:#}")]
    Exists {
        asset: String,
        manager: String,
        error: anyhow::Error,
    },
    /// A source asset was asked to run.
    #[error("a source asset is never materialized")]
    Source,
    /// A program could not be started.
    #[error("cannot run `{program}`: {error}")]
    Spawn {
        program: String,
        error: std::io::Error,
    },
    /// Waiting for the step's (or check's) process failed.
    #[error("waiting for the {what} failed: {error}")]
    Wait {
        what: &'static str,
        error: std::io::Error,
    },
    /// The process ended unsuccessfully.
    #[error("{}", exit_text(.0))]
    Exited(ExitStatus),
    /// The thread that stores the output could not be started.
    #[error("cannot start storing the output: {0}")]
    StoreThread(std::io::Error),
    /// A check needs the stored data and the asset stores none.
    #[error("the asset stores nothing (`output = false`): there is no data to check")]
    NothingStored,
    /// A check could not load what the step stored.
    #[error("cannot load the stored data through `{manager}`: {error:#}")]
    LoadStored {
        manager: String,
        error: anyhow::Error,
    },
    /// A check's process could not be started.
    #[error("cannot run the check: {0}")]
    CheckSpawn(std::io::Error),
    /// The stored data could not be written for a check's process.
    #[error("cannot hand over the stored data: {0:#}")]
    HandOver(anyhow::Error),
    /// A `sql` check's query failed.
    #[error("{0}")]
    Sql(Box<dyn std::error::Error + Send + Sync>),
    /// The run history of an upstream could not be read again.
    #[error("cannot read the history of `{asset}`: {error:#}")]
    History { asset: String, error: anyhow::Error },
    /// The run was interrupted while the step waited for another run's lease.
    #[error("interrupted while waiting for another run")]
    InterruptedWaiting,
    /// The lease on `what` (`this partition`, `` partition `KEY` ``) could
    /// not be taken.
    #[error("cannot take the lease on {what}: {error:#}")]
    Lease { what: String, error: anyhow::Error },
    /// The history of the step's partition could not be read.
    #[error("cannot read the partition's history: {0:#}")]
    PartitionHistory(anyhow::Error),
    /// A step names a pool that `[pools]` does not declare.
    #[error("pool `{0}` is not declared in `[pools]`")]
    UndeclaredPool(String),
    /// A slot of the pool could not be taken.
    #[error("cannot take a slot of pool `{pool}`: {error:#}")]
    PoolSlot { pool: String, error: anyhow::Error },
    /// The local executor's workers are gone.
    #[error("the run's workers stopped")]
    WorkersStopped,
    /// `sbatch` failed; its stderr.
    #[error("`sbatch` failed: {0}")]
    Sbatch(String),
    /// `sbatch` answered without a job id.
    #[error("`sbatch` printed no job id")]
    NoJobId,
    /// `squeue` failed; its stderr.
    #[error("`squeue` failed: {0}")]
    Squeue(String),
    /// The `dg` binary the Slurm jobs run cannot be found.
    #[error("cannot find the dg binary to submit: {0}")]
    DgBinary(std::io::Error),
    /// An error met once and given again (the stored data a step's checks
    /// load once for all of them).
    #[error(transparent)]
    Again(Arc<StepError>),
}

impl StepError {
    /// A `sql` error: the engines' errors (text, or typed).
    pub fn sql(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StepError::Sql(e.into())
    }

    /// A `${env:…}` of `field` that is not set.
    pub fn unset(field: impl Into<String>, error: UnsetVar) -> Self {
        StepError::Unset {
            field: field.into(),
            error,
        }
    }
}

/// How a process that did not succeed ended: `exited with code N`,
/// `killed by signal N`.
fn exit_text(status: &ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with code {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "failed".to_string(),
    }
}

/// Why a run cannot start: each one is an `error:` line, and nothing runs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrepareError {
    /// A step uses a resource the definitions do not have.
    #[error("resource `{0}` is not defined")]
    UndefinedResource(String),
    /// A string of the resource's config is not a template, or names an
    /// unset variable.
    #[error("resource `{resource}`: {error}")]
    Config {
        resource: String,
        error: ConfigValueError,
    },
    /// The resource's `type` is not in the registry.
    #[error("resource `{resource}`: unknown type `{type_name}`")]
    UnknownType { resource: String, type_name: String },
    /// The resource type could not create its manager.
    #[error("resource `{resource}` (type `{type_name}`): {error:#}")]
    Create {
        resource: String,
        type_name: String,
        error: anyhow::Error,
    },
    /// A `${env:…}` in the asset's `field` names a variable that is not set.
    #[error("asset `{asset}`, `{field}`: {error}")]
    Unset {
        asset: String,
        field: String,
        error: UnsetVar,
    },
}

/// Why a string of a resource's config could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ConfigValueError {
    #[error("{}", .0.message)]
    Template(TemplateError),
    #[error("{0}")]
    Unset(UnsetVar),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_status_reads_as_before() {
        let code = ExitStatus::from_raw(3 << 8);
        assert_eq!(StepError::Exited(code).to_string(), "exited with code 3");
        let signal = ExitStatus::from_raw(9);
        assert_eq!(StepError::Exited(signal).to_string(), "killed by signal 9");
    }

    #[test]
    fn a_cause_chain_is_one_line() {
        let error = anyhow::anyhow!("no such table").context("reading `t`");
        let e = StepError::Load {
            input: "a".into(),
            upstream: "up".into(),
            manager: "io_manager".into(),
            error,
        };
        assert_eq!(
            e.to_string(),
            "cannot load input `a` from `up` (manager `io_manager`): reading `t`: no such table"
        );
        let again = StepError::Again(Arc::new(e));
        assert!(again.to_string().starts_with("cannot load input `a`"));
    }
}
