//! Settings resources, secrets masking, profiles, run config and per-file
//! defaults (CONTRACT §9).

use std::path::Path;

use crate::support::{
    Run, assert_contains, assert_fails_with, assert_no_panic, assert_ok, dg_with_env, find, items,
    json, one_file, project, read, step,
};

const NOW: &str = "2024-01-02T00:00:00Z";
const TOKEN: &str = "tok-Zq81-very-secret";
const PG_PASSWORD: &str = "pa/ss-Xy7";

/// Runs dg with *now* pinned and the token set.
fn dg_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut all = vec![("DG_NOW", NOW), ("WEATHER_TOKEN", TOKEN)];
    all.extend_from_slice(env);
    let r = dg_with_env(dir, args, &all);
    assert_no_panic(&r);
    r
}

fn dg(dir: &Path, args: &[&str]) -> Run {
    dg_env(dir, args, &[])
}

const SETTINGS: &str = r#"
[resources.weather_api]
type = "settings"
base_url = "https://api.example.org"
token = "${env:WEATHER_TOKEN}"
retries = 3
verbose = true
secrets = ["token"]

[assets.observations]
resources = ["weather_api"]
shell = '''
printf 'name,value\n' > "$DG_OUTPUT"
env | grep '^DG_RESOURCE_' | sort | sed 's/=/,/' >> "$DG_OUTPUT"
cp "$DG_CONTEXT" context.json
'''

[assets.plain]
shell = '''
printf 'n\n%s\n' "$(env | grep -c '^DG_RESOURCE_')" > "$DG_OUTPUT"
'''
"#;

#[test]
fn a_step_gets_the_fields_of_the_settings_it_declares_and_no_others() {
    let p = one_file(SETTINGS);
    assert_ok(&dg(p.path(), &["materialize"]));
    let out = read(p.path().join(".dg/storage/observations.csv"));
    assert_eq!(
        out,
        format!(
            "name,value\nDG_RESOURCE_WEATHER_API_BASE_URL,https://api.example.org\n\
             DG_RESOURCE_WEATHER_API_RETRIES,3\nDG_RESOURCE_WEATHER_API_TOKEN,{TOKEN}\n\
             DG_RESOURCE_WEATHER_API_VERBOSE,true\n"
        )
    );
    // DG_CONTEXT: the non-secret fields, typed; never the secret.
    let ctx: serde_json::Value =
        serde_json::from_str(&read(p.path().join("context.json"))).unwrap();
    assert_eq!(
        ctx["resources"],
        serde_json::json!({"weather_api": {"base_url": "https://api.example.org", "retries": 3, "verbose": true}})
    );
    assert!(!read(p.path().join("context.json")).contains(TOKEN));
    // An asset that declares none gets none.
    assert_eq!(read(p.path().join(".dg/storage/plain.csv")), "n\n0\n");
}

#[test]
fn an_unset_secret_variable_stops_the_run_naming_it() {
    let p = one_file(SETTINGS);
    let r = dg_with_env(
        p.path(),
        &["materialize", "--select", "observations"],
        &[("DG_NOW", NOW)],
    );
    assert_fails_with(&r, 2, &["WEATHER_TOKEN"]);
    assert!(!p.path().join(".dg/storage/observations.csv").exists());
}

