//! `dg schema defs|config`: a JSON Schema (draft 2020-12) of a definitions
//! file and of `dg.toml`, for editors (taplo / Even Better TOML).
//!
//! It is generated from what the validator reads, so that it cannot drift:
//! the field lists of assets, inputs, jobs, checks, retry policies,
//! `[defaults]`, partitions definitions (by `type`) and mappings (by
//! `type`) are the validator's own constants, and each resource type's
//! fields are learnt from the type itself (its config struct's "expected
//! one of …" answer to an unknown field). Only value types and descriptions
//! come from the table below; a field it does not know is accepted with
//! any value.

use serde_json::{Map, Value, json};
use toml::de::{DeTable, DeValue};

use crate::io::{Config, Registry};
use crate::partitions::mapping::MappingSpec;

const ID: &str = "https://dg.invalid/schema";

/// Value type and description of a field, by where it is and its name.
fn field(ctx: &str, name: &str) -> Value {
    let s = |d: &str| json!({"type": "string", "description": d});
    let b = |d: &str| json!({"type": "boolean", "description": d});
    let strs = |d: &str| json!({"type": "array", "items": {"type": "string"}, "description": d});
    let str_map = |d: &str| json!({"type": "object", "additionalProperties": {"type": "string"}, "description": d});
    let any_map = |d: &str| json!({"type": "object", "description": d});
    let int = |d: &str, min: i64| json!({"type": "integer", "minimum": min, "description": d});
    match (ctx, name) {
        ("asset", "partitions") | ("defaults", "partitions") => json!({
            "description": "The asset's partitions: a `[partitions.NAME]` name, or a definition inline",
            "anyOf": [{"type": "string"}, {"$ref": "#/$defs/partitions"}]
        }),
        ("asset", "deps") => {
            strs("Upstream asset keys this asset reads (identity or inferred mapping)")
        }
        ("asset", "ins") => json!({
            "type": "object",
            "description": "Named inputs: `NAME = \"asset\"` or `NAME = { asset = …, mapping = …, … }`",
            "additionalProperties": {"anyOf": [{"type": "string"}, {"$ref": "#/$defs/input"}]}
        }),
        ("asset" | "check", "command") => json!({
            "description": "A program and its arguments, run without a shell",
            "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
        }),
        ("asset" | "check", "shell") => s("A script run by `sh -c`"),
        ("asset" | "check", "sql") => {
            s("A SQL query run by the built-in engine (or in the database)")
        }
        ("asset", "engine") => json!({
            "enum": crate::model::SqlEngine::NAMES,
            "description": "The engine of a `sql` asset's query (default: duckdb when stored by a duckdb resource, else sqlite)"
        }),
        ("asset", "source") => b("An asset dg never materializes: its data is already stored"),
        ("asset" | "defaults", "io_manager") => {
            s("The resource that stores the asset (default `io_manager`)")
        }
        ("asset", "format") => {
            json!({"enum": crate::io::Format::NAMES, "description": "What the compute writes and reads"})
        }
        ("asset" | "defaults", "group") => s("The asset's group (selection `group:NAME`)"),
        ("asset" | "defaults", "tags") => str_map("Tags (selection `tag:KEY=VALUE`)"),
        ("asset" | "job" | "check", "description") => {
            s("A description, shown by `dg list` and the report")
        }
        ("asset", "metadata") => any_map("Metadata recorded with each materialization"),
        ("asset", "env") => str_map("Environment variables of the step (`${env:…}` allowed)"),
        ("asset", "code_version") => s("A version of the code: changing it makes the asset stale"),
        ("asset", "retries") => int("How many times a failed step is tried again", 0),
        ("asset", "retry") => json!({"$ref": "#/$defs/retry"}),
        ("asset", "backfill") => json!({
            "description": "Range steps: a run over several partitions groups consecutive ones into one step",
            "oneOf": [
                {"const": "single_step"},
                {
                    "type": "object",
                    "properties": {"max_partitions_per_step": {"type": "integer", "minimum": 1, "maximum": 1_000_000}},
                    "required": ["max_partitions_per_step"],
                    "additionalProperties": false
                }
            ]
        }),
        ("asset", "pool") => s("A `[pools]` name of dg.toml: limits how many steps run at once"),
        ("asset", "executor") => json!({"$ref": "#/$defs/slurm"}),
        ("executor", "type") => json!({
            "enum": crate::project::EXECUTOR_TYPES,
            "description": "Where steps run: `local` (this machine) or `slurm` (`sbatch` jobs running `dg step`)"
        }),
        ("executor", "partition") => s("Slurm partition (`sbatch --partition`)"),
        ("executor", "account") => s("Slurm account (`sbatch --account`)"),
        ("executor", "qos") => s("Slurm quality of service (`sbatch --qos`)"),
        ("executor", "time") => {
            s("Time limit of each job (`sbatch --time`: `90`, `01:30:00`, `1-12:00`)")
        }
        ("executor", "mem") => s("Memory of each job (`sbatch --mem`: `500M`, `4G`)"),
        ("executor", "cpus_per_task") => int("CPUs of each job (`sbatch --cpus-per-task`)", 1),
        ("executor", "max_array") => int(
            "At most this many tasks of one job array at once (`--array=0-N%M`)",
            1,
        ),
        ("executor", "extra_args") => strs("More `sbatch` arguments, as given"),
        ("asset", "timeout") => s("How long a step may run (`30s`, `5m`)"),
        ("asset", "output_required") => b("Whether the step must write `DG_OUTPUT`"),
        ("asset", "config") => any_map("Run config: defaults, overridden by `--config`"),
        ("asset", "config_affects_staleness") => {
            b("Whether a changed config makes the asset stale")
        }
        ("asset", "checks") => json!({
            "type": "object",
            "description": "Asset checks, run after each partition is stored",
            "additionalProperties": {"$ref": "#/$defs/check"}
        }),
        ("check", "severity") => {
            json!({"enum": ["error", "warn"], "description": "`error` fails the run; `warn` is reported"})
        }
        ("check", "blocking") => b("A failed error-check skips the steps downstream"),
        ("defaults", "key_prefix") => {
            s("Prefixed (with `/`) to the key of every asset of the file")
        }
        ("input", "asset") => s("The upstream asset key"),
        ("input", "mapping") => json!({"$ref": "#/$defs/mapping"}),
        ("input", "input_manager") => {
            s("A resource that loads this input instead of the upstream's")
        }
        ("input", "allow_missing_partitions") => {
            b("Run even when some upstream partitions are missing")
        }
        ("input", "load") => b("Whether the input is loaded into a file for the step"),
        ("job", "select") => s("The assets of the job (selection syntax)"),
        ("job", "partition") => s("One partition key, or `latest`"),
        ("job", "partition_range") => s("`START...END`"),
        ("job", "last") => int("The last N partitions", 1),
        ("job", "all_partitions") => b("Every partition"),
        ("job", "missing") => b("Only partitions with no successful materialization"),
        ("job", "stale") => b("Missing or stale partitions and what is downstream of them"),
        ("job", "cron") => s("When `dg tick` runs the job"),
        ("job", "timezone") | ("partitions", "timezone") => {
            s("An IANA time zone, e.g. `Europe/Amsterdam`")
        }
        ("job", "catchup") => json!({
            "description": "Which missed ticks `dg tick` runs: `true`/`\"all\"`, or only the last",
            "anyOf": [{"type": "boolean"}, {"type": "string"}]
        }),
        ("retry", "max") => int("Attempts after the first", 0),
        ("retry", "delay") => s("Wait before the next attempt (`10s`)"),
        ("retry", "backoff") => json!({"enum": ["constant", "linear", "exponential"]}),
        ("retry", "jitter") => {
            json!({"anyOf": [{"type": "boolean"}, {"enum": ["full", "plus_minus"]}]})
        }
        ("partitions", "start") => {
            s("The first partition's start (`2024-01-01`, `2024-01-01-00:00`)")
        }
        ("partitions", "end") => s("Where partitions end (exclusive)"),
        ("partitions", "fmt") => s("strftime format of the keys"),
        ("partitions", "cron") => s("A cron expression: one partition per tick"),
        ("partitions", "keys") => strs("The keys, in order"),
        ("partitions", "dimensions") => json!({
            "type": "object",
            "description": "Two dimensions: `NAME = { type = … }`",
            "minProperties": 2, "maxProperties": 2,
            "additionalProperties": {"anyOf": [{"type": "string"}, {"$ref": "#/$defs/partitions"}]}
        }),
        ("partitions", "end_offset" | "minute_offset" | "hour_offset" | "day_offset") => {
            json!({"type": "integer"})
        }
        ("mapping", "start_offset" | "end_offset") => json!({"type": "integer"}),
        ("mapping", "allow_nonexistent") => b("Allow upstream partitions that do not exist"),
        ("mapping", "map") => json!({
            "type": "object",
            "description": "Downstream key per upstream key (a string or a list)",
            "additionalProperties": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
        }),
        ("mapping", "keys") => strs("The upstream keys read"),
        ("mapping", "dimension") => s("The dimension of the multi partitions that is mapped"),
        ("mapping", "dimensions") => any_map("A mapping per dimension"),
        ("config", "defs") => s("The definitions folder (default `defs`)"),
        ("config", "state") => s("The state folder (default `.dg`)"),
        ("config", "url") => s("Where the run history is: a SQLite file or `postgres://…`"),
        ("config", "jobs") => int("How many steps run at once", 1),
        ("config", "on_success" | "on_failure") => s("A shell script run after a run"),
        ("config", "env") => str_map("Environment of the profile"),
        ("config", "resources") => {
            json!({"type": "object", "additionalProperties": {"$ref": "#/$defs/resource"}})
        }
        (_, "type") => json!({"type": "string"}),
        _ => json!({}),
    }
}

