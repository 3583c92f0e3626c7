//! `type = "command"`: an I/O manager implemented by an external program.
//!
//! One child process serves a resource for the length of a run. dg talks to
//! it in JSON lines over stdin/stdout (protocol version 1, specified in
//! `docs/plugins.md`): a handshake, then `handle_output`, `load_input` and
//! `exists` requests, each answered by one reply with the same `id`, and
//! `shutdown` at the end. Data moves as files in a named format. A crash, a
//! malformed reply or a reply that does not come within `timeout` fails the
//! request (and so only the step that made it) and stops the child; the next
//! request starts a fresh one.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError, channel};
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::{Value as Json, json};

use crate::io::{
    CommandConfig, Data, Format, InputContext, IoManager, Loaded, Log, OutputContext, PartitionRef,
    ResourceCx, Stored, table,
};

/// The protocol version dg speaks.
pub const PROTOCOL: u64 = 1;

/// Why an exchange failed: the plug-in said no (it stays up), or the
/// exchange itself broke (the plug-in is stopped).
pub(crate) enum Failure {
    Refused(String),
    Broken(String),
}

/// A plug-in's reply line, checked: a JSON object answering request `id`
/// with `"ok": true` (else why not). Whatever the line holds, this returns.
pub(crate) fn check_reply(text: &str, id: Option<&Json>) -> Result<Json, Failure> {
    use Failure::Broken;
    // Replies are shown cut to 120 characters: a plug-in may print anything.
    let cut = |s: &str| -> String {
        let mut out: String = s.chars().take(120).collect();
        if out.len() < s.len() {
            out.push('…');
        }
        out
    };
    let reply: Json = serde_json::from_str(text)
        .map_err(|e| Broken(format!("malformed reply (not JSON: {e}): `{}`", cut(text))))?;
    if !reply.is_object() {
        return Err(Broken(format!(
            "malformed reply: expected a JSON object, got `{}`",
            cut(&reply.to_string())
        )));
    }
    if let (Some(want), Some(got)) = (id, reply.get("id"))
        && want != got
    {
        return Err(Broken(format!(
            "malformed reply: answers request {}, expected {want}",
            cut(&got.to_string())
        )));
    }
    match reply.get("ok").and_then(Json::as_bool) {
        Some(true) => Ok(reply),
        Some(false) => Err(Failure::Refused(
            reply
                .get("error")
                .and_then(Json::as_str)
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .unwrap_or("failed without saying why")
                .to_string(),
        )),
        None => Err(Broken(format!(
            "malformed reply: no boolean `ok` in `{}`",
            cut(&reply.to_string())
        ))),
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Refused(m) | Failure::Broken(m) => f.write_str(m),
        }
    }
}

struct Running {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<std::io::Result<String>>,
}

impl Running {
    /// Kills the child's process group and reaps the child.
    fn kill(mut self) {
        kill_group(&mut self.child);
    }

