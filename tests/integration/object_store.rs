//! The `object_store` manager against a real S3-compatible server: the one
//! `.ci/s3.sh` starts (moto), named by `DG_TEST_S3_ENDPOINT` and
//! `DG_TEST_S3_BUCKET`. Without them the tests are skipped, except under
//! `CI=true`, where they fail. Each test works below its own random prefix.

use std::sync::Arc;

use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::support::{
    assert_fails_with, assert_ok, dg_now, dg_now_with_env, json, one_file, read, service,
    unique_name,
};

const NOW: &str = "2024-01-04T00:00:00Z";
const SECRET: &str = "s3cr3t-d0-n0t-sh0w";

/// The test server's endpoint and bucket, or `None` (skipped) when
/// `DG_TEST_S3_ENDPOINT` is not set; a missing variable fails under CI.
pub fn s3() -> Option<(String, String)> {
    let endpoint = service("DG_TEST_S3_ENDPOINT", "object store", "s3.sh")?;
    let bucket = std::env::var("DG_TEST_S3_BUCKET").unwrap_or_else(|_| "dg-test".into());
    Some((endpoint, bucket))
}

/// A resource table for the server (`extra` adds fields).
pub(crate) fn resource(
    key: &str,
    endpoint: &str,
    bucket: &str,
    prefix: &str,
    extra: &str,
) -> String {
    format!(
        r#"[resources.{key}]
type = "object_store"
url = "s3://{bucket}/{prefix}"
endpoint = "{endpoint}"
allow_http = true
region = "us-east-1"
access_key_id = "dg-test"
secret_access_key = "{SECRET}"
{extra}
"#
    )
}

/// The client tests use to look at the bucket directly.
fn client(endpoint: &str, bucket: &str) -> (Arc<dyn ObjectStore>, tokio::runtime::Runtime) {
    let store = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id("dg-test")
        .with_secret_access_key("x")
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (Arc::new(store), rt)
}

fn list(endpoint: &str, bucket: &str, prefix: &str) -> Vec<String> {
    use futures_util::StreamExt;
    let (store, rt) = client(endpoint, bucket);
    let mut out: Vec<String> = rt.block_on(async {
        store
            .list(Some(&ObjPath::from(prefix)))
            .map(|m| m.unwrap().location.to_string())
            .collect()
            .await
    });
    out.sort();
    out
}

fn get(endpoint: &str, bucket: &str, key: &str) -> Vec<u8> {
    let (store, rt) = client(endpoint, bucket);
    rt.block_on(async {
        store
            .get(&ObjPath::parse(key).unwrap())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec()
    })
}

/// Every format, with a path template, read back by a downstream step.
#[test]
fn every_format_round_trips_through_s3() {
    let Some((endpoint, bucket)) = s3() else {
        return;
    };
    let prefix = unique_name();
    let mut defs = String::new();
    for f in ["csv", "jsonl", "parquet", "file"] {
        defs.push_str(&resource(
            &format!("s3_{f}"),
            &endpoint,
            &bucket,
            &format!("{prefix}/{f}"),
            &format!("format = \"{f}\"\npath = \"{{key}}/{{start:%Y}}/{{start:%m}}/{{partition}}.{{ext}}\""),
        ));
        let (write, fmt) = if f == "file" {
            (
                "printf 'raw\\000bytes %s' \"$DG_PARTITION_KEY\" > \"$DG_OUTPUT\"",
                "file",
            )
        } else {
            (
                "printf 'zip,day\\n02134,%s\\n' \"$DG_PARTITION_KEY\" > \"$DG_OUTPUT\"",
                "csv",
            )
        };
        defs.push_str(&format!(
            r#"
[assets.up_{f}]
partitions = "daily"
io_manager = "s3_{f}"
format = "{fmt}"
shell = "{}"

[assets.down_{f}]
partitions = "daily"
deps = ["up_{f}"]
format = "{fmt}"
io_manager = "{local}"
shell = "cat \"$DG_INPUT_UP_{}\"{glob} > \"$DG_OUTPUT\""
"#,
            write.replace('\\', "\\\\").replace('"', "\\\""),
            f.to_uppercase(),
            local = if f == "file" {
                "local_file"
            } else {
                "io_manager"
            },
            glob = if f == "file" { "/*" } else { "" },
        ));
    }
    defs.push_str("\n[partitions.daily]\ntype = \"daily\"\nstart = \"2024-01-01\"\n");
    defs.push_str("\n[resources.local_file]\ntype = \"fs\"\nformat = \"file\"\n");
    let dir = one_file(&defs);
    assert_ok(&dg_now(dir.path(), NOW, &["check", "defs"]));
    let run = dg_now(
        dir.path(),
        NOW,
        &[
            "materialize",
            "--partition-range",
            "2024-01-02...2024-01-03",
            "--json",
        ],
    );
    assert_ok(&run);
    let run_id = json(&run)["run_id"].as_str().unwrap().to_string();
    for f in ["csv", "jsonl", "parquet"] {
        assert_eq!(
            list(&endpoint, &bucket, &format!("{prefix}/{f}")),
            [
                format!("{prefix}/{f}/up_{f}/2024/01/2024-01-02.{f}"),
                format!("{prefix}/{f}/up_{f}/2024/01/2024-01-03.{f}"),
            ]
        );
        // What the step wrote is what the next step read: text stays text.
        assert_eq!(
            read(
                dir.path()
                    .join(format!(".dg/storage/down_{f}/2024-01-03.csv"))
            ),
            "zip,day\n02134,2024-01-03\n",
            "{f}"
        );
    }
    assert_eq!(
        get(
            &endpoint,
            &bucket,
            &format!("{prefix}/file/up_file/2024/01/2024-01-02")
        ),
        b"raw\0bytes 2024-01-02"
    );
    assert_eq!(
        std::fs::read(dir.path().join(".dg/storage/down_file/2024-01-02")).unwrap(),
        b"raw\0bytes 2024-01-02"
    );
    // The materialization records where the object is (not the secret).
    let hist = dg_now(dir.path(), NOW, &["runs", "show", &run_id, "--json"]);
    assert!(
        hist.stdout.contains(&format!(
            "s3://{bucket}/{prefix}/parquet/up_parquet/2024/01/2024-01-03.parquet"
        )),
        "{}",
        hist.stdout
    );
    // A second run sees the stored partitions (exists) and loads them again.
    let run = dg_now(
        dir.path(),
        NOW,
        &[
            "materialize",
            "--select",
            "down_csv",
            "--partition",
            "2024-01-02",
        ],
    );
    assert_ok(&run);
    for out in [&run.stdout, &run.stderr, &hist.stdout] {
        assert!(!out.contains(SECRET));
    }
}

