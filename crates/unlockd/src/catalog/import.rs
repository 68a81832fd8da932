//! Reading catalog files (CSV or JSON Lines, by extension) into rows to upsert, and checking
//! them before anything is written: the header's columns, every row's values, references to
//! events, and public event ids against the catalog as it stands. Every problem of every
//! file is reported (up to `MAX_PROBLEMS_PER_FILE` each); any problem means nothing is
//! applied. The format is documented in `docs/import-format.md`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::{
    CatalogImport, CatalogRecord, Columns, EventRecord, ExhibitorRecord, PersonRecord, Upsert,
};
use crate::domain::unlock::{is_valid_personnel_id, MAX_EVENT_ID_CHARS, MAX_PERSONNEL_ID_CHARS};

/// Problems listed per file before the rest are only counted.
pub const MAX_PROBLEMS_PER_FILE: usize = 20;

/// The longest exhibitor id.
const MAX_EXHIBITOR_ID_CHARS: usize = 64;

/// Upstream's `sourceType` labels.
pub const SOURCE_TYPES: [&str; 3] = ["exhibitor", "social", "visitors"];

/// One problem of one file; `line` is `None` for the file as a whole (missing, empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: Option<u64>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Why nothing was imported: the problems found, and per file how many more there were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    pub problems: Vec<Problem>,
    pub omitted: Vec<(PathBuf, usize)>,
}

impl ImportError {
    pub fn total(&self) -> usize {
        self.problems.len() + self.omitted.iter().map(|(_, n)| n).sum::<usize>()
    }
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
            let last_of_file = self
                .problems
                .get(i + 1)
                .is_none_or(|next| next.file != problem.file);
            if last_of_file {
                if let Some((file, more)) = self.omitted.iter().find(|(f, _)| *f == problem.file) {
                    write!(f, "\n{}: and {more} more problems", file.display())?;
                }
            }
        }
        Ok(())
    }
}

impl std::error::Error for ImportError {}

/// The files of one `import` command.
#[derive(Debug, Clone, Default)]
pub struct ImportFiles {
    pub events: Option<PathBuf>,
    pub exhibitors: Option<PathBuf>,
    pub personnel: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Events,
    Exhibitors,
    Personnel,
}

impl Kind {
    fn columns(self) -> &'static [&'static str] {
        match self {
            Kind::Events => EventRecord::COLUMNS,
            Kind::Exhibitors => ExhibitorRecord::COLUMNS,
            Kind::Personnel => PersonRecord::COLUMNS,
        }
    }

    fn required(self) -> &'static [&'static str] {
        match self {
            Kind::Events | Kind::Personnel => &["id"],
            Kind::Exhibitors => &["id", "event_id"],
        }
    }
}

/// The problems of one file, capped.
struct Report {
    file: PathBuf,
    shown: Vec<Problem>,
    omitted: usize,
}

impl Report {
    fn new(file: &Path) -> Self {
        Report {
            file: file.to_path_buf(),
            shown: Vec::new(),
            omitted: 0,
        }
    }

    fn add(&mut self, line: Option<u64>, message: impl Into<String>) {
        if self.shown.len() < MAX_PROBLEMS_PER_FILE {
            self.shown.push(Problem {
                file: self.file.clone(),
                line,
                message: message.into(),
            });
        } else {
            self.omitted += 1;
        }
    }

    fn is_clean(&self) -> bool {
        self.shown.is_empty()
    }
}

/// Resolves an event reference (`id` or public `event_id`) to the event's `id`.
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

/// Reads and checks the files of one command against the stored events (`(id, event_id)`
/// pairs), and returns every row to upsert, or every problem found.
pub fn read_catalog(
    files: &ImportFiles,
    stored_events: &[(String, String)],
) -> Result<CatalogImport, ImportError> {
    let mut reports = Vec::new();
    let mut import = CatalogImport::default();
    let mut final_events: HashMap<String, String> = stored_events.iter().cloned().collect();

    if let Some(path) = &files.events {
        let mut report = Report::new(path);
        if let Some(rows) = read_rows(path, Kind::Events, &mut report) {
            import.events = events_from(&rows, &mut final_events, &mut report);
        }
        reports.push(report);
    }
    let index = EventIndex::new(final_events);
    if let Some(path) = &files.exhibitors {
        let mut report = Report::new(path);
        if let Some(rows) = read_rows(path, Kind::Exhibitors, &mut report) {
            import.exhibitors = convert(&rows, &mut report, MAX_EXHIBITOR_ID_CHARS, |row, id| {
                exhibitor(row, id, &index)
            });
        }
        reports.push(report);
    }
    if let Some(path) = &files.personnel {
        let mut report = Report::new(path);
        if let Some(rows) = read_rows(path, Kind::Personnel, &mut report) {
            import.personnel = convert(&rows, &mut report, MAX_PERSONNEL_ID_CHARS, |row, id| {
                person(row, id, &index)
            });
        }
        reports.push(report);
    }

    if reports.iter().all(Report::is_clean) {
        return Ok(import);
    }
    let mut error = ImportError {
        problems: Vec::new(),
        omitted: Vec::new(),
    };
    for report in reports {
        if report.omitted > 0 {
            error.omitted.push((report.file.clone(), report.omitted));
        }
        error.problems.extend(report.shown);
    }
    Err(error)
}