    /// The child's exit status, waiting up to `within` for it to exit.
    fn exit_status(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let until = std::time::Instant::now().checked_add(within);
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if until.is_some_and(|u| std::time::Instant::now() >= u) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Kills a plug-in's process group (it is started as a group leader) and
/// reaps it.
fn kill_group(child: &mut Child) {
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// A resource served by an external program.
pub struct PluginManager {
    argv: Vec<String>,
    config: Json,
    format: Format,
    timeout: Duration,
    cx: ResourceCx,
    /// What the plug-in said its name was.
    name: Mutex<Option<String>>,
    child: Mutex<Option<Running>>,
    next_id: Mutex<u64>,
    /// Set once the plug-in announced another protocol version: it is not
    /// started again in this run.
    mismatch: Mutex<Option<String>>,
    scratch: PathBuf,
    log_path: PathBuf,
}

impl PluginManager {
    pub fn new(c: CommandConfig, cx: &ResourceCx) -> anyhow::Result<Self> {
        if c.command.is_empty() {
            anyhow::bail!("`command` is empty: give the plug-in program and its arguments");
        }
        let timeout = match &c.timeout {
            Some(t) => {
                let d = humantime::parse_duration(t)
                    .map_err(|e| anyhow::anyhow!("invalid `timeout` `{t}`: {e}"))?;
                if d.is_zero() || d > crate::load::MAX_TIMEOUT {
                    anyhow::bail!(
                        "`timeout` must be more than zero and at most 365 days, found `{t}`"
                    );
                }
                d
            }
            None => Duration::from_secs(60),
        };
        let config = serde_json::to_value(&c.config)?;
        Ok(PluginManager {
            argv: c.command,
            config,
            format: c.format.unwrap_or(Format::Csv),
            timeout,
            scratch: cx
                .state_dir
                .join("runs")
                .join(&cx.run_id)
                .join(format!("plugin-{}", cx.resource_key)),
            log_path: cx
                .state_dir
                .join("logs")
                .join(&cx.run_id)
                .join(format!("plugin-{}.log", cx.resource_key)),
            cx: cx.clone(),
            name: Mutex::new(None),
            child: Mutex::new(None),
            next_id: Mutex::new(1),
            mismatch: Mutex::new(None),
        })
    }

    fn who(&self) -> String {
        let name = self.name.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match name {
            Some(n) => format!("plug-in `{n}` (resource `{}`)", self.cx.resource_key),
            // The program only: its arguments may hold `${env:…}` values,
            // such as a token, which messages and the history must not show.
            None => format!(
                "plug-in `{}` (resource `{}`)",
                self.argv[0], self.cx.resource_key
            ),
        }
    }

    fn spawn(&self) -> anyhow::Result<Running> {
        if let Some(dir) = self.log_path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        // A program given as a relative path is relative to the project root.
        let program = if self.argv[0].contains('/') {
            self.cx.project_root.join(&self.argv[0])
        } else {
            PathBuf::from(&self.argv[0])
        };
        let mut child = Command::new(program)
            .args(&self.argv[1..])
            .current_dir(&self.cx.project_root)
            .env("DG_RUN_ID", &self.cx.run_id)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .process_group(0)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start `{}`: {e}", self.argv[0]))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = channel();
        std::thread::Builder::new()
            .name(format!("dg-plugin-{}", self.cx.resource_key))
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let end = line.is_err();
                    if tx.send(line).is_err() || end {
                        break;
                    }
                }
            })?;
        let mut r = Running {
            child,
            stdin,
            lines: rx,
        };
        let hello = json!({
            "type": "hello",
            "protocol": PROTOCOL,
            "resource": self.cx.resource_key,
            "config": self.config,
            "format": self.format.name(),
            "run_id": self.cx.run_id,
            "project_root": self.cx.project_root.to_string_lossy(),
        });
        // A child that fails the handshake is stopped: it may not watch
        // for the end of its input.
        let reply = match self.exchange(&mut r, &hello) {
            Ok(reply) => reply,
            Err(e) => {
                r.kill();
                anyhow::bail!("handshake: {e}");
            }
        };
        if let Some(n) = reply.get("name").and_then(Json::as_str) {
            *self.name.lock().unwrap_or_else(|e| e.into_inner()) = Some(n.to_string());
        }
        let version = reply.get("protocol");
        if version.and_then(Json::as_u64) != Some(PROTOCOL) {
            r.kill();
            let msg = format!(
                "protocol version mismatch: it speaks protocol {}, this dg speaks protocol {PROTOCOL}",
                version.map_or("(none given)".to_string(), |v| v.to_string())
            );
            *self.mismatch.lock().unwrap_or_else(|e| e.into_inner()) = Some(msg.clone());
            anyhow::bail!(msg);
        }
        Ok(r)
    }

