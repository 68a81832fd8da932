//! The sources file (`--sources FILE`): TOML, validated at start-up with errors that name
//! the source and the key. Secret header values come from environment variables named in
//! the file; they are resolved here and never printed (`Debug` redacts them).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::domain::ContactKind;

/// The fields of a person a template may use.
pub const PLACEHOLDERS: [&str; 8] = [
    "personnel_id",
    "full_name",
    "first_name",
    "last_name",
    "title",
    "company_name",
    "company_domain",
    "linkedin_url",
];

#[derive(Debug, Clone)]
pub struct SourcesConfig {
    pub sources: Vec<HttpSourceConfig>,
    /// Source names tried after the catalog, per kind, in order.
    pub email: Vec<String>,
    pub phone: Vec<String>,
    /// How long an item waits while every source it needs has its breaker open.
    pub patience: Duration,
    /// An extra CA certificate (PEM) trusted besides the system's roots.
    pub ca_file: Option<PathBuf>,
}

impl SourcesConfig {
    pub fn waterfall(&self, kind: ContactKind) -> &[String] {
        match kind {
            ContactKind::Email => &self.email,
            ContactKind::Phone => &self.phone,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

#[derive(Clone)]
pub struct Header {
    pub name: String,
    pub value: String,
    /// Read from the environment: never printed.
    pub secret: bool,
}

impl std::fmt::Debug for Header {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = if self.secret {
            "<redacted>"
        } else {
            &self.value
        };
        write!(f, "{}: {}", self.name, value)
    }
}

#[derive(Debug, Clone)]
pub struct HttpSourceConfig {
    pub name: String,
    pub contact: Vec<ContactKind>,
    pub method: Method,
    pub url: Template,
    pub body: Option<Template>,
    pub headers: Vec<Header>,
    pub email_pointer: Option<String>,
    pub phone_pointer: Option<String>,
    pub status_pointer: Option<String>,
    pub deliverable: Vec<String>,
    pub not_found_status: Vec<u16>,
    pub timeout: Duration,
    pub max_concurrency: usize,
    /// 0: no limit.
    pub requests_per_second: f64,
    pub attempts: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub breaker_failures: u32,
    pub breaker_cool_down: Duration,
    pub cost_micros: i64,
    pub not_found_ttl: Duration,
}

impl HttpSourceConfig {
    pub fn finds(&self, kind: ContactKind) -> bool {
        self.contact.contains(&kind)
    }

    pub fn pointer(&self, kind: ContactKind) -> Option<&str> {
        match kind {
            ContactKind::Email => self.email_pointer.as_deref(),
            ContactKind::Phone => self.phone_pointer.as_deref(),
        }
    }

    pub fn url_text(&self) -> &str {
        self.url.text()
    }

    /// The person fields the URL and body use (a person lacking one skips the source).
    pub fn fields_used(&self) -> Vec<&'static str> {
        let mut used = self.url.fields();
        if let Some(body) = &self.body {
            for field in body.fields() {
                if !used.contains(&field) {
                    used.push(field);
                }
            }
        }
        used
    }
}

/// A string with `{field}` placeholders.
#[derive(Debug, Clone)]
pub struct Template {
    text: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Field(&'static str),
}

impl Template {
    /// `{name}` where name is lowercase letters and underscores is a placeholder and must
    /// be a known field; any other brace (a JSON object's) is text.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            literal.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let name_len = after
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(after.len());
            if name_len > 0 && after[name_len..].starts_with('}') {
                let name = &after[..name_len];
                let field = PLACEHOLDERS.iter().find(|p| **p == name).ok_or_else(|| {
                    format!(
                        "unknown placeholder {{{name}}} (known: {})",
                        PLACEHOLDERS.join(", ")
                    )
                })?;
                if !literal.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut literal)));
                }
                parts.push(Part::Field(field));
                rest = &after[name_len + 1..];
            } else {
                literal.push('{');
                rest = after;
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template {
            text: text.to_string(),
            parts,
        })
    }

    /// The template as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn fields(&self) -> Vec<&'static str> {
        let mut fields = Vec::new();
        for part in &self.parts {
            if let Part::Field(f) = part {
                if !fields.contains(f) {
                    fields.push(*f);
                }
            }
        }
        fields
    }

    /// Fills the placeholders, each value passed through `escape`; `None` when a field
    /// has no value.
    pub fn render(
        &self,
        value_of: impl Fn(&str) -> Option<String>,
        escape: impl Fn(&str) -> String,
    ) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Field(field) => out.push_str(&escape(&value_of(field)?)),
            }
        }
        Some(out)
    }
}

