//! Secrets in connection URLs: one masker for every place a URL may be
//! shown (the postgres manager, the Postgres state store, errors, `dg list
//! defs`), so they cannot disagree about what a password is.

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

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
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
    fn redaction_hides_the_password_in_every_spelling() {
        let url = "postgres://dg:s%40cr3t-pw@127.0.0.1:1/db";
        let s = Secrets::new(url, Some(b"s@cr3t-pw"));
        let msg = format!("cannot connect to {url}: password s@cr3t-pw rejected (s%40cr3t-pw)");
        let out = s.redact(&msg);
        assert!(!out.contains("cr3t"), "{out}");
        assert!(out.contains("postgres://dg:***@127.0.0.1:1/db"), "{out}");
    }
}