    /// Sends one message and waits for its reply line.
    fn exchange(&self, r: &mut Running, msg: &Json) -> Result<Json, Failure> {
        use Failure::Broken;
        let mut line = serde_json::to_string(msg).map_err(|e| Broken(e.to_string()))?;
        line.push('\n');
        if let Err(e) = r
            .stdin
            .write_all(line.as_bytes())
            .and_then(|_| r.stdin.flush())
        {
            return Err(Broken(match r.exit_status(Duration::from_millis(500)) {
                Some(s) => format!("it exited ({s}) before it read the request"),
                None => format!("cannot write the request to it: {e}"),
            }));
        }
        let text = match r.lines.recv_timeout(self.timeout) {
            Ok(Ok(t)) => t,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(Broken("malformed reply (not UTF-8 text)".to_string()));
            }
            Ok(Err(e)) => return Err(Broken(format!("cannot read its reply: {e}"))),
            Err(RecvTimeoutError::Timeout) => {
                return Err(Broken(format!(
                    "no reply within {} (set `timeout` on the resource to allow more)",
                    humantime::format_duration(self.timeout)
                )));
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Broken(match r.exit_status(Duration::from_secs(1)) {
                    Some(s) => format!("it exited ({s}) without replying"),
                    None => "it closed its standard output without replying".to_string(),
                }));
            }
        };
        check_reply(&text, msg.get("id"))
    }

    /// Sends a request, starting the plug-in when needed. A broken exchange
    /// stops the child, so the next request starts a fresh one.
    fn request(&self, kind: &str, mut body: Json, log: &Log) -> anyhow::Result<Json> {
        let id = {
            let mut n = self.next_id.lock().unwrap_or_else(|e| e.into_inner());
            let id = *n;
            *n += 1;
            id
        };
        body["id"] = json!(id);
        body["type"] = json!(kind);
        let mut guard = self.child.lock().unwrap_or_else(|e| e.into_inner());
        // A plug-in that exited (or wrote something unasked) between
        // requests lost nothing: stop it and start another.
        if let Some(r) = guard.as_mut() {
            let why = match (r.child.try_wait(), r.lines.try_recv()) {
                (Ok(Some(status)), _) => Some(format!("it had exited ({status})")),
                (_, Err(TryRecvError::Disconnected)) => {
                    Some("it had closed its standard output".to_string())
                }
                (_, Ok(Ok(line))) => Some(format!(
                    "it wrote a line no request asked for: `{}`",
                    line.chars().take(120).collect::<String>()
                )),
                (_, Ok(Err(e))) => Some(format!("its output could not be read: {e}")),
                (_, Err(TryRecvError::Empty)) => None,
            };
            if let Some(why) = why {
                log.info(format!("{}: {why}; starting it again", self.who()));
                if let Some(r) = guard.take() {
                    r.kill();
                }
            }
        }
        if guard.is_none() {
            if let Some(m) = &*self.mismatch.lock().unwrap_or_else(|e| e.into_inner()) {
                anyhow::bail!("{} failed to start: {m}", self.who());
            }
            match self.spawn() {
                Ok(r) => *guard = Some(r),
                Err(e) => {
                    log.info(format!(
                        "{}: its stderr is in {}",
                        self.who(),
                        self.log_path.display()
                    ));
                    anyhow::bail!("{} failed to start: {e:#}", self.who())
                }
            }
        }
        let r = guard.as_mut().expect("started above");
        match self.exchange(r, &body) {
            Ok(reply) => Ok(reply),
            Err(Failure::Refused(m)) => Err(anyhow::anyhow!("{} {kind}: {m}", self.who())),
            Err(Failure::Broken(m)) => {
                if let Some(dead) = guard.take() {
                    dead.kill();
                }
                log.info(format!(
                    "{} was stopped; the next request starts it again. Its stderr is in {}",
                    self.who(),
                    self.log_path.display()
                ));
                Err(anyhow::anyhow!("{} {kind}: {m}", self.who()))
            }
        }
    }

    fn partition_json(p: Option<&PartitionRef>) -> Json {
        match p {
            None => Json::Null,
            Some(p) => json!({
                "key": p.key,
                "dimensions": p.dims.iter().map(|(d, k)| (d.clone(), json!(k))).collect::<serde_json::Map<_, _>>(),
                "start": p.window.map(|w| w.0.to_rfc3339()),
                "end": p.window.map(|w| w.1.to_rfc3339()),
            }),
        }
    }
}

