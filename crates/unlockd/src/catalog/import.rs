//! Reading catalog files (CSV or JSON Lines, by extension) into records. Every row is
//! checked before anything is written; the first bad row is reported with its file and
//! line, and then nothing of that file is applied.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::{EventRecord, ExhibitorRecord, PersonRecord};
use crate::domain::unlock::{is_valid_personnel_id, MAX_EVENT_ID_CHARS};

#[derive(Debug, thiserror::Error)]
#[error("{}:{line}: {message}", file.display())]
pub struct ImportError {
    pub file: PathBuf,
    /// 1-based; 0 when the file could not be read at all.
    pub line: u64,
    pub message: String,
}

/// Upstream's `sourceType` labels.
pub const SOURCE_TYPES: [&str; 3] = ["exhibitor", "social", "visitors"];

/// Resolves an event reference (`id` or `eventId`) to the event's `id`.
#[derive(Debug, Default, Clone)]
pub struct EventIndex {
    by_id: HashMap<String, String>,
    by_alias: HashMap<String, String>,
}

impl EventIndex {
    pub fn new(keys: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut index = EventIndex::default();
        for (id, alias) in keys {
            index.by_alias.insert(alias, id.clone());
            index.by_id.insert(id.clone(), id);
        }
        index
    }

    pub fn resolve(&self, reference: &str) -> Option<&String> {
        self.by_id
            .get(reference)
            .or_else(|| self.by_alias.get(reference))
    }
}

/// One raw row: its line number and its fields by column name.
struct Row {
    line: u64,
    fields: Map<String, Value>,
}

impl Row {
    fn text(&self, name: &str) -> Option<String> {
        match self.fields.get(name) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        }
    }

    /// A list column: `a;b` in CSV, a JSON array or an `a;b` string in JSON Lines.
    fn list(&self, name: &str) -> Result<Vec<String>, String> {
        match self.fields.get(name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.trim().to_string()),
                    Value::Number(n) => Ok(n.to_string()),
                    _ => Err(format!("{name}: entries must be strings")),
                })
                .filter(|r| r.as_ref().map_or(true, |s| !s.is_empty()))
                .collect(),
            Some(Value::String(s)) => Ok(s
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()),
            Some(_) => Err(format!("{name}: must be a list")),
        }
    }
}

fn read_rows(path: &Path) -> Result<Vec<Row>, ImportError> {
    let fail = |line: u64, message: String| ImportError {
        file: path.to_path_buf(),
        line,
        message,
    };
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let file = File::open(path).map_err(|e| fail(0, format!("cannot open: {e}")))?;
    match extension.as_str() {
        "csv" => {
            let mut reader = csv::ReaderBuilder::new()
                .trim(csv::Trim::All)
                .from_reader(BufReader::new(file));
            let headers = reader
                .headers()
                .map_err(|e| fail(1, format!("bad header: {e}")))?
                .clone();
            let mut rows = Vec::new();
            for record in reader.records() {
                let record = record.map_err(|e| {
                    let line = e.position().map_or(0, |p| p.line());
                    fail(line, format!("malformed CSV: {e}"))
                })?;
                let line = record.position().map_or(0, |p| p.line());
                let fields = headers
                    .iter()
                    .zip(record.iter())
                    .map(|(h, v)| (h.to_string(), Value::String(v.to_string())))
                    .collect();
                rows.push(Row { line, fields });
            }
            Ok(rows)
        }
        "jsonl" | "ndjson" => {
            let mut rows = Vec::new();
            for (i, line) in BufReader::new(file).lines().enumerate() {
                let number = i as u64 + 1;
                let line = line.map_err(|e| fail(number, format!("unreadable line: {e}")))?;
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<Value>(&line) {
                    Ok(Value::Object(fields)) => rows.push(Row {
                        line: number,
                        fields,
                    }),
                    Ok(_) => return Err(fail(number, "expected a JSON object".into())),
                    Err(e) => return Err(fail(number, format!("invalid JSON: {e}"))),
                }
            }
            Ok(rows)
        }
        other => Err(fail(
            0,
            format!("unknown file type {other:?}: use .csv, .jsonl or .ndjson"),
        )),
    }
}

