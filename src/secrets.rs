//! Secrets: one masker for every place dg shows or records a value.
//!
//! Passwords in connection URLs ([`mask_url`], used by the postgres
//! manager, the Postgres state store, errors and `dg list defs`, so they
//! cannot disagree about what a password is) and the values of declared
//! secrets (`secrets = [...]` of a settings resource). A [`Masker`] holds
//! both; the one of the running command is registered with [`register`], and
//! every line dg prints goes through [`mask`]. A run masks its step logs,
//! errors and recorded metadata with it too, so a secret a step prints is
//! `***` wherever it is read back.

use std::borrow::Cow;
use std::sync::RwLock;

/// `url` with its password replaced by `***`: in the user info of a
/// `postgres://user:pass@host/db` URL, in a `password=` query parameter,
/// and in a `password=…` key of a key-value connection string.
pub fn mask_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        // The user info ends at the last `@` (a password may hold `/` or `?`).
        if let Some(at) = out[rest_start..].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                let start = rest_start + colon + 1;
                out.replace_range(start..rest_start + at, "***");
            }
        }
    }
    mask_password_keys(&out)
}

/// Masks the value of every `password=` key (`?password=x&…` or
/// `password=x host=…`, possibly quoted).
fn mask_password_keys(s: &str) -> String {
    let lower = s.to_ascii_lowercase();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while let Some(found) = lower[i..].find("password") {
        let key_end = i + found + "password".len();
        let mut j = key_end;
        while s[j..].starts_with(' ') {
            j += 1;
        }
        if !s[j..].starts_with('=') {
            out.push_str(&s[i..key_end]);
            i = key_end;
            continue;
        }
        j += 1;
        while s[j..].starts_with(' ') {
            j += 1;
        }
        out.push_str(&s[i..j]);
        out.push_str("***");
        let bytes = s.as_bytes();
        if j < s.len() && bytes[j] == b'\'' {
            j += 1;
            while j < s.len() && bytes[j] != b'\'' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            j = (j + 1).min(s.len());
        } else {
            while j < s.len() && !matches!(bytes[j], b'&' | b' ' | b'#' | b'\n' | b'\t') {
                j += 1;
            }
        }
        i = j;
    }
    out.push_str(&s[i..]);
    out
}

/// What must never be shown, and how to hide it.
#[derive(Clone, Debug)]
pub struct Secrets {
    url: String,
    masked: String,
    words: Vec<String>,
}

impl Secrets {
    /// The secrets of `url`: the URL itself and its password (as written,
    /// percent-decoded, and as the driver parsed it).
    pub fn new(url: &str, parsed_password: Option<&[u8]>) -> Self {
        let masked = mask_url(url);
        let mut words = Vec::new();
        if let Some(p) = parsed_password {
            words.push(String::from_utf8_lossy(p).into_owned());
        }
        if let Some(scheme_end) = url.find("://") {
            let rest = &url[scheme_end + 3..];
            if let Some(at) = rest.rfind('@')
                && let Some(colon) = rest[..at].find(':')
            {
                let raw = &rest[colon + 1..at];
                words.push(raw.to_string());
                words.push(percent_decode(raw));
            }
        }
        words.retain(|w| !w.is_empty() && w != "***");
        words.sort_by_key(|w| std::cmp::Reverse(w.len()));
        words.dedup();
        Secrets {
            url: url.to_string(),
            masked,
            words,
        }
    }

    /// Also hides `word` (a secret option's value, such as an access key).
    pub fn with_word(mut self, word: &str) -> Self {
        if !word.is_empty() && word != "***" && !self.words.iter().any(|w| w == word) {
            self.words.push(word.to_string());
            self.words.sort_by_key(|w| std::cmp::Reverse(w.len()));
        }
        self
    }

    /// The URL as written (never to be shown: compare with it only).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL as it may be shown.
    pub fn masked_url(&self) -> &str {
        &self.masked
    }