/// The masking grep: a run with a failing step that prints its token (and
/// the password of a URL), a step that records it as metadata, and every
/// command that shows the run afterwards. The secret appears nowhere: not
/// in any output, not in any file under the state folder (state database,
/// logs), except where the step stored it as data on purpose (none here).
#[test]
fn a_secret_is_masked_in_every_output_of_a_run_and_in_the_state() {
    let defs = format!(
        r#"
[resources.weather_api]
type = "settings"
base_url = "https://api.example.org"
token = "${{env:WEATHER_TOKEN}}"
db_url = "postgres://dg:{PG_PASSWORD}@db.example.org/x"
secrets = ["token"]

[assets.leaky]
resources = ["weather_api"]
shell = '''
echo "calling with token $DG_RESOURCE_WEATHER_API_TOKEN"
echo "and url $DG_RESOURCE_WEATHER_API_DB_URL" >&2
printf '{{"metadata": {{"used": "%s"}}}}\n' "$DG_RESOURCE_WEATHER_API_TOKEN" >> "$DG_MESSAGES"
printf 'x\n1\n' > "$DG_OUTPUT"
'''

[assets.failing]
resources = ["weather_api"]
shell = '''
echo "token=$DG_RESOURCE_WEATHER_API_TOKEN; split: $(printf %s "$DG_RESOURCE_WEATHER_API_TOKEN" | cut -c1-5)"
echo "fatal: bad token $DG_RESOURCE_WEATHER_API_TOKEN" >&2
exit 3
'''
"#
    );
    let p = one_file(&defs);
    let mut outputs: Vec<(String, Run)> = Vec::new();
    let run = dg(p.path(), &["materialize"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    // The failed step's tail is shown, masked.
    assert_contains(&run.stderr, &["fatal: bad token ***"]);
    outputs.push(("materialize".into(), run));
    let run = dg(p.path(), &["materialize", "--json"]);
    let summary = json(&run);
    let run_id = summary["run_id"].as_str().unwrap().to_string();
    outputs.push(("materialize --json".into(), run));
    for args in [
        vec!["runs"],
        vec!["runs", "--json"],
        vec!["runs", "show", &run_id],
        vec!["runs", "show", &run_id, "--json"],
        vec!["logs", &run_id],
        vec!["logs", &run_id, "failing"],
        vec!["list", "defs"],
        vec!["list", "defs", "--json"],
        vec!["check", "defs", "--json"],
        vec!["status", "--json"],
        vec!["plan", "--json"],
    ] {
        let r = dg(p.path(), &args);
        outputs.push((args.join(" "), r));
    }
    // Without the variable, the check still masks the literal URL password.
    let r = dg_with_env(p.path(), &["list", "defs"], &[("DG_NOW", NOW)]);
    outputs.push(("list defs (token unset)".into(), r));
    for (what, r) in &outputs {
        for secret in [TOKEN, PG_PASSWORD] {
            assert!(
                !r.stdout.contains(secret) && !r.stderr.contains(secret),
                "`dg {what}` shows the secret:\n{}\n{}",
                r.stdout,
                r.stderr
            );
        }
    }
    // What the step said is still there, masked.
    let logs = &outputs
        .iter()
        .find(|(w, _)| w.starts_with("logs"))
        .unwrap()
        .1;
    assert_contains(
        &logs.stdout,
        &[
            "calling with token ***",
            "and url postgres://dg:***@db.example.org/x",
        ],
    );
    let show = &outputs
        .iter()
        .find(|(w, _)| w.starts_with("runs show") && w.ends_with("--json"))
        .unwrap()
        .1;
    assert_contains(&show.stdout, &["\"used\": \"***\""]);
    // Every file dg wrote under the state folder: the state database (and
    // its WAL), logs, scratch space.
    let state = p.path().join(".dg");
    let mut files = 0;
    for f in walkdir::WalkDir::new(&state) {
        let f = f.unwrap();
        if !f.file_type().is_file() {
            continue;
        }
        files += 1;
        let bytes = std::fs::read(f.path()).unwrap();
        for secret in [TOKEN, PG_PASSWORD] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds the secret",
                f.path().display()
            );
        }
    }
    assert!(files >= 3, "the state folder holds the db and the logs");
}

const PROFILES_DG_TOML: &str = r#"
[profiles.prod.env]
API_BASE = "https://prod.example.org"
REGION = "eu"

[profiles.prod.resources.weather_api]
type = "settings"
base_url = "${env:API_BASE}"
token = "${env:WEATHER_TOKEN}"
secrets = ["token"]

[profiles.staging.env]
API_BASE = "https://staging.example.org"
"#;

const PROFILES_DEFS: &str = r#"
[resources.weather_api]
type = "settings"
base_url = "${env:API_BASE:-https://dev.example.org}"
mode = "dev"

[assets.obs]
resources = ["weather_api"]
shell = '''
printf 'base,mode,region\n%s,%s,%s\n' "$DG_RESOURCE_WEATHER_API_BASE_URL" "${DG_RESOURCE_WEATHER_API_MODE:-none}" "${REGION:-none}" > "$DG_OUTPUT"
'''
"#;

