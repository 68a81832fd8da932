//! `unlockd import` as an operator runs it, against the database of each test (SQLite, or
//! PostgreSQL with `UNLOCKD_TEST_DATABASE_URL`): a file cannot corrupt the catalog. Absent
//! columns keep stored values, public event ids stay unique across the catalog, unknown
//! columns and empty files are refused, every bad row is reported, and the files of one
//! command are applied all together or not at all.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use unlockd::catalog::{CatalogImport, EventRecord, Upsert};
use unlockd::clock::SystemClock;
use unlockd::store::StoreError;

const BIN: &str = env!("CARGO_BIN_EXE_unlockd");

struct Env {
    db: common::TestDb,
    runtime: tokio::runtime::Runtime,
}

impl Env {
    fn new() -> Self {
        Env {
            db: common::TestDb::create_blocking(),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    fn write(&self, name: &str, body: &str) -> PathBuf {
        let path = self.db.path().join(name);
        std::fs::write(&path, body).unwrap();
        path
    }

    fn import(&self, args: &[(&str, &Path)]) -> Output {
        let mut command = Command::new(BIN);
        command
            .env("UNLOCKD_DATABASE_URL", &self.db.url)
            .env("UNLOCKD_LOG", "warn")
            .arg("import");
        for (flag, path) in args {
            command.arg(flag).arg(path);
        }
        command.output().expect("runs")
    }

    /// Imports, expecting success; returns stdout and stderr.
    fn ok(&self, args: &[(&str, &Path)]) -> (String, String) {
        let out = self.import(args);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{args:?}: {stderr}");
        (String::from_utf8_lossy(&out.stdout).to_string(), stderr)
    }

    /// Imports, expecting failure; returns stderr.
    fn fails(&self, args: &[(&str, &Path)]) -> String {
        let out = self.import(args);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "{args:?} should fail: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        stderr
    }

    fn scalar(&self, sql: &str) -> Option<String> {
        self.runtime
            .block_on(self.db.raw_scalar(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    fn count(&self, table: &str) -> i64 {
        self.scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .unwrap()
            .parse()
            .unwrap()
    }

    fn public_id(&self, event: &str) -> Option<String> {
        self.scalar(&format!("SELECT event_id FROM events WHERE id = '{event}'"))
    }
}

#[test]
fn a_column_absent_from_a_file_keeps_the_stored_values() {
    let env = Env::new();
    let events = env.write(
        "events.csv",
        "id,event_id,name,city\nE1,ev1,Expo,Berlin\nE2,ev2,Fair,Paris\n",
    );
    let people = env.write(
        "people.csv",
        "id,full_name,department,event_ids,email,phone\n\
         7,Ann,Sales,ev1;ev2,ann@acme.example,+1 555 0100\n\
         8,Bob,Sales,ev1,bob@acme.example,+1 555 0101\n",
    );
    env.ok(&[("--events", &events), ("--personnel", &people)]);

    // No event_id column: E1 keeps ev1 (the issue's case: it became "E1"); a new event's
    // public id is its id.
    let renamed = env.write("renamed.csv", "id,name\nE1,Expo 2027\nE3,Show\n");
    env.ok(&[("--events", &renamed)]);
    assert_eq!(env.public_id("E1").as_deref(), Some("ev1"));
    assert_eq!(env.public_id("E3").as_deref(), Some("E3"));
    assert_eq!(
        env.scalar("SELECT name FROM events WHERE id = 'E1'")
            .as_deref(),
        Some("Expo 2027")
    );
    assert_eq!(
        env.scalar("SELECT city FROM events WHERE id = 'E1'")
            .as_deref(),
        Some("Berlin"),
        "city was not in the file"
    );
    // An empty event_id cell is "not given" too.
    let blank = env.write("blank.csv", "id,event_id\nE2,\n");
    env.ok(&[("--events", &blank)]);
    assert_eq!(env.public_id("E2").as_deref(), Some("ev2"));

    // A personnel file with only a department: emails, phones and event links stay, and
    // the links' filter keys follow the new department.
    let department = env.write(
        "department.jsonl",
        "{\"id\":\"7\",\"department\":\"Marketing\"}\n",
    );
    env.ok(&[("--personnel", &department)]);
    assert_eq!(
        env.scalar("SELECT email FROM personnel WHERE id = '7'")
            .as_deref(),
        Some("ann@acme.example")
    );
    assert_eq!(
        env.scalar("SELECT full_name FROM personnel WHERE id = '7'")
            .as_deref(),
        Some("Ann")
    );
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM personnel_events WHERE personnel_id = '7'")
            .as_deref(),
        Some("2")
    );
    assert_eq!(
        env.scalar(
            "SELECT COUNT(*) FROM personnel_events WHERE personnel_id = '7' AND department_key = 'marketing'"
        )
        .as_deref(),
        Some("2")
    );
    // A supplied column with an empty value clears it; JSON null likewise.
    let cleared = env.write("cleared.csv", "id,phone\n7,\n");
    env.ok(&[("--personnel", &cleared)]);
    assert_eq!(
        env.scalar("SELECT phone FROM personnel WHERE id = '7'"),
        None
    );
    assert_eq!(
        env.scalar("SELECT email FROM personnel WHERE id = '7'")
            .as_deref(),
        Some("ann@acme.example")
    );
    let nulled = env.write("nulled.jsonl", "{\"id\":\"8\",\"email\":null}\n");
    env.ok(&[("--personnel", &nulled)]);
    assert_eq!(
        env.scalar("SELECT email FROM personnel WHERE id = '8'"),
        None
    );
    assert_eq!(
        env.scalar("SELECT phone FROM personnel WHERE id = '8'")
            .as_deref(),
        Some("+1 555 0101")
    );
    // A supplied event_ids replaces the links.
    let moved = env.write("moved.csv", "id,event_ids\n7,E3\n");
    env.ok(&[("--personnel", &moved)]);
    assert_eq!(
        env.scalar("SELECT event_id FROM personnel_events WHERE personnel_id = '7'")
            .as_deref(),
        Some("E3")
    );
    assert_eq!(env.count("personnel_events"), 2);
    assert_eq!(
        env.scalar("SELECT personnel_count FROM events WHERE id = 'E2'")
            .as_deref(),
        Some("0")
    );
}

#[test]
fn public_event_ids_are_unique_across_the_catalog() {
    let env = Env::new();
    let events = env.write("events.csv", "id,event_id\nE1,ev1\nE2,ev2\n");
    env.ok(&[("--events", &events)]);

    // The issue's case: a new event takes a public id another event already has.
    let taken = env.write("taken.csv", "id,event_id,name\nE6,ev6,Fine\nE7,ev2,Clash\n");
    let err = env.fails(&[("--events", &taken)]);
    assert!(
        err.contains(
            "taken.csv:3: event_id: \"ev2\" is already the public id (event_id) of event E2"
        ),
        "{err}"
    );
    assert!(err.contains("nothing was imported"), "{err}");
    assert_eq!(env.public_id("E6"), None, "nothing of the file applied");
    assert_eq!(env.public_id("E7"), None);

    // A new event without event_id whose id is another event's public id.
    let by_id = env.write("by_id.csv", "id,name\nev1,Shadow\n");
    let err = env.fails(&[("--events", &by_id)]);
    assert!(
        err.contains("by_id.csv:2: id: \"ev1\" is already the public id (event_id) of event E1"),
        "{err}"
    );
    // A public id equal to another event's id would make references ambiguous.
    let alias_is_id = env.write("alias_is_id.csv", "id,event_id\nE8,E1\n");
    let err = env.fails(&[("--events", &alias_is_id)]);
    assert!(
        err.contains("alias_is_id.csv:2: event_id: \"E1\" is already the id of event E1"),
        "{err}"
    );
    // Two rows of one file.
    let twice = env.write("twice.csv", "id,event_id\nE8,new\nE9,new\n");
    let err = env.fails(&[("--events", &twice)]);
    assert!(
        err.contains("twice.csv:2: event_id: \"new\" is also given to event E9 on line 3"),
        "{err}"
    );
    assert_eq!(env.count("events"), 2);

    // Moving a public id is fine when its old holder gives it up in the same file.
    let swap = env.write("swap.csv", "id,event_id\nE1,ev2\nE2,ev1\n");
    env.ok(&[("--events", &swap)]);
    assert_eq!(env.public_id("E1").as_deref(), Some("ev2"));
    assert_eq!(env.public_id("E2").as_deref(), Some("ev1"));
}

#[test]
fn the_store_refuses_a_public_id_clash_even_without_the_reader() {
    let env = Env::new();
    env.runtime.block_on(async {
        let store = unlockd::store::connect(&env.db.url, Default::default(), Arc::new(SystemClock))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let event = |id: &str, alias: &str| EventRecord {
            id: id.into(),
            event_id: alias.into(),
            name: None,
            date_start: None,
            date_end: None,
            venue: None,
            city: None,
            region: None,
            country: None,
            url: None,
            description: None,
        };
        store
            .import_events(&[event("E1", "ev1")], &|_| {})
            .await
            .unwrap();
        let clash = CatalogImport {
            events: vec![
                Upsert::whole(event("E2", "ev3")),
                Upsert::whole(event("E3", "ev1")),
            ],
            personnel: vec![Upsert::whole(common::person("7", &["E2"], None))],
            ..Default::default()
        };
        let err = store.import_catalog(&clash, &|_| {}).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Invalid(m) if m.contains("\"ev1\"")),
            "{err}"
        );
        let counts = store.catalog_counts().await.unwrap();
        assert_eq!(
            (counts.events, counts.personnel),
            (1, 0),
            "rolled back whole"
        );
    });
}

#[test]
fn unknown_columns_missing_columns_and_empty_files_are_errors() {
    let env = Env::new();
    let events = env.write("events.csv", "id\nE1\n");
    env.ok(&[("--events", &events)]);

    let misspelled = env.write("misspelled.csv", "id,emial,event_ids\n7,a@b.example,E1\n");
    let err = env.fails(&[("--personnel", &misspelled)]);
    assert!(
        err.contains("misspelled.csv:1: unknown column \"emial\" (did you mean \"email\"?)"),
        "{err}"
    );
    let jsonl = env.write(
        "misspelled.jsonl",
        "{\"id\":\"7\",\"fullname\":\"Ann\"}\n{\"id\":\"8\",\"fullname\":\"Bob\"}\n",
    );
    let err = env.fails(&[("--personnel", &jsonl)]);
    assert!(
        err.contains(
            "misspelled.jsonl:1: unknown column \"fullname\" (did you mean \"full_name\"?)"
        ),
        "{err}"
    );
    let headless = env.write("headless.csv", "E1,ev1,Expo\n");
    let err = env.fails(&[("--events", &headless)]);
    assert!(
        err.contains(
            "headless.csv:1: no header: the first line must name the columns (id, event_id,"
        ),
        "{err}"
    );
    let far_off = env.write("far.csv", "id,zzzzzzzz\n7,x\n");
    let err = env.fails(&[("--personnel", &far_off)]);
    assert!(
        err.contains("unknown column \"zzzzzzzz\" (the columns are: id, full_name"),
        "{err}"
    );

    let no_event = env.write("exhibitors.csv", "id,company_name\nX1,Acme\n");
    let err = env.fails(&[("--exhibitors", &no_event)]);
    assert!(
        err.contains("exhibitors.csv:1: missing required column(s): event_id"),
        "{err}"
    );
    let no_id = env.write("no_id.csv", "company_name\nAcme\n");
    let err = env.fails(&[("--exhibitors", &no_id)]);
    assert!(
        err.contains("missing required column(s): id, event_id"),
        "{err}"
    );

    let empty = env.write("empty.csv", "");
    let err = env.fails(&[("--personnel", &empty)]);
    assert!(err.contains("empty.csv: empty file"), "{err}");
    let header_only = env.write("header_only.csv", "id,full_name\n");
    let err = env.fails(&[("--personnel", &header_only)]);
    assert!(err.contains("header_only.csv: no rows"), "{err}");
    let empty_jsonl = env.write("empty.jsonl", "\n\n");
    let err = env.fails(&[("--personnel", &empty_jsonl)]);
    assert!(err.contains("empty.jsonl: no rows"), "{err}");
    assert_eq!(env.count("personnel"), 0);
    assert_eq!(env.count("exhibitors"), 0);
}

#[test]
fn every_bad_row_is_reported_up_to_a_limit() {
    let env = Env::new();
    let events = env.write("events.csv", "id,event_id\nE1,ev1\n");
    env.ok(&[("--events", &events)]);

    let mut body = String::from("id,event_ids,email\n");
    for i in 0..25 {
        body.push_str(&format!("{i},ev1,not-an-email\n"));
    }
    body.push_str("99,nope,ok@acme.example\n");
    let bad = env.write("bad.csv", &body);
    let err = env.fails(&[("--personnel", &bad)]);
    assert!(err.contains("26 problems found"), "{err}");
    for line in 2..=21 {
        assert!(
            err.contains(&format!("bad.csv:{line}: email: not an email address")),
            "line {line}: {err}"
        );
    }
    assert!(
        !err.contains("bad.csv:22:"),
        "only the first 20 are listed: {err}"
    );
    assert!(err.contains("bad.csv: and 6 more problems"), "{err}");

    // A missing file: no line number.
    let missing = env.db.path().join("missing.csv");
    let err = env.fails(&[("--personnel", &missing)]);
    assert!(err.contains("missing.csv: cannot open"), "{err}");
    assert!(!err.contains("missing.csv:0"), "{err}");

    // JSON Lines: the file's line, not the parser's "line 1".
    let broken = env.write(
        "broken.jsonl",
        "{\"id\":\"1\",\"event_ids\":[\"ev1\"]}\n\n{\"id\":\"2\",\"email\":}\n[1]\n{\"id\":\"3\",\"title\":true}\n",
    );
    let err = env.fails(&[("--personnel", &broken)]);
    assert!(
        err.contains("broken.jsonl:3: invalid JSON at column"),
        "{err}"
    );
    assert!(!err.contains("line 1 column"), "{err}");
    assert!(
        err.contains("broken.jsonl:4: expected a JSON object, found an array"),
        "{err}"
    );
    assert!(
        err.contains("broken.jsonl:5: title: must be a string, not true/false"),
        "{err}"
    );

    // A CSV row with the wrong number of fields is reported, and the rows after it too.
    let ragged = env.write(
        "ragged.csv",
        "id,email\n1,a@acme.example\n2,b@acme.example,extra\n3,bad\n",
    );
    let err = env.fails(&[("--personnel", &ragged)]);
    assert!(
        err.contains("ragged.csv:3: this row has 3 fields, the header has 2"),
        "{err}"
    );
    assert!(err.contains("ragged.csv:4: email"), "{err}");
    assert_eq!(env.count("personnel"), 0);
}

#[test]
fn the_files_of_one_command_are_applied_all_or_nothing() {
    let env = Env::new();
    let events = env.write("events.csv", "id,event_id,name\nE1,ev1,Expo\n");
    let exhibitors = env.write("exhibitors.csv", "id,event_id,company_name\nX1,ev1,Acme\n");
    let bad_people = env.write(
        "people.csv",
        "id,event_ids,email\n7,ev1,a@acme.example\n8,ev1,broken\n",
    );
    let err = env.fails(&[
        ("--events", &events),
        ("--exhibitors", &exhibitors),
        ("--personnel", &bad_people),
    ]);
    assert!(err.contains("people.csv:3: email"), "{err}");
    assert!(err.contains("nothing was imported"), "{err}");
    assert_eq!(
        env.count("events"),
        0,
        "the good events file was not applied"
    );
    assert_eq!(env.count("exhibitors"), 0);
    assert_eq!(env.count("personnel"), 0);

    // Fixed, the same command applies all three; the later files may refer to events of
    // the first by public id.
    let people = env.write(
        "people.csv",
        "id,event_ids,email,exhibitor_id\n7,ev1,a@acme.example,X1\n8,E1,b@acme.example,X1\n",
    );
    let (out, _) = env.ok(&[
        ("--events", &events),
        ("--exhibitors", &exhibitors),
        ("--personnel", &people),
    ]);
    assert!(out.contains("events.csv: 1 events imported"), "{out}");
    assert!(out.contains("people.csv: 2 personnel imported"), "{out}");
    assert!(
        out.contains("catalog now holds 1 events, 1 exhibitors, 2 personnel"),
        "{out}"
    );
    assert_eq!(
        env.scalar("SELECT personnel_count FROM events WHERE id = 'E1'")
            .as_deref(),
        Some("2")
    );
    assert_eq!(
        env.scalar("SELECT exhibitor_count FROM events WHERE id = 'E1'")
            .as_deref(),
        Some("1")
    );
}

#[test]
fn progress_is_reported_in_plain_lines_off_a_terminal() {
    let env = Env::new();
    let events = env.write("events.csv", "id,event_id\nE1,ev1\n");
    let mut body = String::from("id,event_ids,email\n");
    for i in 0..5_000 {
        body.push_str(&format!("{i},ev1,p{i}@acme.example\n"));
    }
    let people = env.write("people.csv", &body);
    let (_, stderr) = env.ok(&[("--events", &events), ("--personnel", &people)]);
    assert!(
        stderr.contains("import: reading and checking") && stderr.contains("people.csv"),
        "{stderr}"
    );
    assert!(
        stderr.contains("import: checked, writing 5,001 rows"),
        "{stderr}"
    );
    let periodic: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(" rows (") && l.contains("rows/s, ETA "))
        .collect();
    assert!(
        periodic.len() >= 2,
        "a line per tenth of the rows: {stderr}"
    );
    assert!(stderr.contains("import: wrote 5,001 rows in "), "{stderr}");
}

/// The examples of docs/import-format.md import as documented: the CSV set, then the JSON
/// Lines set over it (whose second person line changes only a department).
#[test]
fn the_documented_examples_import() {
    let env = Env::new();
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/import-format.md"
    ))
    .unwrap();
    let mut blocks = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if let Some(kind) = line
            .strip_prefix("```")
            .filter(|k| *k == "csv" || *k == "json")
        {
            let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            blocks.push((kind, body.join("\n") + "\n"));
        }
    }
    let kinds: Vec<&str> = blocks.iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, ["csv", "json", "csv", "json", "csv", "json"]);
    let file = |i: usize, name: &str| {
        let (kind, body) = &blocks[i];
        let ext = if *kind == "csv" { "csv" } else { "jsonl" };
        env.write(&format!("{name}.{ext}"), body)
    };
    let csv = [
        file(0, "events"),
        file(2, "exhibitors"),
        file(4, "personnel"),
    ];
    let (out, _) = env.ok(&[
        ("--events", &csv[0]),
        ("--exhibitors", &csv[1]),
        ("--personnel", &csv[2]),
    ]);
    assert!(
        out.contains("catalog now holds 2 events, 2 exhibitors, 2 personnel"),
        "{out}"
    );
    let jsonl = [
        file(1, "events"),
        file(3, "exhibitors"),
        file(5, "personnel"),
    ];
    env.ok(&[
        ("--events", &jsonl[0]),
        ("--exhibitors", &jsonl[1]),
        ("--personnel", &jsonl[2]),
    ]);
    assert_eq!(env.public_id("1002").as_deref(), Some("1002"));
    assert_eq!(
        env.scalar("SELECT department FROM personnel WHERE id = '790'")
            .as_deref(),
        Some("Purchasing")
    );
    assert_eq!(
        env.scalar("SELECT full_name FROM personnel WHERE id = '790'")
            .as_deref(),
        Some("John Roe"),
        "not in that line, so kept"
    );
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM personnel_events WHERE personnel_id = '790'")
            .as_deref(),
        Some("2")
    );
}