/// A closed object of `fields` (those of `ctx`).
fn object(ctx: &str, fields: &[&str], description: &str) -> Value {
    let props: Map<String, Value> = fields
        .iter()
        .map(|f| (f.to_string(), field(ctx, f)))
        .collect();
    json!({
        "type": "object",
        "description": description,
        "properties": props,
        "additionalProperties": false,
    })
}

/// Discriminated by `type`: one branch per type, each a closed object
/// whose `type` is that name.
fn by_type(
    branches: Vec<(String, Value)>,
    description: &str,
    open_rest: bool,
    required: bool,
) -> Value {
    let names: Vec<&String> = branches.iter().map(|(n, _)| n).collect();
    let mut one_of: Vec<Value> = Vec::new();
    for (name, mut b) in branches.clone() {
        b["properties"]["type"] = json!({"const": name});
        if required {
            b["required"] = json!(["type"]);
        }
        one_of.push(b);
    }
    if open_rest {
        // Types registered by a program that embeds dg: anything goes.
        one_of.push(json!({
            "type": "object",
            "required": ["type"],
            "properties": {"type": {"type": "string", "not": {"enum": names}}}
        }));
    }
    json!({"description": description, "oneOf": one_of})
}

/// The fields a resource type accepts besides `type`, asked of the type
/// itself: `None` when it takes fields it does not list (it accepted an
/// unknown one, or answered otherwise).
pub fn resource_fields(registry: &Registry, ty: &str) -> Option<Vec<String>> {
    let t = registry.get(ty)?;
    let probe = "__dg_schema_probe__ = 0";
    let root = DeTable::parse(probe).ok()?;
    let span = root.span();
    let value = toml::Spanned::new(span, DeValue::Table(root.into_inner()));
    let msg = match t.validate(&Config::spanned(value)) {
        Ok(_) => return None,
        Err(e) => e.message,
    };
    let first = msg.lines().next().unwrap_or("");
    if first.contains("there are no fields") {
        return Some(Vec::new());
    }
    let (_, expected) = first.split_once(", expected ")?;
    let expected = expected.strip_prefix("one of ").unwrap_or(expected);
    Some(
        // "`a`", "`a` or `b`", "one of `a`, `b`, `c`"
        expected
            .split(", ")
            .flat_map(|f| f.split(" or "))
            .map(|f| f.trim().trim_matches('`').to_string())
            .filter(|f| !f.is_empty())
            .collect(),
    )
}