/// Percent-encodes a value for any part of a URL (query or path).
pub fn url_escape(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Escapes a value for the inside of a JSON string.
pub fn json_escape(value: &str) -> String {
    let quoted = serde_json::Value::String(value.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

// ---- the file as written ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    defaults: toml::Table,
    #[serde(default)]
    source: Vec<toml::Table>,
    #[serde(default)]
    waterfall: RawWaterfall,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWaterfall {
    #[serde(default)]
    email: Vec<String>,
    #[serde(default)]
    phone: Vec<String>,
}

/// The keys a source may set, and [defaults] too.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    not_found_ttl: Option<String>,
    patience: Option<String>,
    ca_file: Option<String>,
    contact: Option<Vec<String>>,
    method: Option<String>,
    body: Option<String>,
    headers: Option<BTreeMap<String, RawHeader>>,
    email_pointer: Option<String>,
    phone_pointer: Option<String>,
    status_pointer: Option<String>,
    deliverable: Option<Vec<String>>,
    not_found_status: Option<Vec<u16>>,
    timeout: Option<String>,
    max_concurrency: Option<usize>,
    requests_per_second: Option<f64>,
    attempts: Option<u32>,
    backoff: Option<String>,
    max_backoff: Option<String>,
    breaker_failures: Option<u32>,
    breaker_cool_down: Option<String>,
    cost_per_lookup: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawHeader {
    Literal(String),
    Env(RawEnv),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnv {
    env: String,
}

macro_rules! inherit {
    ($source:expr, $defaults:expr, $($field:ident),*) => {
        $( if $source.$field.is_none() { $source.$field = $defaults.$field.clone(); } )*
    };
}

/// A validation error: "FILE: source "x": key "y": what is wrong".
fn error(file: &str, source: Option<&str>, key: &str, message: impl std::fmt::Display) -> String {
    match source {
        Some(name) => format!("{file}: source \"{name}\": key \"{key}\": {message}"),
        None => format!("{file}: key \"{key}\": {message}"),
    }
}

fn settings(file: &str, source: Option<&str>, table: toml::Table) -> Result<RawSettings, String> {
    let deserializer = toml::Value::Table(table);
    serde_path_to_error::deserialize::<_, RawSettings>(deserializer).map_err(|e| {
        let key = e.path().to_string();
        let message = e.into_inner().to_string();
        // An unknown key: serde names it in the message, the path is the table itself.
        let key = if key == "." { "?".into() } else { key };
        error(file, source, &key, message.trim())
    })
}

fn duration(
    file: &str,
    source: Option<&str>,
    key: &str,
    value: &Option<String>,
    default: Duration,
) -> Result<Duration, String> {
    match value {
        None => Ok(default),
        Some(text) => humantime::parse_duration(text)
            .map_err(|e| error(file, source, key, format!("not a duration ({e}): {text:?}"))),
    }
}

impl SourcesConfig {
    /// Reads and validates the file; secrets are read from the environment now.
    pub fn load(path: &Path) -> Result<SourcesConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        Self::parse(&file, &text, &|name| std::env::var(name).ok())
    }

    /// `file` names the file in errors; `env` reads environment variables.
    pub fn parse(
        file: &str,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<SourcesConfig, String> {
        let raw: RawFile = toml::from_str(text).map_err(|e| format!("{file}: {e}"))?;
        let defaults = settings(file, None, raw.defaults)?;
        for (key, set) in [
            ("headers", defaults.headers.is_some()),
            ("body", defaults.body.is_some()),
            ("email_pointer", defaults.email_pointer.is_some()),
            ("phone_pointer", defaults.phone_pointer.is_some()),
        ] {
            if set {
                return Err(error(
                    file,
                    None,
                    &format!("defaults.{key}"),
                    "belongs to a source, not to [defaults]",
                ));
            }
        }
        for (key, value) in [
            ("not_found_ttl", &defaults.not_found_ttl),
            ("timeout", &defaults.timeout),
            ("backoff", &defaults.backoff),
            ("max_backoff", &defaults.max_backoff),
            ("breaker_cool_down", &defaults.breaker_cool_down),
        ] {
            duration(
                file,
                None,
                &format!("defaults.{key}"),
                value,
                Duration::ZERO,
            )?;
        }
        let patience = duration(
            file,
            None,
            "defaults.patience",
            &defaults.patience,
            Duration::from_secs(600),
        )?;
        let ca_file = defaults.ca_file.clone().map(PathBuf::from);
        if let Some(ca) = &ca_file {
            if !ca.is_file() {
                return Err(error(
                    file,
                    None,
                    "defaults.ca_file",
                    format!("no such file: {}", ca.display()),
                ));
            }
        }

        let mut sources: Vec<HttpSourceConfig> = Vec::new();
        for (index, mut table) in raw.source.into_iter().enumerate() {
            let name = match table.remove("name") {
                Some(toml::Value::String(name)) => name,
                Some(_) => {
                    return Err(format!(
                        "{file}: source #{}: key \"name\": must be a string",
                        index + 1
                    ))
                }
                None => {
                    return Err(format!(
                        "{file}: source #{}: key \"name\": missing",
                        index + 1
                    ))
                }
            };
            let valid_name = (1..=40).contains(&name.len())
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
            if !valid_name {
                return Err(format!(
                    "{file}: source {name:?}: key \"name\": must match [a-z0-9_-]{{1,40}}"
                ));
            }
            if name == "catalog" {
                return Err(error(
                    file,
                    Some(&name),
                    "name",
                    "\"catalog\" is the built-in first step of every waterfall",
                ));
            }
            if sources.iter().any(|s| s.name == name) {
                return Err(error(file, Some(&name), "name", "used by two sources"));
            }
            let source = Some(name.as_str());
            match table.remove("kind") {
                Some(toml::Value::String(kind)) if kind == "http" => {}
                Some(other) => {
                    return Err(error(
                        file,
                        source,
                        "kind",
                        format!("only \"http\" is supported, not {other}"),
                    ))
                }
                None => return Err(error(file, source, "kind", "missing (kind = \"http\")")),
            }
            let url = match table.remove("url") {
                Some(toml::Value::String(url)) => url,
                Some(_) => return Err(error(file, source, "url", "must be a string")),
                None => return Err(error(file, source, "url", "missing")),
            };
            let mut own = settings(file, source, table)?;
            for (key, set) in [
                ("patience", own.patience.is_some()),
                ("ca_file", own.ca_file.is_some()),
            ] {
                if set {
                    return Err(error(file, source, key, "may only be set in [defaults]"));
                }
            }
            inherit!(
                own,
                defaults,
                not_found_ttl,
                contact,
                method,
                status_pointer,
                deliverable,
                not_found_status,
                timeout,
                max_concurrency,
                requests_per_second,
                attempts,
                backoff,
                max_backoff,
                breaker_failures,
                breaker_cool_down,
                cost_per_lookup
            );
            sources.push(build_source(file, &name, &url, own, env)?);
        }

        let mut seen = HashSet::new();
        for (kind, list) in [
            (ContactKind::Email, &raw.waterfall.email),
            (ContactKind::Phone, &raw.waterfall.phone),
        ] {
            seen.clear();
            for name in list {
                let key = format!("waterfall.{}", kind.as_str());
                let Some(found) = sources.iter().find(|s| &s.name == name) else {
                    return Err(error(file, None, &key, format!("unknown source {name:?}")));
                };
                if !found.finds(kind) {
                    return Err(error(
                        file,
                        None,
                        &key,
                        format!(
                            "source {name:?} does not find {} (its contact list lacks it)",
                            kind.as_str()
                        ),
                    ));
                }
                if !seen.insert(name.clone()) {
                    return Err(error(file, None, &key, format!("{name:?} listed twice")));
                }
            }
        }
        Ok(SourcesConfig {
            sources,
            email: raw.waterfall.email,
            phone: raw.waterfall.phone,
            patience,
            ca_file,
        })
    }
}

fn build_source(
    file: &str,
    name: &str,
    url: &str,
    raw: RawSettings,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<HttpSourceConfig, String> {
    let source = Some(name);
    let fail = |key: &str, message: String| error(file, source, key, message);

    let url_template = Template::parse(url).map_err(|e| fail("url", e))?;
    let sample = url_template
        .render(|_| Some("x".into()), url_escape)
        .unwrap_or_default();
    match reqwest::Url::parse(&sample) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
        Ok(parsed) => {
            return Err(fail(
                "url",
                format!("scheme {:?} is not http or https", parsed.scheme()),
            ))
        }
        Err(e) => return Err(fail("url", format!("not a URL: {e}"))),
    }
    let body = match &raw.body {
        None => None,
        Some(text) => {
            let template = Template::parse(text).map_err(|e| fail("body", e))?;
            let sample = template
                .render(|_| Some("x".into()), json_escape)
                .unwrap_or_default();
            if let Err(e) = serde_json::from_str::<serde_json::Value>(&sample) {
                return Err(fail("body", format!("not a JSON template: {e}")));
            }
            Some(template)
        }
    };
    let method = match raw.method.as_deref().unwrap_or("GET") {
        m if m.eq_ignore_ascii_case("get") => Method::Get,
        m if m.eq_ignore_ascii_case("post") => Method::Post,
        other => return Err(fail("method", format!("GET or POST, not {other:?}"))),
    };
    let mut contact = Vec::new();
    for kind in raw.contact.clone().unwrap_or_default() {
        let kind = match kind.as_str() {
            "email" => ContactKind::Email,
            "phone" => ContactKind::Phone,
            other => return Err(fail("contact", format!("email or phone, not {other:?}"))),
        };
        if !contact.contains(&kind) {
            contact.push(kind);
        }
    }
    if contact.is_empty() {
        return Err(fail(
            "contact",
            "missing or empty (contact = [\"email\"])".into(),
        ));
    }
    for (kind, key, pointer) in [
        (ContactKind::Email, "email_pointer", &raw.email_pointer),
        (ContactKind::Phone, "phone_pointer", &raw.phone_pointer),
    ] {
        match pointer {
            None if contact.contains(&kind) => {
                return Err(fail(
                    key,
                    format!("missing: the source finds {}", kind.as_str()),
                ))
            }
            Some(p) if !p.is_empty() && !p.starts_with('/') => {
                return Err(fail(
                    key,
                    format!("{p:?} is not a JSON pointer (RFC 6901: starts with /)"),
                ))
            }
            _ => {}
        }
    }
    if let Some(p) = &raw.status_pointer {
        if !p.is_empty() && !p.starts_with('/') {
            return Err(fail(
                "status_pointer",
                format!("{p:?} is not a JSON pointer (RFC 6901: starts with /)"),
            ));
        }
        if raw.deliverable.as_ref().is_none_or(|d| d.is_empty()) {
            return Err(fail(
                "deliverable",
                "required when status_pointer is set".into(),
            ));
        }
    }
    let mut headers = Vec::new();
    for (header, value) in raw.headers.clone().unwrap_or_default() {
        let key = format!("headers.{header}");
        if reqwest::header::HeaderName::from_bytes(header.as_bytes()).is_err() {
            return Err(fail(&key, "not a valid header name".into()));
        }
        let (value, secret) = match value {
            RawHeader::Literal(v) => (v, false),
            RawHeader::Env(RawEnv { env: var }) => match env(&var) {
                Some(v) if !v.is_empty() => (v, true),
                _ => return Err(fail(&key, format!("environment variable {var} is not set"))),
            },
        };
        if reqwest::header::HeaderValue::from_str(&value).is_err() {
            // The value itself is not echoed: it may be a secret.
            return Err(fail(&key, "not a valid header value".into()));
        }
        headers.push(Header {
            name: header,
            value,
            secret,
        });
    }
    let timeout = duration(
        file,
        source,
        "timeout",
        &raw.timeout,
        Duration::from_secs(10),
    )?;
    let backoff = duration(
        file,
        source,
        "backoff",
        &raw.backoff,
        Duration::from_millis(200),
    )?;
    let max_backoff = duration(
        file,
        source,
        "max_backoff",
        &raw.max_backoff,
        Duration::from_secs(30),
    )?;
    if timeout.is_zero() {
        return Err(fail("timeout", "must be more than 0".into()));
    }
    let max_concurrency = raw.max_concurrency.unwrap_or(8);
    if max_concurrency == 0 {
        return Err(fail("max_concurrency", "must be at least 1".into()));
    }
    let requests_per_second = raw.requests_per_second.unwrap_or(0.0);
    if !requests_per_second.is_finite() || requests_per_second < 0.0 {
        return Err(fail(
            "requests_per_second",
            "must be a positive number (0: no limit)".into(),
        ));
    }
    let attempts = raw.attempts.unwrap_or(3);
    if attempts == 0 {
        return Err(fail("attempts", "must be at least 1".into()));
    }
    let breaker_failures = raw.breaker_failures.unwrap_or(5);
    if breaker_failures == 0 {
        return Err(fail("breaker_failures", "must be at least 1".into()));
    }
    let cost = raw.cost_per_lookup.unwrap_or(0.0);
    if !cost.is_finite() || cost < 0.0 {
        return Err(fail("cost_per_lookup", "must be 0 or more".into()));
    }
    Ok(HttpSourceConfig {
        name: name.to_string(),
        contact,
        method,
        url: url_template,
        body,
        headers,
        email_pointer: raw.email_pointer,
        phone_pointer: raw.phone_pointer,
        status_pointer: raw.status_pointer,
        deliverable: raw.deliverable.unwrap_or_default(),
        not_found_status: raw.not_found_status.unwrap_or_else(|| vec![404]),
        timeout,
        max_concurrency,
        requests_per_second,
        attempts,
        backoff,
        max_backoff,
        breaker_failures,
        breaker_cool_down: duration(
            file,
            source,
            "breaker_cool_down",
            &raw.breaker_cool_down,
            Duration::from_secs(30),
        )?,
        cost_micros: (cost * 1_000_000.0).round() as i64,
        not_found_ttl: duration(
            file,
            source,
            "not_found_ttl",
            &raw.not_found_ttl,
            Duration::from_secs(7 * 24 * 3600),
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[defaults]
not_found_ttl = "7d"
patience = "10m"
timeout = "3s"

[[source]]
name = "hunter"
kind = "http"
contact = ["email"]
url = "https://api.example.com/v2/find?domain={company_domain}&first={first_name}&last={last_name}"
headers = { "X-Api-Key" = { env = "HUNTER_API_KEY" }, "Accept" = "application/json" }
email_pointer = "/data/email"
status_pointer = "/data/verification/status"
deliverable = ["valid"]
not_found_status = [404]
max_concurrency = 8
requests_per_second = 10.0
cost_per_lookup = 0.01

[[source]]
name = "pdl"
kind = "http"
contact = ["phone", "email"]
method = "POST"
url = "https://pdl.example.com/enrich"
body = '{"name": "{full_name}", "profile": "{linkedin_url}"}'
email_pointer = "/email"
phone_pointer = "/phone"

[waterfall]
email = ["hunter", "pdl"]
phone = ["pdl"]
"#;

    fn env(name: &str) -> Option<String> {
        (name == "HUNTER_API_KEY").then(|| "s3cret-key".to_string())
    }

    fn parse(text: &str) -> Result<SourcesConfig, String> {
        SourcesConfig::parse("sources.toml", text, &env)
    }

    #[test]
    fn reads_a_full_file_with_defaults_inherited() {
        let config = parse(GOOD).unwrap();
        assert_eq!(config.patience, Duration::from_secs(600));
        assert_eq!(config.email, ["hunter", "pdl"]);
        let hunter = &config.sources[0];
        assert_eq!(hunter.timeout, Duration::from_secs(3));
        assert_eq!(hunter.cost_micros, 10_000);
        assert_eq!(hunter.not_found_ttl, Duration::from_secs(7 * 86_400));
        assert_eq!(
            hunter.fields_used(),
            ["company_domain", "first_name", "last_name"]
        );
        let pdl = &config.sources[1];
        assert_eq!(pdl.method, Method::Post);
        assert_eq!(pdl.timeout, Duration::from_secs(3));
        assert_eq!(pdl.fields_used(), ["full_name", "linkedin_url"]);
        assert!(pdl.finds(ContactKind::Phone));
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let config = parse(GOOD).unwrap();
        let printed = format!("{config:?}");
        assert!(!printed.contains("s3cret-key"), "{printed}");
        assert!(printed.contains("X-Api-Key: <redacted>"), "{printed}");
        assert!(printed.contains("Accept: application/json"), "{printed}");
    }

    #[test]
    fn errors_name_the_source_and_the_key() {
        let cases: [(&str, &str, &str); 9] = [
            ("email_pointer = \"/data/email\"", "email_pointer = \"data\"", "source \"hunter\": key \"email_pointer\""),
            ("HUNTER_API_KEY", "MISSING_VAR", "source \"hunter\": key \"headers.X-Api-Key\": environment variable MISSING_VAR is not set"),
            ("max_concurrency = 8", "max_concurrency = 8\nretries = 2", "source \"hunter\""),
            ("email = [\"hunter\", \"pdl\"]", "email = [\"hunter\", \"nobody\"]", "key \"waterfall.email\": unknown source \"nobody\""),
            ("phone = [\"pdl\"]", "phone = [\"hunter\"]", "does not find phone"),
            ("name = \"pdl\"", "name = \"hunter\"", "used by two sources"),
            ("timeout = \"3s\"", "timeout = \"soon\"", "key \"defaults.timeout\""),
            ("last={last_name}", "last={surname}", "unknown placeholder {surname}"),
            ("deliverable = [\"valid\"]", "", "key \"deliverable\": required when status_pointer is set"),
        ];
        for (from, to, expected) in cases {
            let text = GOOD.replacen(from, to, 1);
            let err = parse(&text).expect_err(expected);
            assert!(err.starts_with("sources.toml: "), "{err}");
            assert!(err.contains(expected), "expected {expected:?} in {err}");
        }
        let unknown =
            parse(&GOOD.replacen("max_concurrency = 8", "max_concurrency = 8\nretries = 2", 1))
                .unwrap_err();
        assert!(unknown.contains("retries"), "{unknown}");
    }

    #[test]
    fn templates_escape_for_url_and_json() {
        let url = Template::parse("https://x.test/f?name={full_name}&d={company_domain}").unwrap();
        let value = |f: &str| match f {
            "full_name" => Some("Zoë \"Q\" & Co/1".to_string()),
            "company_domain" => Some("acme.io".to_string()),
            _ => None,
        };
        assert_eq!(
            url.render(value, url_escape).unwrap(),
            "https://x.test/f?name=Zo%C3%AB%20%22Q%22%20%26%20Co%2F1&d=acme%2Eio"
        );
        let body = Template::parse(r#"{"n": "{full_name}"}"#).unwrap();
        let rendered = body.render(value, json_escape).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&rendered).unwrap();
        assert_eq!(parsed["n"], "Zoë \"Q\" & Co/1");
        let missing = Template::parse("https://x.test/{title}").unwrap();
        assert_eq!(missing.render(value, url_escape), None);
    }
}
