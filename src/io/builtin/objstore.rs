//! `type = "object_store"`: one object per output (partition) in S3, Google
//! Cloud Storage, Azure Blob Storage or a local folder, through the
//! `object_store` crate.
//!
//! `url` names the bucket and prefix (`s3://bucket/prefix`, `gs://…`,
//! `az://container/…`, `file:///abs/folder`); the object below it is the
//! `path` template's (default: the `fs` layout). The store's options are the
//! crate's config keys (`region`, `endpoint`, `allow_http`,
//! `access_key_id`, `secret_access_key`, …), on top of what the usual
//! environment variables (`AWS_…`, `GOOGLE_…`, `AZURE_…`) say. Secret
//! values never leave the manager: every message goes through
//! [`Secrets::redact`].
//!
//! Writes are atomic per object: a small output is one `PUT`, a large one a
//! multipart upload that the store makes visible only when it completes
//! (and that is aborted on error). Inputs are streamed to files in the
//! run's scratch folder, which dg hands to the step.
//!
//! The crate is async; the manager keeps a small current-thread tokio
//! runtime and blocks on it, so the rest of dg stays synchronous.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures_util::StreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, ObjectStoreScheme, PutPayload, WriteMultipart};
use serde::Deserialize;

use crate::io::path_template::PathTemplate;
use crate::io::{
    Config, ConfigError, Data, Format, InputContext, IoManager, Loaded, OutputContext, ResourceCx,
    ResourceInfo, ResourceType, Stored, table,
};
use crate::secrets::Secrets;

/// Outputs up to this size are one `PUT`; larger ones a multipart upload.
const SINGLE_PUT_MAX: u64 = 16 * 1024 * 1024;
/// The part size of multipart uploads (S3 wants at least 5 MiB).
const PART_SIZE: usize = 16 * 1024 * 1024;

/// `type = "object_store"`. Other fields are the store's options, checked
/// against the crate's names by [`ObjectStoreType`] (serde cannot deny
/// unknown fields next to a flattened map).
#[derive(Debug, Deserialize)]
pub struct ObjectStoreConfig {
    /// `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`, `file:///folder`.
    pub url: String,
    /// The format objects are stored in; default `csv`.
    #[serde(default = "crate::io::default_format")]
    pub format: Format,
    /// Where below the prefix an output goes ([`crate::io::path_template`]).
    pub path: Option<String>,
    /// The store's options, under the `object_store` crate's names.
    #[serde(flatten)]
    pub options: BTreeMap<String, OptionValue>,
}

/// An option's value: TOML strings, booleans and numbers are all accepted
/// (`allow_http = true`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OptionValue {
    Str(String),
    Bool(bool),
    Int(i64),
}

impl OptionValue {
    fn as_string(&self) -> String {
        match self {
            OptionValue::Str(s) => s.clone(),
            OptionValue::Bool(b) => b.to_string(),
            OptionValue::Int(i) => i.to_string(),
        }
    }
}

/// Options suggested when one is misspelt (the crate accepts more, and
/// their `aws_`/`google_`/`azure_` spellings).
const S3_KEYS: &[&str] = &[
    "region",
    "endpoint",
    "access_key_id",
    "secret_access_key",
    "session_token",
    "allow_http",
    "virtual_hosted_style_request",
    "skip_signature",
    "checksum_algorithm",
    "imdsv1_fallback",
    "unsigned_payload",
    "request_payer",
    "timeout",
    "connect_timeout",
];
const GCS_KEYS: &[&str] = &[
    "service_account",
    "service_account_key",
    "application_credentials",
    "allow_http",
    "timeout",
    "connect_timeout",
];
const AZURE_KEYS: &[&str] = &[
    "account_name",
    "access_key",
    "client_id",
    "client_secret",
    "tenant_id",
    "sas_key",
    "token",
    "use_emulator",
    "endpoint",
    "use_fabric_endpoint",
    "allow_http",
    "timeout",
    "connect_timeout",
];

/// Whether an option holds a secret (its value is masked everywhere).
pub fn is_secret_option(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    !n.ends_with("access_key_id")
        && [
            "secret",
            "token",
            "password",
            "sas",
            "access_key",
            "account_key",
            "service_account_key",
        ]
        .iter()
        .any(|w| n.contains(w))
}

/// A store URL that names no store dg can use.
#[derive(Debug, thiserror::Error)]
enum BadUrl {
    #[error(
        "`{url}` is not a URL ({error}): write `s3://bucket/prefix`, `gs://…`, `az://…` or `file:///folder`"
    )]
    NotUrl { url: String, error: url::ParseError },
    #[error("`{0}://` is not a supported store: use `s3://`, `gs://`, `az://` or `file://`")]
    Unsupported(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    S3,
    Gcs,
    Azure,
    Local,
}

