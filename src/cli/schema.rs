//! `dg schema`: the JSON Schemas of definitions files and `dg.toml`, and
//! the files editors read them from.
//!
//! Editors that understand the `#:schema` directive (taplo, Even Better
//! TOML) take the schema from a path relative to the file. `dg init`,
//! `dg scaffold defs` and `dg schema --write` keep both schemas in the
//! state folder (`<state>/schema/defs.json`, `config.json`), written by the
//! dg that runs, so they match its version; the files dg writes start with
//! a directive pointing there.

use std::path::{Path, PathBuf};

use crate::io::Registry;

/// Where the schemas live, below the state folder.
pub const DEFS_SCHEMA: &str = "schema/defs.json";
pub const CONFIG_SCHEMA: &str = "schema/config.json";

/// Writes both schemas into `state_dir/schema/` (replacing older ones,
/// atomically). Returns (defs, config) paths.
pub fn write_schemas(state_dir: &Path, registry: &Registry) -> std::io::Result<(PathBuf, PathBuf)> {
    let defs = state_dir.join(DEFS_SCHEMA);
    let config = state_dir.join(CONFIG_SCHEMA);
    std::fs::create_dir_all(state_dir.join("schema"))?;
    for (path, value) in [
        (&defs, crate::validate::schema::defs(registry)),
        (&config, crate::validate::schema::config(registry)),
    ] {
        let text = serde_json::to_string_pretty(&value).map_err(std::io::Error::other)? + "\n";
        let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)?;
    }
    Ok((defs, config))
}

/// The `#:schema` line for a TOML file at `file` whose schema is `schema`:
/// the path relative to the file's folder (absolute when there is none).
pub fn directive(file: &Path, schema: &Path) -> String {
    let dir = file.parent().unwrap_or(Path::new("."));
    let rel = pathdiff::diff_paths(schema, dir).unwrap_or_else(|| schema.to_path_buf());
    format!("#:schema {}\n", rel.to_string_lossy().replace('\\', "/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_are_relative_to_the_file() {
        let state = Path::new("/p/.dg");
        let defs = state.join(DEFS_SCHEMA);
        assert_eq!(
            directive(Path::new("/p/defs/a.toml"), &defs),
            "#:schema ../.dg/schema/defs.json\n"
        );
        assert_eq!(
            directive(Path::new("/p/defs/raw/deep/b.toml"), &defs),
            "#:schema ../../../.dg/schema/defs.json\n"
        );
        assert_eq!(
            directive(Path::new("/p/dg.toml"), &state.join(CONFIG_SCHEMA)),
            "#:schema .dg/schema/config.json\n"
        );
    }
}