/// Checks a row's `id`, and that no earlier row of the file had it.
fn row_id(row: &Row, seen: &mut HashMap<String, u64>, max_chars: usize) -> Result<String, String> {
    let id = row.text("id").ok_or("id: required")?;
    if id.chars().count() > max_chars || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "id: {id:?} must be 1 to {max_chars} characters without spaces"
        ));
    }
    if let Some(first) = seen.insert(id.clone(), row.line) {
        return Err(format!("id: {id:?} already appears on line {first}"));
    }
    Ok(id)
}

fn convert<T>(
    path: &Path,
    rows: Vec<Row>,
    mut each: impl FnMut(&Row) -> Result<T, String>,
) -> Result<Vec<T>, ImportError> {
    rows.iter()
        .map(|row| {
            each(row).map_err(|message| ImportError {
                file: path.to_path_buf(),
                line: row.line,
                message,
            })
        })
        .collect()
}

pub fn read_events(path: &Path) -> Result<Vec<EventRecord>, ImportError> {
    let rows = read_rows(path)?;
    let mut seen = HashMap::new();
    let mut aliases: HashMap<String, u64> = HashMap::new();
    convert(path, rows, |row| {
        let id = row_id(row, &mut seen, MAX_EVENT_ID_CHARS)?;
        let event_id = row.text("event_id").unwrap_or_else(|| id.clone());
        if event_id.chars().count() > MAX_EVENT_ID_CHARS {
            return Err(format!(
                "event_id: longer than {MAX_EVENT_ID_CHARS} characters"
            ));
        }
        if let Some(first) = aliases.insert(event_id.clone(), row.line) {
            return Err(format!(
                "event_id: {event_id:?} already used on line {first}"
            ));
        }
        for field in ["date_start", "date_end"] {
            if let Some(date) = row.text(field) {
                if chrono::NaiveDate::parse_from_str(&date, "%Y-%m-%d").is_err() {
                    return Err(format!("{field}: {date:?} is not a YYYY-MM-DD date"));
                }
            }
        }
        Ok(EventRecord {
            id,
            event_id,
            name: row.text("name"),
            date_start: row.text("date_start"),
            date_end: row.text("date_end"),
            venue: row.text("venue"),
            city: row.text("city"),
            region: row.text("region"),
            country: row.text("country"),
            url: row.text("url"),
            description: row.text("description"),
        })
    })
}

pub fn read_exhibitors(
    path: &Path,
    events: &EventIndex,
) -> Result<Vec<ExhibitorRecord>, ImportError> {
    let rows = read_rows(path)?;
    let mut seen = HashMap::new();
    convert(path, rows, |row| {
        let id = row_id(row, &mut seen, 64)?;
        let reference = row.text("event_id").ok_or("event_id: required")?;
        let event_id = events
            .resolve(&reference)
            .ok_or_else(|| format!("event_id: unknown event {reference:?}"))?
            .clone();
        Ok(ExhibitorRecord {
            id,
            event_id,
            company_name: row.text("company_name"),
            website: row.text("website"),
            country: row.text("country"),
        })
    })
}