impl Kind {
    fn of(url: &str) -> Result<(Kind, url::Url, ObjPath), BadUrl> {
        let parsed = url::Url::parse(url).map_err(|error| BadUrl::NotUrl {
            url: url.to_string(),
            error,
        })?;
        let unsupported = || BadUrl::Unsupported(parsed.scheme().to_string());
        let (scheme, path) = ObjectStoreScheme::parse(&parsed).map_err(|_| unsupported())?;
        let kind = match scheme {
            ObjectStoreScheme::AmazonS3 => Kind::S3,
            ObjectStoreScheme::GoogleCloudStorage => Kind::Gcs,
            ObjectStoreScheme::MicrosoftAzure => Kind::Azure,
            ObjectStoreScheme::Local => Kind::Local,
            _ => return Err(unsupported()),
        };
        Ok((kind, parsed, path))
    }

    fn keys(self) -> &'static [&'static str] {
        match self {
            Kind::S3 => S3_KEYS,
            Kind::Gcs => GCS_KEYS,
            Kind::Azure => AZURE_KEYS,
            Kind::Local => &[],
        }
    }

    /// Whether the crate knows `name` for this store.
    fn accepts(self, name: &str) -> bool {
        let n = name.to_ascii_lowercase();
        match self {
            Kind::S3 => n.parse::<object_store::aws::AmazonS3ConfigKey>().is_ok(),
            Kind::Gcs => n.parse::<object_store::gcp::GoogleConfigKey>().is_ok(),
            Kind::Azure => n.parse::<object_store::azure::AzureConfigKey>().is_ok(),
            Kind::Local => false,
        }
    }
}

/// The resource type: checks the URL's scheme and every option name when
/// definitions are validated.
pub struct ObjectStoreType;

impl ResourceType for ObjectStoreType {
    fn validate(&self, config: &Config<'_>) -> Result<ResourceInfo, ConfigError> {
        let path = crate::io::path_template_of(config)?;
        let c: ObjectStoreConfig = config.deserialize()?;
        // A URL from the environment is checked when the run starts.
        if !c.url.contains("${") {
            let (kind, _, _) = Kind::of(&c.url).map_err(|e| ConfigError {
                message: e.to_string(),
                span: config.field_span("url"),
            })?;
            for name in c.options.keys() {
                if !kind.accepts(name) {
                    let valid: Vec<&str> = ["url", "format", "path"]
                        .into_iter()
                        .chain(kind.keys().iter().copied())
                        .collect();
                    return Err(ConfigError {
                        message: format!(
                            "unknown field `{name}`\nhelp: {}",
                            crate::diag::suggest(name, &valid, "valid fields")
                        ),
                        span: config.key_span(name),
                    });
                }
            }
        }
        Ok(ResourceInfo {
            format: Some(c.format),
            path: path.map(Arc::new),
        })
    }

    fn create(&self, config: &Config<'_>, cx: &ResourceCx) -> anyhow::Result<Arc<dyn IoManager>> {
        let c: ObjectStoreConfig = config.deserialize().map_err(|e| anyhow!("{}", e.message))?;
        Ok(Arc::new(ObjectStoreManager::new(c, cx)?))
    }
}

/// One run's connection to a store.
pub struct ObjectStoreManager {
    store: Arc<dyn ObjectStore>,
    /// The prefix inside the bucket (may be empty).
    prefix: ObjPath,
    /// The URL with no trailing `/`, as shown in `dg/path`.
    base_url: String,
    format: Format,
    path: Option<PathTemplate>,
    rt: tokio::runtime::Runtime,
    secrets: Secrets,
    /// Downloads and conversions: in the run's scratch tree, removed when the run ends.
    scratch: PathBuf,
    counter: AtomicU64,
}