/// A large output goes up in parts and comes back whole.
#[test]
fn a_large_output_is_a_multipart_upload() {
    let Some((endpoint, bucket)) = s3() else {
        return;
    };
    let prefix = unique_name();
    let dir = one_file(&format!(
        r#"{}
[assets.big]
format = "file"
io_manager = "lake"
shell = "head -c 40000000 /dev/urandom > \"$DG_OUTPUT\""

[resources.local_file]
type = "fs"
format = "file"

[assets.copy]
format = "file"
io_manager = "local_file"
deps = ["big"]
shell = "cp \"$DG_INPUT_BIG\" \"$DG_OUTPUT\""
"#,
        resource("lake", &endpoint, &bucket, &prefix, "format = \"file\"")
    ));
    assert_ok(&dg_now(dir.path(), NOW, &["materialize"]));
    let stored = get(&endpoint, &bucket, &format!("{prefix}/big"));
    assert_eq!(stored.len(), 40_000_000);
    assert_eq!(
        std::fs::read(dir.path().join(".dg/storage/copy")).unwrap(),
        stored
    );
}

/// An unreachable endpoint: a clear error, no secret, nothing recorded.
#[test]
fn an_endpoint_that_is_down_fails_clearly_and_records_nothing() {
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = one_file(&format!(
        r#"{}
[assets.a]
io_manager = "lake"
shell = "printf 'x\n1\n' > \"$DG_OUTPUT\""
"#,
        resource(
            "lake",
            &format!("http://127.0.0.1:{port}"),
            "bucket",
            "p",
            ""
        )
    ));
    let run = dg_now_with_env(
        dir.path(),
        NOW,
        &["materialize"],
        &[("AWS_SESSION_TOKEN", "env-t0ken-hidden")],
    );
    assert_fails_with(&run, 1, &["cannot store `a`"]);
    assert!(
        run.stderr.contains(&format!("127.0.0.1:{port}")),
        "the error names the endpoint: {}",
        run.stderr
    );
    let logs = crate::support::files_under(&dir.path().join(".dg/logs"));
    let mut all = run.stdout.clone() + &run.stderr;
    for l in logs {
        all.push_str(&read(dir.path().join(".dg/logs").join(l)));
    }
    assert!(!all.contains(SECRET), "{all}");
    assert!(!all.contains("env-t0ken-hidden"), "{all}");
    let status = json(&dg_now(dir.path(), NOW, &["status", "--json"]));
    assert_eq!(status["assets"][0]["materialized"], 0, "{status:#}");
    assert_eq!(status["assets"][0]["failed"], 1, "{status:#}");
}

/// Option names are the crate's; a misspelt one is a located error.
#[test]
fn unknown_options_are_located_errors() {
    let dir = one_file(
        r#"[resources.lake]
type = "object_store"
url = "s3://bucket/prefix"
regoin = "eu-west-1"

[resources.bad]
type = "object_store"
url = "ftp://host/x"
"#,
    );
    let run = dg_now(dir.path(), NOW, &["check", "defs"]);
    assert_fails_with(
        &run,
        2,
        &[
            "unknown field `regoin`",
            "did you mean `region`?",
            "defs/a.toml:4:1",
            "`ftp://` is not a supported store",
        ],
    );
}