#[test]
fn a_profile_replaces_resources_whole_sets_the_environment_and_is_recorded() {
    let p = project(&[
        ("dg.toml", PROFILES_DG_TOML),
        ("defs/a.toml", PROFILES_DEFS),
    ]);
    let out = p.path().join(".dg/storage/obs.csv");
    assert_ok(&dg(p.path(), &["materialize"]));
    assert_eq!(
        read(&out),
        "base,mode,region\nhttps://dev.example.org,dev,none\n"
    );
    // `mode` is gone: the profile's resource replaces the whole table.
    assert_ok(&dg(p.path(), &["materialize", "--profile", "prod"]));
    assert_eq!(
        read(&out),
        "base,mode,region\nhttps://prod.example.org,none,eu\n"
    );
    // DG_PROFILE does the same; the profile's env also feeds `${env:}` of the defs.
    assert_ok(&dg_env(
        p.path(),
        &["materialize"],
        &[("DG_PROFILE", "staging")],
    ));
    assert_eq!(
        read(&out),
        "base,mode,region\nhttps://staging.example.org,dev,none\n"
    );
    let runs = json(&dg(p.path(), &["runs", "--json"]));
    let profiles: Vec<&serde_json::Value> =
        items(&runs["runs"]).iter().map(|r| &r["profile"]).collect();
    assert_eq!(
        profiles,
        [
            &serde_json::json!("staging"),
            &serde_json::json!("prod"),
            &serde_json::Value::Null
        ]
    );
    let human = dg(p.path(), &["runs"]);
    assert_contains(&human.stdout, &["profile=prod"]);
}

#[test]
fn an_unknown_profile_is_a_usage_error_listing_the_known_ones() {
    let p = project(&[
        ("dg.toml", PROFILES_DG_TOML),
        ("defs/a.toml", PROFILES_DEFS),
    ]);
    for args in [
        vec!["materialize", "--profile", "prd"],
        vec!["check", "defs", "--profile", "prd"],
    ] {
        let r = dg(p.path(), &args);
        assert_fails_with(&r, 2, &["unknown profile `prd`"]);
        assert_contains(&r.stderr, &["did you mean `prod`?", "`prod`, `staging`"]);
    }
    assert!(!p.path().join(".dg/storage/obs.csv").exists());
}

#[test]
fn check_defs_validates_every_profile_and_the_selected_one_in_full() {
    let bad = PROFILES_DG_TOML.replace(
        "[profiles.staging.env]",
        "[profiles.staging.resources.weather_api]\ntype = \"settings\"\nurl = [1]\n\n[profiles.staging.env]",
    );
    let p = project(&[("dg.toml", &bad), ("defs/a.toml", PROFILES_DEFS)]);
    let r = dg(p.path(), &["check", "defs"]);
    assert_fails_with(
        &r,
        2,
        &[
            "field `url` of resource `weather_api` must be a string, number or boolean",
            "dg.toml:",
        ],
    );
    // A profile that breaks an asset (an I/O manager where settings are needed).
    let p = project(&[
        (
            "dg.toml",
            "[profiles.prod.resources.weather_api]\ntype = \"fs\"\n",
        ),
        ("defs/a.toml", PROFILES_DEFS),
    ]);
    assert_ok(&dg(p.path(), &["check", "defs"]));
    let r = dg(p.path(), &["check", "defs", "--profile", "prod"]);
    assert_fails_with(
        &r,
        2,
        &["lists `weather_api` in `resources`, but it is an I/O manager"],
    );
}

const CONFIG_DEFS: &str = r#"
[assets.obs]
config = { window_days = 7, label = "base", ratio = 0.5 }
shell = '''
printf '%s\n' "$DG_CONFIG" > "$DG_OUTPUT"
echo obs >> ran.log
'''

[assets.other]
config = { window_days = 1 }
config_affects_staleness = true
shell = '''
printf '%s\n' "$DG_CONFIG" > "$DG_OUTPUT"
echo other >> ran.log
'''

[assets.none]
shell = '''
printf '%s\n' "${DG_CONFIG:-unset}" > "$DG_OUTPUT"
'''
"#;

fn stored(p: &Path, asset: &str) -> serde_json::Value {
    let text = read(p.join(format!(".dg/storage/{asset}.csv")));
    serde_json::from_str(text.trim()).unwrap_or_else(|_| serde_json::json!(text.trim()))
}