/// One raw row: its line number and its fields by column name.
struct Row {
    line: u64,
    fields: Map<String, Value>,
}

impl Row {
    fn supplied(&self, known: &'static [&'static str]) -> Columns {
        let mut columns = Columns::none(known);
        for name in self.fields.keys() {
            columns.insert(name);
        }
        columns
    }

    /// A text column: `None` when absent, null or blank.
    fn text(&self, name: &str) -> Result<Option<String>, String> {
        match self.fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(format!(
                "{name}: must be a string, not {}",
                json_kind(other)
            )),
        }
    }

    /// A list column: `a;b` in CSV, a JSON array or an `a;b` string in JSON Lines.
    fn list(&self, name: &str) -> Result<Vec<String>, String> {
        match self.fields.get(name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for item in items {
                    match item {
                        Value::String(s) if !s.trim().is_empty() => out.push(s.trim().to_string()),
                        Value::String(_) => {}
                        Value::Number(n) => out.push(n.to_string()),
                        other => {
                            return Err(format!(
                                "{name}: entries must be strings, not {}",
                                json_kind(other)
                            ))
                        }
                    }
                }
                Ok(out)
            }
            Some(Value::String(s)) => Ok(s
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()),
            Some(other) => Err(format!(
                "{name}: must be a list (a JSON array or \"a;b\"), not {}",
                json_kind(other)
            )),
        }
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Edit distance, for suggesting the known column closest to a misspelled one.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

fn unknown_column(name: &str, kind: Kind) -> String {
    let lowered = name.to_ascii_lowercase();
    let closest = kind
        .columns()
        .iter()
        .map(|known| (edit_distance(&lowered, known), *known))
        .min();
    match closest {
        Some((distance, known)) if distance <= known.len().max(3) / 2 => {
            format!("unknown column {name:?} (did you mean {known:?}?)")
        }
        _ => format!(
            "unknown column {name:?} (the columns are: {})",
            kind.columns().join(", ")
        ),
    }
}

/// Reads a file's rows, reporting problems of its shape (type, header, malformed lines).
/// `None` when the rows cannot be trusted at all (unreadable file, bad header).
fn read_rows(path: &Path, kind: Kind, report: &mut Report) -> Option<Vec<Row>> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    if !matches!(extension.as_str(), "csv" | "jsonl" | "ndjson") {
        report.add(
            None,
            format!("unknown file type {extension:?}: name it .csv, .jsonl or .ndjson"),
        );
        return None;
    }
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) => {
            report.add(None, format!("cannot open: {e}"));
            return None;
        }
    };
    let rows = if extension == "csv" {
        read_csv(file, kind, report)?
    } else {
        read_jsonl(file, kind, report)
    };
    if rows.is_empty() && report.is_clean() {
        report.add(None, "no rows: the file has nothing to import");
    }
    Some(rows)
}

fn read_csv(file: File, kind: Kind, report: &mut Report) -> Option<Vec<Row>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(BufReader::new(file));
    let headers: Vec<String> = match reader.headers() {
        Ok(headers) => headers
            .iter()
            .enumerate()
            // A spreadsheet's byte-order mark is not part of the first column's name.
            .map(|(i, h)| {
                if i == 0 {
                    h.trim_start_matches('\u{feff}')
                } else {
                    h
                }
                .to_string()
            })
            .collect(),
        Err(e) => {
            report.add(Some(1), format!("unreadable header: {}", csv_problem(&e)));
            return None;
        }
    };
    if headers.is_empty() || headers.iter().all(String::is_empty) {
        report.add(
            None,
            format!(
                "empty file: the first line must be a header naming the columns ({})",
                kind.columns().join(", ")
            ),
        );
        return None;
    }
    if !headers.iter().any(|h| kind.columns().contains(&h.as_str())) {
        report.add(
            Some(1),
            format!(
                "no header: the first line must name the columns ({}), but it names none of them",
                kind.columns().join(", ")
            ),
        );
        return None;
    }
    let mut seen = HashSet::new();
    for (i, name) in headers.iter().enumerate() {
        if name.is_empty() {
            report.add(
                Some(1),
                format!("column {} of the header has no name", i + 1),
            );
        } else if !kind.columns().contains(&name.as_str()) {
            report.add(Some(1), unknown_column(name, kind));
        } else if !seen.insert(name.as_str()) {
            report.add(
                Some(1),
                format!("column {name:?} appears twice in the header"),
            );
        }
    }
    let missing: Vec<&str> = kind
        .required()
        .iter()
        .copied()
        .filter(|r| !headers.iter().any(|h| h == r))
        .collect();
    if !missing.is_empty() {
        report.add(
            Some(1),
            format!("missing required column(s): {}", missing.join(", ")),
        );
    }
    if !report.is_clean() {
        return None;
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        match record {
            Ok(record) => {
                let line = record.position().map_or(0, |p| p.line());
                let fields = headers
                    .iter()
                    .zip(record.iter())
                    .map(|(h, v)| (h.clone(), Value::String(v.to_string())))
                    .collect();
                rows.push(Row { line, fields });
            }
            Err(e) => {
                let line = e.position().map(|p| p.line());
                let fatal = matches!(e.kind(), csv::ErrorKind::Io(_));
                report.add(line, csv_problem(&e));
                if fatal {
                    break;
                }
            }
        }
    }
    Some(rows)
}

