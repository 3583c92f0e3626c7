//! Run hooks (`[hooks] on_success` / `on_failure` in `dg.toml`): a shell
//! script run once after a run, from the project root, with
//! `DG_RUN_SUMMARY` naming the run's JSON summary. Its output goes to dg's
//! stderr (stdout may be reserved for `--json`). A hook cannot change how
//! the run ended: its failure is only reported.

use std::path::Path;
use std::process::{Command, Stdio};

use super::StepError;

/// Runs `script` with `sh -c`; `Err` says why it failed: `sh` could not be
/// started ([`StepError::Spawn`]) or the script did not exit 0
/// ([`StepError::Exited`]).
pub fn run_hook(
    root: &Path,
    script: &str,
    summary: &Path,
    run_id: &str,
    status: &str,
) -> Result<(), StepError> {
    let status = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(root)
        .env("DG_RUN_SUMMARY", summary)
        .env("DG_RUN_ID", run_id)
        .env("DG_RUN_STATUS", status)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()))
        .stderr(Stdio::from(std::io::stderr()))
        .status()
        .map_err(|error| StepError::Spawn {
            program: "sh".into(),
            error,
        })?;
    if status.success() {
        return Ok(());
    }
    Err(StepError::Exited(status))
}
