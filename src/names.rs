//! Names dg derives from keys: file names for step ids, inputs and
//! partition keys ([`encode_key`]), and environment variable names. Every
//! stage uses them (validation checks that two names do not collide,
//! managers and the executor name files), so they live below all of them.

use std::fmt::Write as _;

/// `FOO_BAR` from `foo-bar`: upper case, non-alphanumerics as `_`.
pub fn env_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The longest [`slug`] kept whole, in bytes: with a suffix such as
/// `.partitions.json` it stays well under the 255 bytes file systems allow.
const SLUG_MAX: usize = 120;

/// A file-name-safe form of a step id or input name: percent-encoded, and
/// reversible up to [`SLUG_MAX`] bytes. A longer one (a 300-character key,
/// or 27 CJK characters, which percent-encode to 243 bytes) keeps its
/// first bytes and ends with `~` and a hash of the whole, so every
/// accepted key gets a file name; the log's first line holds the full step id.
pub fn slug(s: &str) -> String {
    use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
    const SET: &AsciiSet = &CONTROLS.add(b'%').add(b'/').add(b'\\').add(b'~');
    let out = utf8_percent_encode(s, SET).to_string();
    let out = match out.strip_prefix('.') {
        Some(rest) => format!("%2E{rest}"),
        None => out,
    };
    if out.len() <= SLUG_MAX {
        return out;
    }
    // Cut before a `%XX` escape rather than inside it.
    let mut end = SLUG_MAX - 17;
    if let Some(i) = out[end.saturating_sub(2)..end].find('%') {
        end = end - 2 + i;
    }
    format!(
        "{}~{:016x}",
        &out[..end],
        twox_hash::XxHash3_64::oneshot(s.as_bytes())
    )
}

/// A partition key as a file name, reversibly: `%`, `/`, `\` and control
/// characters (NUL included) are percent-encoded, and so is a leading `.`,
/// so that `.`, `..` and hidden names cannot occur. Everything else,
/// unicode included, stays readable.
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for (i, c) in key.char_indices() {
        if matches!(c, '%' | '/' | '\\') || c.is_control() || (i == 0 && c == '.') {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The key a file name stands for ([`encode_key`] reversed); `None` if it
/// does not decode to UTF-8.
#[cfg(test)]
pub fn decode_key(name: &str) -> Option<String> {
    percent_encoding::percent_decode_str(name)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}