fn resource_def(registry: &Registry) -> Value {
    let mut branches = Vec::new();
    for ty in registry.names() {
        let b = match resource_fields(registry, ty) {
            Some(fields) => {
                let mut all = vec!["type"];
                all.extend(fields.iter().map(String::as_str));
                object(
                    &format!("resource:{ty}"),
                    &all,
                    &format!("`type = \"{ty}\"`"),
                )
            }
            None => {
                json!({"type": "object", "description": format!("`type = \"{ty}\"`"), "properties": {"type": {}}})
            }
        };
        branches.push((ty.to_string(), b));
    }
    // A settings resource: its own fields, and `secrets` naming some.
    branches.push((
        crate::model::SETTINGS.to_string(),
        json!({
            "type": "object",
            "description": "Settings: any fields, given to the steps that name the resource",
            "properties": {"type": {}, "secrets": {"type": "array", "items": {"type": "string"}}}
        }),
    ));
    by_type(
        branches,
        "A resource: an I/O manager by `type`, or settings",
        true,
        true,
    )
}

fn partitions_def() -> Value {
    let branches = super::partitions::PARTITION_TYPES
        .iter()
        .filter_map(|t| {
            let fields = super::partitions::partition_fields(t)?;
            Some((
                t.to_string(),
                object("partitions", fields, &format!("`type = \"{t}\"`")),
            ))
        })
        .collect();
    by_type(branches, "A partitions definition, by `type`", false, true)
}

fn mapping_def() -> Value {
    let branches = MappingSpec::TYPES
        .iter()
        .map(|t| {
            (
                t.to_string(),
                object(
                    "mapping",
                    MappingSpec::fields(t),
                    &format!("`type = \"{t}\"`"),
                ),
            )
        })
        .collect();
    by_type(branches, "A partition mapping, by `type`", false, true)
}

fn named(of: &str) -> Value {
    json!({"type": "object", "additionalProperties": {"$ref": format!("#/$defs/{of}")}})
}