impl ObjectStoreManager {
    pub fn new(c: ObjectStoreConfig, cx: &ResourceCx) -> anyhow::Result<Self> {
        let mut secrets = Secrets::new(&c.url, None);
        for (k, v) in &c.options {
            if is_secret_option(k) {
                secrets = secrets.with_word(&v.as_string());
            }
        }
        for (k, v) in std::env::vars() {
            let upper = k.to_ascii_uppercase();
            if (upper.starts_with("AWS_")
                || upper.starts_with("GOOGLE_")
                || upper.starts_with("AZURE_"))
                && is_secret_option(&upper)
            {
                secrets = secrets.with_word(&v);
            }
        }
        let (kind, url, prefix) =
            Kind::of(&c.url).map_err(|m| anyhow!("resource `{}`: {m}", cx.resource_key))?;
        let retry = object_store::RetryConfig {
            max_retries: 2,
            retry_timeout: Duration::from_secs(20),
            ..Default::default()
        };
        let opts: Vec<(String, String)> = c
            .options
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_string()))
            .collect();
        let unknown = |k: &str| {
            anyhow!(
                "resource `{}`: unknown option `{k}` for a {kind:?} store",
                cx.resource_key
            )
        };
        // A cloud's store from the environment, the URL and the options;
        // the clouds' builders differ only in their types (and their
        // option keys').
        macro_rules! cloud {
            ($builder:ty) => {{
                let mut b = <$builder>::from_env()
                    .with_url(url.as_str())
                    .with_retry(retry);
                for (k, v) in &opts {
                    b = b.with_config(k.parse().map_err(|_| unknown(k))?, v);
                }
                b.build().map(|s| Arc::new(s) as _)
            }};
        }
        let built: Result<Arc<dyn ObjectStore>, object_store::Error> = match kind {
            Kind::S3 => cloud!(object_store::aws::AmazonS3Builder),
            Kind::Gcs => cloud!(object_store::gcp::GoogleCloudStorageBuilder),
            Kind::Azure => cloud!(object_store::azure::MicrosoftAzureBuilder),
            Kind::Local => {
                if let Some((k, _)) = opts.first() {
                    return Err(unknown(k));
                }
                Ok(Arc::new(object_store::local::LocalFileSystem::new()) as _)
            }
        };
        let store = built.map_err(|e| {
            anyhow!(
                "resource `{}`: {}",
                cx.resource_key,
                secrets.redact(&e.to_string())
            )
        })?;
        let path = match &c.path {
            Some(p) => Some(PathTemplate::parse(p).map_err(|e| anyhow!("{}", e.message))?),
            None => None,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the object store client")?;
        Ok(ObjectStoreManager {
            store,
            prefix,
            base_url: secrets.masked_url().trim_end_matches('/').to_string(),
            format: c.format,
            path,
            rt,
            secrets,
            scratch: cx.state_dir.join("runs").join(&cx.run_id).join(format!(
                "object_store-{}",
                crate::names::slug(&cx.resource_key)
            )),
            counter: AtomicU64::new(0),
        })
    }

    /// The object of an output, and its path relative to the prefix.
    fn location(&self, ctx: &OutputContext) -> anyhow::Result<(ObjPath, String)> {
        let rel = match &self.path {
            Some(t) => t.render(&ctx.asset_key, ctx.partition.as_ref(), self.format)?,
            None => super::fs::relative_path(&ctx.asset_key, ctx.partition.as_ref(), self.format)?
                .to_string_lossy()
                .into_owned(),
        };
        let full = if self.prefix.as_ref().is_empty() {
            rel.clone()
        } else {
            format!("{}/{rel}", self.prefix.as_ref())
        };
        let loc = ObjPath::parse(&full).map_err(|e| {
            anyhow!(
                "`{}`: `{rel}` is not a valid object name: {e}",
                ctx.asset_key
            )
        })?;
        Ok((loc, rel))
    }

    fn shown(&self, rel: &str) -> String {
        format!("{}/{rel}", self.base_url)
    }

    /// An error from the store, with secrets removed and what was being done.
    fn err(&self, what: String, e: impl std::fmt::Display) -> anyhow::Error {
        anyhow!("{}", self.secrets.redact(&format!("{what}: {e}")))
    }

    fn scratch_file(&self, ext: &str) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(&self.scratch)
            .with_context(|| format!("cannot create `{}`", self.scratch.display()))?;
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        Ok(self.scratch.join(format!("{n}{ext}")))
    }

    /// Uploads `file` to `loc`: one PUT, or a multipart upload aborted on error.
    fn upload(&self, file: &Path, loc: &ObjPath, what: &str) -> anyhow::Result<u64> {
        let size = std::fs::metadata(file)
            .with_context(|| format!("cannot read `{}`", file.display()))?
            .len();
        if size <= SINGLE_PUT_MAX {
            let bytes =
                std::fs::read(file).with_context(|| format!("cannot read `{}`", file.display()))?;
            self.rt
                .block_on(self.store.put(loc, PutPayload::from(bytes)))
                .map_err(|e| self.err(format!("cannot store {what}"), e))?;
            return Ok(size);
        }
        let mut f = std::fs::File::open(file)
            .with_context(|| format!("cannot read `{}`", file.display()))?;
        self.rt.block_on(async {
            let upload = self
                .store
                .put_multipart(loc)
                .await
                .map_err(|e| self.err(format!("cannot start storing {what}"), e))?;
            let mut w = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
            let mut buf = vec![0u8; 1024 * 1024];
            loop {
                let n = match f.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => {
                        let _ = w.abort().await;
                        return Err(anyhow!("cannot read `{}`: {e}", file.display()));
                    }
                };
                if let Err(e) = w.wait_for_capacity(4).await {
                    let _ = w.abort().await;
                    return Err(self.err(format!("cannot store {what}"), e));
                }
                w.write(&buf[..n]);
            }
            w.finish()
                .await
                .map_err(|e| self.err(format!("cannot store {what}"), e))?;
            Ok(size)
        })
    }

    /// Streams an object to a scratch file.
    fn download(&self, out: &OutputContext) -> anyhow::Result<Data> {
        let (loc, rel) = self.location(out)?;
        let dest = self.scratch_file(self.format.extension())?;
        let what = describe(out);
        self.rt.block_on(async {
            let got = match self.store.get(&loc).await {
                Ok(g) => g,
                Err(object_store::Error::NotFound { .. }) => {
                    return Err(not_materialized(out, &self.shown(&rel)));
                }
                Err(e) => {
                    return Err(
                        self.err(format!("cannot load {what} from `{}`", self.shown(&rel)), e)
                    );
                }
            };
            let mut f = std::io::BufWriter::with_capacity(
                1024 * 1024,
                std::fs::File::create(&dest)
                    .with_context(|| format!("cannot create `{}`", dest.display()))?,
            );
            let mut stream = got.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| {
                    self.err(format!("cannot load {what} from `{}`", self.shown(&rel)), e)
                })?;
                f.write_all(&chunk)
                    .with_context(|| format!("cannot write `{}`", dest.display()))?;
            }
            f.flush()
                .with_context(|| format!("cannot write `{}`", dest.display()))?;
            Ok(())
        })?;
        Ok(Data::File {
            path: dest,
            format: self.format,
        })
    }
}