fn csv_problem(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("this row has {len} fields, the header has {expected_len}"),
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8 text".into(),
        csv::ErrorKind::Io(io) => format!("cannot read: {io}"),
        _ => format!("malformed CSV: {e}"),
    }
}

fn read_jsonl(file: File, kind: Kind, report: &mut Report) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut unknown_reported = HashSet::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let number = i as u64 + 1;
        let line = match line {
            Ok(line) => line,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                report.add(Some(number), "not valid UTF-8 text");
                continue;
            }
            Err(e) => {
                report.add(Some(number), format!("cannot read: {e}"));
                break;
            }
        };
        let text = line.trim_start_matches('\u{feff}');
        if text.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(fields)) => {
                for name in fields.keys() {
                    if !kind.columns().contains(&name.as_str())
                        && unknown_reported.insert(name.clone())
                    {
                        report.add(Some(number), unknown_column(name, kind));
                    }
                }
                rows.push(Row {
                    line: number,
                    fields,
                });
            }
            Ok(other) => report.add(
                Some(number),
                format!("expected a JSON object, found {}", json_kind(&other)),
            ),
            Err(e) => {
                // The parser counts lines within this one line; keep only its column.
                let message = e.to_string();
                let suffix = format!(" at line {} column {}", e.line(), e.column());
                let message = message.strip_suffix(&suffix).unwrap_or(&message);
                report.add(
                    Some(number),
                    format!("invalid JSON at column {}: {message}", e.column()),
                );
            }
        }
    }
    rows
}

/// Checks a row's `id` (present, well formed, not repeated in the file).
fn row_id(row: &Row, seen: &mut HashMap<String, u64>, max_chars: usize) -> Result<String, String> {
    let id = match row.text("id")? {
        Some(id) => id,
        None if !row.fields.contains_key("id") => return Err("missing required field: id".into()),
        None => return Err("id: required, but empty".into()),
    };
    check_key("id", &id, max_chars)?;
    if let Some(first) = seen.insert(id.clone(), row.line) {
        return Err(format!("id: {id:?} already appears on line {first}"));
    }
    Ok(id)
}

fn check_key(field: &str, value: &str, max_chars: usize) -> Result<(), String> {
    if value.chars().count() > max_chars
        || value.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{field}: {value:?} must be 1 to {max_chars} characters without spaces"
        ));
    }
    Ok(())
}

/// Converts every row, reporting each bad one.
fn convert<T: CatalogRecord>(
    rows: &[Row],
    report: &mut Report,
    max_id_chars: usize,
    each: impl Fn(&Row, String) -> Result<T, String>,
) -> Vec<Upsert<T>> {
    let mut seen = HashMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        match row_id(row, &mut seen, max_id_chars).and_then(|id| each(row, id)) {
            Ok(record) => out.push(Upsert {
                record,
                supplied: row.supplied(T::COLUMNS),
            }),
            Err(message) => report.add(Some(row.line), message),
        }
    }
    out
}