#[test]
fn run_config_defaults_overrides_and_the_record() {
    let p = one_file(CONFIG_DEFS);
    assert_ok(&dg(p.path(), &["materialize"]));
    assert_eq!(
        stored(p.path(), "obs"),
        serde_json::json!({"window_days": 7, "label": "base", "ratio": 0.5})
    );
    assert_eq!(stored(p.path(), "none"), serde_json::json!("unset"));
    // ASSET.FIELD for one asset, FIELD for every selected asset that has it;
    // values are TOML scalars (an int where a float is expected is fine),
    // other text is a string.
    let r = dg(
        p.path(),
        &[
            "materialize",
            "--json",
            "--config",
            "window_days=14",
            "--config",
            "obs.label=hello world",
            "--config",
            "obs.ratio=2",
        ],
    );
    assert_ok(&r);
    let run_id = json(&r)["run_id"].as_str().unwrap().to_string();
    assert_eq!(
        stored(p.path(), "obs"),
        serde_json::json!({"window_days": 14, "label": "hello world", "ratio": 2.0})
    );
    assert_eq!(
        stored(p.path(), "other"),
        serde_json::json!({"window_days": 14})
    );
    let show = json(&dg(p.path(), &["runs", "show", &run_id, "--json"]));
    assert_eq!(
        show["run"]["config"],
        serde_json::json!({"obs": {"window_days": 14, "label": "hello world", "ratio": 2.0}, "other": {"window_days": 14}})
    );
}

#[test]
fn bad_config_overrides_are_usage_errors_and_nothing_runs() {
    let p = one_file(CONFIG_DEFS);
    let r = dg(
        p.path(),
        &[
            "materialize",
            "--config",
            "obs.windw_days=3",
            "--config",
            "obs.window_days=soon",
            "--config",
            "nope=1",
            "--config",
            "ghost.x=1",
            "--config",
            "noequals",
        ],
    );
    assert_fails_with(
        &r,
        2,
        &[
            "asset `obs` has no config field `windw_days` (its fields: `window_days`, `label`, `ratio`)",
            "config field `window_days` of asset `obs` is an integer, not a string",
            "no selected asset has a config field `nope`",
            "unknown asset `ghost`",
            "`--config noequals` has no `=`",
        ],
    );
    assert!(!p.path().join("ran.log").exists());
}

#[test]
fn a_changed_config_makes_a_partition_stale_only_when_the_asset_opts_in() {
    let p = one_file(CONFIG_DEFS);
    assert_ok(&dg(p.path(), &["materialize"]));
    std::fs::remove_file(p.path().join("ran.log")).unwrap();
    assert_ok(&dg(p.path(), &["materialize", "--stale"]));
    assert!(!p.path().join("ran.log").exists(), "nothing is stale");
    let r = dg(
        p.path(),
        &["materialize", "--stale", "--config", "window_days=30"],
    );
    assert_ok(&r);
    // `other` opted in; `obs` did not, though its config changed too.
    assert_eq!(read(p.path().join("ran.log")), "other\n");
    std::fs::remove_file(p.path().join("ran.log")).unwrap();
    // The same config again: fresh.
    assert_ok(&dg(
        p.path(),
        &["materialize", "--stale", "--config", "window_days=30"],
    ));
    assert!(!p.path().join("ran.log").exists());
}