fn describe(out: &OutputContext) -> String {
    match &out.partition {
        Some(p) => format!("`{}` partition `{}`", out.asset_key, p.key),
        None => format!("`{}`", out.asset_key),
    }
}

fn not_materialized(out: &OutputContext, place: &str) -> anyhow::Error {
    let flag = out
        .partition
        .as_ref()
        .map(|p| format!(" --partition '{}'", p.key.replace('\'', r"'\''")))
        .unwrap_or_default();
    anyhow!(
        "{} has not been materialized: `{place}` does not exist\n\
         hint: materialize it with `dg materialize --select {}{flag}`",
        describe(out),
        out.asset_key
    )
}

impl IoManager for ObjectStoreManager {
    fn handle_output(&self, ctx: &OutputContext, data: Data) -> anyhow::Result<Stored> {
        let (loc, rel) = self.location(ctx)?;
        let tabular = |f: Format| f != Format::File;
        let produced = match &data {
            Data::File { format, .. } => Some(*format),
            Data::Table(_) => Some(Format::Csv),
            Data::Bytes(_) => Some(Format::File),
        };
        if produced.is_some_and(|f| tabular(f) != tabular(self.format)) {
            bail!(
                "resource `{}` stores {} but `{}` produced {}: give the asset a matching `format`",
                ctx.resource_key,
                if tabular(self.format) {
                    format!("{} tables", self.format.name())
                } else {
                    "opaque files (`format = \"file\"`)".into()
                },
                ctx.asset_key,
                match &data {
                    Data::File { format, .. } => format.name().to_string(),
                    Data::Table(_) => "a table".into(),
                    Data::Bytes(_) => "opaque bytes".into(),
                }
            );
        }
        let dest = self.scratch_file(self.format.extension())?;
        let (file, rows) = match &data {
            Data::File { path, format } if *format == self.format => {
                let rows = match self.format {
                    Format::Parquet => Some(table::parquet_rows(path)?),
                    _ => None,
                };
                (path.clone(), rows)
            }
            Data::Bytes(b) => {
                std::fs::write(&dest, b.as_slice())
                    .with_context(|| format!("cannot write `{}`", dest.display()))?;
                (dest.clone(), None)
            }
            Data::File { path, format } => {
                let t = table::read(path, *format)?;
                table::write(&t, &dest, self.format)?;
                (dest.clone(), Some(t.num_rows() as u64))
            }
            Data::Table(t) => {
                table::write(t, &dest, self.format)?;
                (dest.clone(), Some(t.num_rows() as u64))
            }
        };
        let what = describe(ctx);
        let result = self.upload(&file, &loc, &what);
        let _ = std::fs::remove_file(&dest);
        let bytes = result?;
        let shown = self.shown(&rel);
        ctx.log
            .info(format_args!("stored {what} at {shown} ({bytes} bytes)"));
        Ok(Stored {
            path: Some(shown),
            rows,
            bytes: Some(bytes),
        })
    }