/// The events of a file, with their public ids checked against each other and against the
/// stored events. `catalog` (every event as `id -> event_id`) is updated to the catalog
/// as the import would leave it.
fn events_from(
    rows: &[Row],
    catalog: &mut HashMap<String, String>,
    report: &mut Report,
) -> Vec<Upsert<EventRecord>> {
    let mut events = convert(rows, report, MAX_EVENT_ID_CHARS, event);
    let mut lines: HashMap<String, u64> = HashMap::new();
    let mut no_public_id: HashSet<String> = HashSet::new();
    for row in rows {
        if let Ok(Some(id)) = row.text("id") {
            if matches!(row.text("event_id"), Ok(None)) {
                no_public_id.insert(id.clone());
            }
            lines.insert(id, row.line);
        }
    }
    for upsert in &mut events {
        // An empty public id counts as not given.
        if no_public_id.contains(&upsert.record.id) {
            upsert.supplied.remove("event_id");
        }
        let event = &mut upsert.record;
        if upsert.supplied.has("event_id") {
            catalog.insert(event.id.clone(), event.event_id.clone());
        } else if let Some(stored) = catalog.get(&event.id) {
            // No public id given: an existing event keeps its own.
            event.event_id = stored.clone();
        } else {
            catalog.insert(event.id.clone(), event.event_id.clone());
        }
    }

    // Every name (id or public id) and the events it would name.
    let mut owners: HashMap<&str, Vec<&str>> = HashMap::new();
    for (id, alias) in catalog.iter() {
        owners.entry(id.as_str()).or_default().push(id.as_str());
        if alias != id {
            owners.entry(alias.as_str()).or_default().push(id.as_str());
        }
    }
    let mut clashes = Vec::new();
    for upsert in &events {
        let event = &upsert.record;
        let alias = &event.event_id;
        let names = if *alias == event.id {
            vec![("id", &event.id)]
        } else {
            vec![("event_id", alias), ("id", &event.id)]
        };
        for (field, name) in names {
            let mut others: Vec<&str> = owners
                .get(name.as_str())
                .into_iter()
                .flatten()
                .copied()
                .filter(|other| *other != event.id)
                .collect();
            others.sort_unstable();
            let Some(other) = others.first() else {
                continue;
            };
            let how = match (lines.get(*other), catalog.get(*other) == Some(name)) {
                (Some(line), _) => format!("is also given to event {other} on line {line}"),
                (None, true) => format!("is already the public id (event_id) of event {other}"),
                (None, false) => format!("is already the id of event {other}"),
            };
            let line = lines.get(&event.id).copied();
            clashes.push((line, format!("{field}: {name:?} {how}")));
            break;
        }
    }
    clashes.sort();
    for (line, message) in clashes {
        report.add(line, message);
    }
    events
}

fn event(row: &Row, id: String) -> Result<EventRecord, String> {
    // An empty public id counts as not given: the stored one stays (see `events_from`), a
    // new event takes its id.
    let event_id = match row.text("event_id")? {
        Some(alias) => {
            check_key("event_id", &alias, MAX_EVENT_ID_CHARS)?;
            alias
        }
        None => id.clone(),
    };
    for field in ["date_start", "date_end"] {
        if let Some(date) = row.text(field)? {
            if chrono::NaiveDate::parse_from_str(&date, "%Y-%m-%d").is_err() {
                return Err(format!("{field}: {date:?} is not a YYYY-MM-DD date"));
            }
        }
    }
    Ok(EventRecord {
        id,
        event_id,
        name: row.text("name")?,
        date_start: row.text("date_start")?,
        date_end: row.text("date_end")?,
        venue: row.text("venue")?,
        city: row.text("city")?,
        region: row.text("region")?,
        country: row.text("country")?,
        url: row.text("url")?,
        description: row.text("description")?,
    })
}

fn exhibitor(row: &Row, id: String, events: &EventIndex) -> Result<ExhibitorRecord, String> {
    let reference = match row.text("event_id")? {
        Some(reference) => reference,
        None if !row.fields.contains_key("event_id") => {
            return Err("missing required field: event_id".into())
        }
        None => return Err("event_id: required, but empty".into()),
    };
    let event_id = events
        .resolve(&reference)
        .ok_or_else(|| format!("event_id: unknown event {reference:?}"))?
        .clone();
    Ok(ExhibitorRecord {
        id,
        event_id,
        company_name: row.text("company_name")?,
        website: row.text("website")?,
        country: row.text("country")?,
    })
}

fn person(row: &Row, id: String, events: &EventIndex) -> Result<PersonRecord, String> {
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
    let email = row.text("email")?;
    if let Some(email) = &email {
        if !email.contains('@') || email.chars().any(char::is_whitespace) {
            return Err("email: not an email address".into());
        }
    }
    Ok(PersonRecord {
        id,
        full_name: row.text("full_name")?,
        title: row.text("title")?,
        department: row.text("department")?,
        seniority_level: row.text("seniority_level")?,
        linkedin_url: row.text("linkedin_url")?,
        company_name: row.text("company_name")?,
        exhibitor_id: row.text("exhibitor_id")?,
        event_ids,
        source_type,
        email,
        phone: row.text("phone")?,
    })
}