#[test]
fn per_file_defaults_apply_to_that_files_assets_and_an_assets_own_field_wins() {
    let p = project(&[
        (
            "defs/raw.toml",
            r#"
[defaults]
key_prefix = "raw"
group = "ingest"
io_manager = "lake"
partitions = { type = "static", keys = ["us", "eu"] }
tags = { team = "data", tier = "1" }

[resources.lake]
type = "fs"
base_dir = "lake"

[assets.events]
tags = { tier = "2" }
shell = "printf 'k\n%s\n' \"$DG_PARTITION_KEY\" > \"$DG_OUTPUT\""

[assets.users]
group = "people"
partitions = "days"
io_manager = "io_manager"
shell = "printf 'k\n%s\n' \"$DG_PARTITION_KEY\" > \"$DG_OUTPUT\""
"#,
        ),
        (
            "defs/other.toml",
            r#"
[partitions.days]
type = "static"
keys = ["d1"]

[assets.report]
deps = ["raw/events"]
shell = "cat \"$DG_INPUT_EVENTS\" > \"$DG_OUTPUT\""
"#,
        ),
    ]);
    let defs = json(&dg(p.path(), &["list", "defs", "--json"]));
    let asset = |k: &str| find(&defs["assets"], "key", k).clone();
    let events = asset("raw/events");
    assert_eq!(events["group"], "ingest");
    assert_eq!(events["io_manager"], "lake");
    assert_eq!(
        events["tags"],
        serde_json::json!({"team": "data", "tier": "2"})
    );
    assert_eq!(
        events["partitions"]["keys"],
        serde_json::json!(["us", "eu"])
    );
    let users = asset("raw/users");
    assert_eq!(users["group"], "people");
    assert_eq!(users["io_manager"], "io_manager");
    assert_eq!(users["partitions"], "days");
    assert_eq!(
        users["tags"],
        serde_json::json!({"team": "data", "tier": "1"})
    );
    let report = asset("report");
    assert_eq!(report["group"], "default");
    assert_eq!(report["io_manager"], "io_manager");
    let r = dg(p.path(), &["materialize", "--select", "+report", "--json"]);
    assert_ok(&r);
    let v = json(&r);
    assert_eq!(step(&v, "raw/events[us]")["status"], "success");
    assert!(p.path().join("lake/raw/events/eu.csv").is_file());
}

#[test]
fn settings_mistakes_are_located_errors_reported_together() {
    let p = one_file(
        r#"
[defaults]
key_prefx = "x"

[resources.api]
type = "settings"
token = "t"
nested = { a = 1 }
secrets = ["tokn"]

[resources.store]
type = "fs"

[assets.a]
resources = ["store", "apii"]
io_manager = "api"
shell = "true"
"#,
    );
    let r = dg(p.path(), &["check", "defs"]);
    assert_fails_with(
        &r,
        2,
        &[
            "unknown field `key_prefx` in `[defaults]`",
            "field `nested` of resource `api` must be a string, number or boolean, found",
            "`secrets` of resource `api` names `tokn`, which is not one of its fields",
            "did you mean `token`?",
            "lists `store` in `resources`, but it is an I/O manager (type `fs`)",
            "uses unknown resource `apii`",
            "defs/a.toml:",
        ],
    );
    let p = one_file(
        "[resources.api]\ntype = \"settings\"\n\n[assets.a]\nio_manager = \"api\"\nshell = \"true\"\n\n\
         [assets.b]\nshell = \"true\"\n[assets.b.ins.a]\ninput_manager = \"api\"\n",
    );
    let r = dg(p.path(), &["check", "defs"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("uses settings resource `api` as its I/O manager")
            && r.stderr.contains("defs/a.toml:5:14")
            && r.stderr.contains(
                "input `a` of asset `b` uses settings resource `api` as its input manager"
            ),
        "{}",
        r.stderr
    );
}

/// The profile and config are recorded by the Postgres state store too.
#[test]
fn postgres_state_store_records_profile_and_config() {
    // A fresh schema for the state store, dropped with `pg`.
    let Some(pg) = crate::backend::Pg::open() else {
        return;
    };
    let state_url = pg.state_url();
    let dg_toml = format!("[state]\nurl = \"{state_url}\"\n{PROFILES_DG_TOML}");
    let defs = format!("{PROFILES_DEFS}\n[assets.obs.config]\nn = 1\n");
    let p = project(&[("dg.toml", &dg_toml), ("defs/a.toml", &defs)]);
    let r = dg(
        p.path(),
        &[
            "materialize",
            "--profile",
            "prod",
            "--config",
            "n=2",
            "--json",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let runs = json(&dg(p.path(), &["runs", "--json"]));
    assert_eq!(runs["runs"][0]["profile"], "prod");
    assert_eq!(
        runs["runs"][0]["config"],
        serde_json::json!({"obs": {"n": 2}})
    );
    // The password of the state URL is never shown.
    if let Some(pw) = pg
        .url
        .split("://")
        .nth(1)
        .and_then(|r| r.rsplit_once('@'))
        .and_then(|(ui, _)| ui.split_once(':'))
        .map(|(_, pw)| pw.to_string())
        .filter(|pw| pw.len() > 2)
    {
        assert!(!r.stderr.contains(&pw) && !r.stdout.contains(&pw));
    }
}