    fn load_input(&self, ctx: &InputContext) -> anyhow::Result<Loaded> {
        ctx.load_each(|out| self.download(out))
    }

    fn exists(&self, ctx: &OutputContext) -> anyhow::Result<bool> {
        let (loc, rel) = self.location(ctx)?;
        match self.rt.block_on(self.store.head(&loc)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.err(
                format!(
                    "cannot look for {} at `{}`",
                    describe(ctx),
                    self.shown(&rel)
                ),
                e,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::PartitionRef;

    #[test]
    fn secret_options() {
        for s in [
            "secret_access_key",
            "aws_secret_access_key",
            "AWS_SECRET_ACCESS_KEY",
            "session_token",
            "access_key",
            "sas_key",
            "client_secret",
            "service_account_key",
        ] {
            assert!(is_secret_option(s), "{s}");
        }
        for s in [
            "access_key_id",
            "AWS_ACCESS_KEY_ID",
            "region",
            "endpoint",
            "allow_http",
        ] {
            assert!(!is_secret_option(s), "{s}");
        }
    }

    #[test]
    fn option_names_are_the_crates() {
        assert!(Kind::S3.accepts("region"));
        assert!(Kind::S3.accepts("allow_http"));
        assert!(Kind::S3.accepts("aws_endpoint"));
        assert!(!Kind::S3.accepts("regoin"));
        assert!(Kind::Gcs.accepts("service_account"));
        assert!(Kind::Azure.accepts("account_name"));
        assert!(Kind::of("s3://b/p").is_ok());
        assert!(
            Kind::of("ftp://b/p")
                .unwrap_err()
                .to_string()
                .contains("not a supported store")
        );
        assert!(
            Kind::of("bucket")
                .unwrap_err()
                .to_string()
                .contains("is not a URL")
        );
    }

    /// A `file://` store through the whole manager: store, exists, load.
    #[test]
    fn local_store_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        std::fs::create_dir_all(&store).unwrap();
        let cfg: ObjectStoreConfig = toml::from_str(&format!(
            "url = \"file://{}\"\nformat = \"parquet\"\npath = \"{{key}}/{{partition}}.{{ext}}\"\n",
            store.display()
        ))
        .unwrap();
        let cx = ResourceCx {
            resource_key: "lake".into(),
            project_root: dir.path().into(),
            state_dir: dir.path().join(".dg"),
            run_id: "r1".into(),
        };
        let m = ObjectStoreManager::new(cfg, &cx).unwrap();
        let csv = dir.path().join("out.csv");
        std::fs::write(&csv, "a,b\n1,x\n2,y\n").unwrap();
        let ctx = OutputContext {
            asset_key: "raw/events".into(),
            partition: Some(PartitionRef {
                key: "2024-01-01".into(),
                dims: vec![],
                window: None,
            }),
            format: Format::Csv,
            resource_key: "lake".into(),
            metadata: Default::default(),
            run_id: "r1".into(),
            step_id: "s".into(),
            log: Default::default(),
        };
        assert!(!m.exists(&ctx).unwrap());
        let stored = m
            .handle_output(
                &ctx,
                Data::File {
                    path: csv,
                    format: Format::Csv,
                },
            )
            .unwrap();
        assert_eq!(stored.rows, Some(2));
        let obj = store.join("raw/events/2024-01-01.parquet");
        assert!(obj.is_file());
        assert!(
            stored
                .path
                .unwrap()
                .ends_with("/store/raw/events/2024-01-01.parquet")
        );
        assert!(m.exists(&ctx).unwrap());
        let data = m.download(&ctx).unwrap();
        let Data::File { path, format } = data else {
            panic!()
        };
        assert_eq!(format, Format::Parquet);
        assert_eq!(table::read(&path, Format::Parquet).unwrap().num_rows(), 2);
        let mut missing = ctx.clone();
        missing.partition.as_mut().unwrap().key = "2024-01-02".into();
        let e = m.download(&missing).unwrap_err().to_string();
        assert!(e.contains("has not been materialized"), "{e}");
    }
}