/// The schema of a definitions file.
pub fn defs(registry: &Registry) -> Value {
    let mut top: Map<String, Value> = super::entries::TOP
        .iter()
        .map(|t| {
            let of = match *t {
                "assets" => "asset",
                "jobs" => "job",
                "resources" => "resource",
                _ => "partitions",
            };
            (t.to_string(), named(of))
        })
        .collect();
    top.insert(
        "defaults".into(),
        object(
            "defaults",
            super::entries::DEFAULTS_FIELDS,
            "Defaults for the assets of this file",
        ),
    );
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": format!("{ID}/defs.json"),
        "title": "dg definitions file",
        "type": "object",
        "properties": top,
        "additionalProperties": false,
        "$defs": {
            "asset": object("asset", super::assets::ASSET_FIELDS, "An asset"),
            "input": object("input", super::inputs::INPUT_FIELDS, "A named input"),
            "job": object("job", super::jobs::JOB_FIELDS, "A job: a selection and targeting, maybe a cron"),
            "check": object("check", super::checks::CHECK_FIELDS, "An asset check"),
            "retry": object("retry", super::policies::RETRY_FIELDS, "A retry policy"),
            "slurm": object("executor", crate::project::ASSET_EXECUTOR_FIELDS, "Slurm options of this asset's steps (override `[executor]` of dg.toml)"),
            "partitions": partitions_def(),
            "mapping": mapping_def(),
            "resource": resource_def(registry),
        }
    })
}

/// The schema of `dg.toml`.
pub fn config(registry: &Registry) -> Value {
    use crate::project as p;
    let mut top = Map::new();
    for t in p::CONFIG_TOP {
        let v = match *t {
            "project" => object("config", p::PROJECT_FIELDS, "Where the project's files are"),
            "state" => object("config", p::STATE_FIELDS, "The run history"),
            "run" => object("config", p::RUN_FIELDS, "Defaults of `dg materialize`"),
            "hooks" => object("config", p::HOOKS_FIELDS, "Scripts run after each run"),
            "executor" => object(
                "executor",
                p::EXECUTOR_FIELDS,
                "Where steps run, and the Slurm executor's `sbatch` options",
            ),
            "pools" => json!({
                "type": "object",
                "description": "Concurrency pools: `NAME = LIMIT`",
                "additionalProperties": {"type": "integer", "minimum": 1}
            }),
            "profiles" => json!({
                "type": "object",
                "description": "Profiles (`--profile NAME`): resources and environment",
                "additionalProperties": object("config", p::PROFILE_FIELDS, "A profile")
            }),
            _ => json!({}),
        };
        top.insert(t.to_string(), v);
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": format!("{ID}/config.json"),
        "title": "dg.toml",
        "type": "object",
        "properties": top,
        "additionalProperties": false,
        "$defs": {"resource": resource_def(registry)},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_fields_come_from_the_config_structs() {
        let r = Registry::builtin();
        let fs = resource_fields(&r, "fs").unwrap();
        assert_eq!(fs, ["base_dir", "format", "path"]);
        assert_eq!(resource_fields(&r, "memory").unwrap(), Vec::<String>::new());
        let pg = resource_fields(&r, "postgres").unwrap();
        assert!(pg.contains(&"url".to_string()) && pg.contains(&"schema".to_string()));
        // serde says "expected `a` or `b`" for two fields.
        assert_eq!(
            resource_fields(&r, "sqlite").unwrap(),
            ["path", "replace_on_schema_change"]
        );
        // Known with or without the `duckdb` feature.
        assert_eq!(
            resource_fields(&r, "duckdb").unwrap(),
            ["path", "schema", "replace_on_schema_change"]
        );
    }

    /// Every field the validator reads has a value type or description in
    /// the table, so the schema says more than "anything".
    #[test]
    fn every_field_is_described() {
        let lists: &[(&str, &[&str])] = &[
            ("asset", super::super::assets::ASSET_FIELDS),
            ("input", super::super::inputs::INPUT_FIELDS),
            ("job", super::super::jobs::JOB_FIELDS),
            ("check", super::super::checks::CHECK_FIELDS),
            ("retry", super::super::policies::RETRY_FIELDS),
            ("defaults", super::super::entries::DEFAULTS_FIELDS),
            ("executor", crate::project::EXECUTOR_FIELDS),
        ];
        let mut bare = Vec::new();
        for (ctx, fields) in lists {
            for f in *fields {
                if field(ctx, f) == json!({}) {
                    bare.push(format!("{ctx}.{f}"));
                }
            }
        }
        // Fields whose value has several shapes are described in the docs only.
        bare.retain(|f| {
            ![
                "asset.output",
                "asset.columns",
                "asset.resources",
                "asset.freshness",
            ]
            .contains(&f.as_str())
        });
        assert!(bare.is_empty(), "no type or description: {bare:?}");
    }
}