    /// `msg` with the URL masked and every occurrence of the password
    /// replaced by `***`.
    pub fn redact(&self, msg: &str) -> String {
        let mut out = if self.url.is_empty() {
            msg.to_string()
        } else {
            msg.replace(&self.url, &self.masked)
        };
        out = mask_password_keys(&out);
        for w in &self.words {
            out = out.replace(w.as_str(), "***");
        }
        out
    }
}

/// Everything to hide: URLs (shown with their password masked) and secret
/// values (shown as `***`).
#[derive(Clone, Debug, Default)]
pub struct Masker {
    /// (URL as written, URL masked)
    urls: Vec<(String, String)>,
    /// Longest first, so a secret holding another is masked whole.
    words: Vec<String>,
}

impl Masker {
    /// Nothing to hide yet.
    pub fn is_empty(&self) -> bool {
        self.urls.is_empty() && self.words.is_empty()
    }

    /// A secret value: every occurrence is shown as `***`. Empty values
    /// are ignored (they would mask nothing, or everything).
    pub fn add_secret(&mut self, value: &str) {
        let v = value.trim_end_matches(['\n', '\r']);
        if v.is_empty() || v == "***" || self.words.iter().any(|w| w == v) {
            return;
        }
        self.words.push(v.to_string());
        self.words.sort_by_key(|w| std::cmp::Reverse(w.len()));
    }

    /// A string that may be a URL or connection string: when it holds a
    /// password, the password is a secret and the string is shown masked.
    pub fn add_url(&mut self, url: &str) {
        let masked = mask_url(url);
        if masked == url {
            return;
        }
        let s = Secrets::new(url, None);
        for w in &s.words {
            self.add_secret(w);
        }
        if !self.urls.iter().any(|(u, _)| u == url) {
            self.urls.push((url.to_string(), masked));
        }
    }

    /// Adds everything `other` hides.
    pub fn extend(&mut self, other: &Masker) {
        for (u, _) in &other.urls {
            self.add_url(u);
        }
        for w in &other.words {
            self.add_secret(w);
        }
    }

    /// `s` with every URL password and every secret value masked.
    pub fn mask<'s>(&self, s: &'s str) -> Cow<'s, str> {
        if self.is_empty() {
            return Cow::Borrowed(s);
        }
        let needs = self.urls.iter().any(|(u, _)| s.contains(u.as_str()))
            || self.words.iter().any(|w| s.contains(w.as_str()));
        if !needs {
            return Cow::Borrowed(s);
        }
        let mut out = s.to_string();
        for (u, m) in &self.urls {
            out = out.replace(u.as_str(), m);
        }
        for w in &self.words {
            out = out.replace(w.as_str(), "***");
        }
        Cow::Owned(out)
    }

    /// Every string in a JSON value masked (keys too).
    pub fn mask_json(&self, v: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        if self.is_empty() {
            return v.clone();
        }
        match v {
            Value::String(s) => Value::String(self.mask(s).into_owned()),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.mask_json(x)).collect()),
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, x)| (self.mask(k).into_owned(), self.mask_json(x)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// Masks a file in place from byte `from` on (what one step attempt
    /// appended to its log). Lines are masked whole, so a secret is found
    /// wherever the step's writes were split within a line. Streams: the
    /// masked lines go to a sibling file that is copied back only when
    /// something was masked, so a large log costs no more memory than its
    /// longest line.
    pub fn mask_file_from(&self, path: &std::path::Path, from: u64) -> std::io::Result<()> {
        use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
        if self.is_empty() {
            return Ok(());
        }
        let mut f = std::fs::File::options().read(true).write(true).open(path)?;
        f.seek(SeekFrom::Start(from))?;
        let mut r = BufReader::with_capacity(1 << 16, f.try_clone()?);
        // Most logs hold no secret: one read to find out, and nothing written.
        let mut line = Vec::new();
        let mut found = false;
        loop {
            line.clear();
            if r.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            if matches!(self.mask(&String::from_utf8_lossy(&line)), Cow::Owned(_)) {
                found = true;
                break;
            }
        }
        if !found {
            return Ok(());
        }
        r.seek(SeekFrom::Start(from))?;
        let side = path.with_extension("log.masking");
        let mut w = BufWriter::new(std::fs::File::create(&side)?);
        let mut changed = false;
        let result = (|| -> std::io::Result<()> {
            loop {
                line.clear();
                if r.read_until(b'\n', &mut line)? == 0 {
                    break;
                }
                match std::str::from_utf8(&line) {
                    Ok(text) => match self.mask(text) {
                        Cow::Owned(m) => {
                            changed = true;
                            w.write_all(m.as_bytes())?;
                        }
                        Cow::Borrowed(_) => w.write_all(&line)?,
                    },
                    Err(_) => {
                        let text = String::from_utf8_lossy(&line);
                        match self.mask(&text) {
                            Cow::Owned(m) => {
                                changed = true;
                                w.write_all(m.as_bytes())?;
                            }
                            Cow::Borrowed(_) => w.write_all(&line)?,
                        }
                    }
                }
            }
            w.flush()?;
            if changed {
                f.set_len(from)?;
                f.seek(SeekFrom::Start(from))?;
                std::io::copy(&mut std::fs::File::open(&side)?, &mut f)?;
            }
            Ok(())
        })();
        let _ = std::fs::remove_file(&side);
        result
    }
}