impl Drop for PluginManager {
    fn drop(&mut self) {
        let mut guard = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = guard.take() {
            let Running {
                mut child,
                mut stdin,
                lines,
            } = r;
            let _ = writeln!(stdin, "{}", json!({"type": "shutdown"}));
            let _ = stdin.flush();
            drop(stdin);
            drop(lines);
            for _ in 0..50 {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            if child.try_wait().ok().flatten().is_none() {
                kill_group(&mut child);
            }
        }
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

impl IoManager for PluginManager {
    fn handle_output(&self, ctx: &OutputContext, data: Data) -> anyhow::Result<Stored> {
        std::fs::create_dir_all(&self.scratch)?;
        let dest = self.scratch.join(format!(
            "out-{}{}",
            crate::names::slug(&ctx.step_id),
            self.format.extension()
        ));
        let path = table::to_file(&data, self.format, &dest)?;
        let reply = self.request(
            "handle_output",
            json!({
                "asset_key": ctx.asset_key,
                "partition": Self::partition_json(ctx.partition.as_ref()),
                "format": self.format.name(),
                "path": path.to_string_lossy(),
                "metadata": ctx.metadata,
                "run_id": ctx.run_id,
                "step_id": ctx.step_id,
            }),
            &ctx.log,
        );
        let _ = std::fs::remove_file(&dest);
        let reply = reply?;
        let md = reply.get("metadata").cloned().unwrap_or(Json::Null);
        Ok(Stored {
            path: md.get("path").and_then(Json::as_str).map(String::from),
            rows: md.get("rows").and_then(Json::as_u64),
            bytes: md.get("bytes").and_then(Json::as_u64),
        })
    }

    fn load_input(&self, ctx: &InputContext) -> anyhow::Result<Loaded> {
        let dir = self.scratch.join(format!(
            "in-{}-{}",
            crate::names::slug(&ctx.step_id),
            crate::names::slug(&ctx.input_name)
        ));
        std::fs::create_dir_all(&dir)?;
        let partitions = if ctx.upstream_partitioned {
            Json::Array(
                ctx.partitions
                    .iter()
                    .map(|p| Self::partition_json(Some(p)))
                    .collect(),
            )
        } else {
            Json::Null
        };
        let reply = self.request(
            "load_input",
            json!({
                "asset_key": ctx.upstream_output.asset_key,
                "input_name": ctx.input_name,
                "downstream_asset": ctx.asset_key,
                "partitions": partitions,
                "format": self.format.name(),
                "dir": dir.to_string_lossy(),
                "run_id": ctx.run_id,
                "step_id": ctx.step_id,
            }),
            &ctx.log,
        )?;
        let files = reply.get("files").and_then(Json::as_array).ok_or_else(|| {
            anyhow::anyhow!(
                "{} load_input: malformed reply: no `files` list",
                self.who()
            )
        })?;
        let mut out = IndexMap::new();
        for f in files {
            let path = f.get("path").and_then(Json::as_str).ok_or_else(|| {
                anyhow::anyhow!(
                    "{} load_input: malformed reply: a file without `path`",
                    self.who()
                )
            })?;
            // Relative to the plug-in's working folder, the project root.
            let path = self.cx.project_root.join(path);
            if !path.exists() {
                anyhow::bail!(
                    "{} load_input: it replied with `{}`, which does not exist",
                    self.who(),
                    path.display()
                );
            }
            let key = f.get("key").and_then(Json::as_str).map(String::from);
            out.insert(
                key.unwrap_or_default(),
                Data::File {
                    path,
                    format: self.format,
                },
            );
        }
        if !ctx.upstream_partitioned {
            return match out.into_iter().next() {
                Some((_, d)) => Ok(Loaded::Single(d)),
                None => anyhow::bail!("{} load_input: it returned no file", self.who()),
            };
        }
        let wanted: Vec<&str> = ctx.partitions.iter().map(|p| p.key.as_str()).collect();
        let got: Vec<&str> = out.keys().map(String::as_str).collect();
        if wanted != got {
            anyhow::bail!(
                "{} load_input: returned partitions {got:?}, expected {wanted:?} in that order",
                self.who()
            );
        }
        Ok(Loaded::Partitions(out))
    }

    fn exists(&self, ctx: &OutputContext) -> anyhow::Result<bool> {
        let reply = self.request(
            "exists",
            json!({
                "asset_key": ctx.asset_key,
                "partition": Self::partition_json(ctx.partition.as_ref()),
                "format": self.format.name(),
                "run_id": ctx.run_id,
            }),
            &ctx.log,
        )?;
        reply.get("exists").and_then(Json::as_bool).ok_or_else(|| {
            anyhow::anyhow!(
                "{} exists: malformed reply: no boolean `exists`",
                self.who()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_checked_whatever_they_hold() {
        let id = serde_json::json!(3);
        let err = |l: &str| match check_reply(l, Some(&id)) {
            Ok(v) => panic!("accepted {v}"),
            Err(f) => f.to_string(),
        };
        assert!(check_reply(r#"{"id": 3, "ok": true}"#, Some(&id)).is_ok());
        // Found by the fuzzer: an empty error still says something.
        assert_eq!(
            err(r#"{"ok": false, "error": ""}"#),
            "failed without saying why"
        );
        assert_eq!(
            err(r#"{"ok": false, "error": "  "}"#),
            "failed without saying why"
        );
        assert!(err(r#"{"id": 4, "ok": true}"#).contains("answers request 4, expected 3"));
        assert!(err("[1]").contains("expected a JSON object"));
        assert!(err(r#"{"ok": 1}"#).contains("no boolean `ok`"));
        // A huge reply is shown cut.
        let long = format!("{{\"x\": \"{}\"}}", "y".repeat(10_000));
        assert!(err(&long).len() < 300);
    }
}