pub fn read_personnel(path: &Path, events: &EventIndex) -> Result<Vec<PersonRecord>, ImportError> {
    let rows = read_rows(path)?;
    let mut seen = HashMap::new();
    convert(path, rows, |row| {
        let id = row_id(row, &mut seen, 64)?;
        if !is_valid_personnel_id(&id) {
            return Err(format!("id: {id:?} is not a valid personnel id"));
        }
        let mut event_ids = Vec::new();
        for reference in row.list("event_ids")? {
            let event = events
                .resolve(&reference)
                .ok_or_else(|| format!("event_ids: unknown event {reference:?}"))?;
            if !event_ids.contains(event) {
                event_ids.push(event.clone());
            }
        }
        let source_type = row.list("source_type")?;
        if let Some(bad) = source_type
            .iter()
            .find(|s| !SOURCE_TYPES.contains(&s.as_str()))
        {
            return Err(format!(
                "source_type: {bad:?} is not one of {}",
                SOURCE_TYPES.join(", ")
            ));
        }
        let email = row.text("email");
        if let Some(email) = &email {
            if !email.contains('@') || email.chars().any(char::is_whitespace) {
                return Err("email: not an email address".into());
            }
        }
        Ok(PersonRecord {
            id,
            full_name: row.text("full_name"),
            title: row.text("title"),
            department: row.text("department"),
            seniority_level: row.text("seniority_level"),
            linkedin_url: row.text("linkedin_url"),
            company_name: row.text("company_name"),
            exhibitor_id: row.text("exhibitor_id"),
            event_ids,
            source_type,
            email,
            phone: row.text("phone"),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(dir: &tempfile::TempDir, name: &str, body: &str) -> PathBuf {
        let path = dir.path().join(name);
        let mut f = File::create(&path).unwrap();
        f.write_all(body.as_bytes()).unwrap();
        path
    }

    #[test]
    fn reads_csv_and_jsonl_alike() {
        let dir = tempfile::tempdir().unwrap();
        let csv = file(
            &dir,
            "events.csv",
            "id,event_id,name,date_start\n1,139574,Expo,2027-03-01\n2,,Fair,\n",
        );
        let events = read_events(&csv).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event_id, "139574");
        assert_eq!(events[1].event_id, "2", "alias defaults to id");
        let index = EventIndex::new(events.iter().map(|e| (e.id.clone(), e.event_id.clone())));
        let jsonl = file(
            &dir,
            "people.jsonl",
            "{\"id\":\"789\",\"event_ids\":[\"139574\",\"2\"],\"source_type\":\"exhibitor;social\",\"email\":\"a@b.example\"}\n\n{\"id\":790,\"event_ids\":\"1\"}\n",
        );
        let people = read_personnel(&jsonl, &index).unwrap();
        assert_eq!(people[0].event_ids, ["1", "2"]);
        assert_eq!(people[0].source_type, ["exhibitor", "social"]);
        assert_eq!(people[1].id, "790");
        assert_eq!(people[1].email, None);
    }

    #[test]
    fn bad_rows_are_reported_with_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let index = EventIndex::new([("1".to_string(), "139574".to_string())]);
        let cases = [
            ("a.csv", "id,event_ids\n1,1\n2,999\n", 3, "unknown event"),
            (
                "b.csv",
                "id,event_ids\n1,1\n1,1\n",
                3,
                "already appears on line 2",
            ),
            ("c.csv", "id,email\n1,not-an-email\n", 2, "email"),
            ("d.csv", "name\nBob\n", 2, "id: required"),
            ("e.jsonl", "{\"id\":\"1\"}\n{broken\n", 2, "invalid JSON"),
            ("f.csv", "id,source_type\n1,robot\n", 2, "source_type"),
            ("g.csv", "id\nhas space\n", 2, "id:"),
        ];
        for (name, body, line, needle) in cases {
            let err = read_personnel(&file(&dir, name, body), &index).unwrap_err();
            assert_eq!(err.line, line, "{name}: {err}");
            assert!(err.to_string().contains(needle), "{name}: {err}");
            assert!(err.to_string().contains(name), "{err}");
        }
        let err = read_events(&file(&dir, "x.txt", "")).unwrap_err();
        assert!(err.message.contains("unknown file type"));
        let err = read_events(&file(&dir, "ev.csv", "id,date_start\n1,03/01/2027\n")).unwrap_err();
        assert_eq!(err.line, 2);
    }
}