static PROCESS: RwLock<Option<Masker>> = RwLock::new(None);

/// Adds `m` to what this process hides in everything it prints.
pub fn register(m: &Masker) {
    if m.is_empty() {
        return;
    }
    let mut g = PROCESS.write().unwrap_or_else(|e| e.into_inner());
    g.get_or_insert_with(Masker::default).extend(m);
}

/// Whether this process hides anything ([`register`]).
pub fn active() -> bool {
    PROCESS.read().unwrap_or_else(|e| e.into_inner()).is_some()
}

/// `s` masked with what this process hides ([`register`]).
pub fn mask(s: &str) -> Cow<'_, str> {
    let g = PROCESS.read().unwrap_or_else(|e| e.into_inner());
    match &*g {
        Some(m) => Cow::Owned(m.mask(s).into_owned()),
        None => Cow::Borrowed(s),
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// `text` with the password of every `scheme://user:password@host` in it
/// replaced by as many `*` as it has bytes, so that byte offsets into the
/// text (diagnostic spans) stay right. For source excerpts, which are shown
/// before any definitions are known.
pub fn mask_url_passwords_in_place(text: &str) -> Cow<'_, str> {
    if !text.contains("://") || !text.contains('@') {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out: Option<Vec<u8>> = None;
    let mut from = 0;
    while let Some(i) = text[from..].find("://") {
        let start = from + i + 3;
        let end = text[start..]
            .find(|c: char| matches!(c, '?' | '#' | '"' | '\'' | '`') || c.is_whitespace())
            .map_or(text.len(), |j| start + j);
        // The user info runs to the last `@` (a password may hold `/`,
        // written unencoded as people do); the user name holds no `/`.
        let authority = &text[start..end];
        if let Some(at) = authority.rfind('@')
            && let Some(colon) = authority[..at].find(':')
            && !authority[..colon].contains('/')
        {
            let (a, b) = (start + colon + 1, start + at);
            let o = out.get_or_insert_with(|| bytes.to_vec());
            for x in &mut o[a..b] {
                *x = b'*';
            }
        }
        from = end.max(start);
    }
    match out {
        // Only ASCII `*` replaced whole UTF-8 sequences of the password.
        Some(o) => Cow::Owned(String::from_utf8(o).unwrap_or_else(|_| text.to_string())),
        None => Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn url_passwords_in_source_text_keep_their_length() {
        let t = "url = \"postgres://dg:pa/ss@db/x\"\nb = \"s3://k:sécret@h\" # x://nobody@h\n";
        let m = super::mask_url_passwords_in_place(t);
        assert_eq!(m.len(), t.len());
        assert!(!m.contains("sécret") && !m.contains("hunter"), "{m}");
        assert!(m.contains("s3://k:*******@h"), "{m}");
        // A password may hold `/`: it runs to the last `@`.
        assert!(m.contains("postgres://dg:*****@db/x"), "{m}");
        assert!(m.contains("x://nobody@h"));
        let t2 = "postgres://u:p%40ss@h/d";
        assert_eq!(
            super::mask_url_passwords_in_place(t2),
            "postgres://u:******@h/d"
        );
        // A path with `@` and no user info is left alone; an ambiguous
        // `host:port/path@x` is masked (hiding too much is the safe side).
        let t3 = "s3://bucket/path@v2 http://h:80/x@y";
        assert_eq!(
            super::mask_url_passwords_in_place(t3),
            "s3://bucket/path@v2 http://h:****@y"
        );
    }

    use super::*;

    #[test]
    fn the_password_is_masked_wherever_the_url_puts_it() {
        for (url, shown) in [
            (
                "postgres://dg:secret@127.0.0.1:5432/db?schema=x",
                "postgres://dg:***@127.0.0.1:5432/db?schema=x",
            ),
            // A password holding `/`, `?` or `@`: the user info ends at the last `@`.
            ("postgres://dg:pa/ss@db/x", "postgres://dg:***@db/x"),
            (
                "postgresql://user:p@ss/w?rd@host/db?sslmode=disable",
                "postgresql://user:***@host/db?sslmode=disable",
            ),
            (
                "postgresql://u:p%40ss@h/db?password=hunter2&sslmode=disable",
                "postgresql://u:***@h/db?password=***&sslmode=disable",
            ),
            (
                "postgres://host/db?user=u&password=hunter2&x=1",
                "postgres://host/db?user=u&password=***&x=1",
            ),
            (
                "host=h user=u password='a b\\'c' dbname=d",
                "host=h user=u password=*** dbname=d",
            ),
            (
                "host=h PASSWORD = x dbname=d",
                "host=h PASSWORD = *** dbname=d",
            ),
            ("postgres://h/db", "postgres://h/db"),
            ("postgres://me@h/db", "postgres://me@h/db"),
            ("s3://bucket/prefix", "s3://bucket/prefix"),
        ] {
            assert_eq!(mask_url(url), shown, "{url}");
        }
    }

    #[test]
    fn a_masker_hides_secrets_and_url_passwords() {
        let mut m = Masker::default();
        m.add_secret("tok-123");
        m.add_secret("tok-123-long");
        m.add_secret("");
        m.add_url("postgres://dg:pa/ss@db/x");
        let out = m.mask("a tok-123-long b tok-123 c postgres://dg:pa/ss@db/x d pa/ss");
        assert_eq!(out, "a *** b *** c postgres://dg:***@db/x d ***");
        assert!(matches!(m.mask("nothing here"), Cow::Borrowed(_)));
        let j = m.mask_json(&serde_json::json!({"k": ["x tok-123"], "tok-123": 1}));
        assert_eq!(j, serde_json::json!({"k": ["x ***"], "***": 1}));
    }

    #[test]
    fn a_log_is_masked_from_where_the_attempt_began() {
        let dir = std::env::temp_dir().join(format!("dg-mask-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("step.log");
        std::fs::write(
            &log,
            b"before tok-123\nthe tok-123 here\nand \xff tok-123 no newline",
        )
        .unwrap();
        let mut m = Masker::default();
        m.add_secret("tok-123");
        m.mask_file_from(&log, 15).unwrap();
        let got = String::from_utf8_lossy(&std::fs::read(&log).unwrap()).into_owned();
        assert_eq!(
            got,
            "before tok-123\nthe *** here\nand \u{fffd} *** no newline"
        );
        assert!(!dir.join("step.log.masking").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn redaction_hides_the_password_in_every_spelling() {
        let url = "postgres://dg:s%40cr3t-pw@127.0.0.1:1/db";
        let s = Secrets::new(url, Some(b"s@cr3t-pw"));
        let msg = format!("cannot connect to {url}: password s@cr3t-pw rejected (s%40cr3t-pw)");
        let out = s.redact(&msg);
        assert!(!out.contains("cr3t"), "{out}");
        assert!(out.contains("postgres://dg:***@127.0.0.1:1/db"), "{out}");
    }
}
