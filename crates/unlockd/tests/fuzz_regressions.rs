//! Inputs for the fuzz targets' functions (scripts/fuzz) kept as regression tests: hostile
//! bodies, query strings and import files are a value or a 400/line error, never a panic.
//! A crasher found by fuzzing goes here with the input that found it.

use unlockd::catalog::import;
use unlockd::http::parsing;

#[test]
fn hostile_unlock_bodies_are_400() {
    let deep = "[".repeat(100_000);
    let long_id = format!(
        r#"{{"event_id":"{}","personnel_ids":["1"]}}"#,
        "e".repeat(101)
    );
    for body in [
        &b""[..],
        b"null",
        b"[]",
        b"{}",
        b"\xff\xfe",
        b"{\"event_id\":\"\xff\",\"personnel_ids\":[\"1\"]}",
        b"{\"event_id\":1e999999,\"personnel_ids\":[\"1\"]}",
        b"{\"event_id\":\"e\",\"personnel_ids\":[]}",
        b"{\"event_id\":\"e\",\"personnel_ids\":[null]}",
        b"{\"event_id\":\"\\ud800\",\"personnel_ids\":[\"1\"]}",
        deep.as_bytes(),
        long_id.as_bytes(),
    ] {
        let error = parsing::unlock_body(body).expect_err("refused");
        assert_eq!(error.status.as_u16(), 400, "{body:?}: {error:?}");
    }
    let (event, ids) = parsing::unlock_body(br#"{"event_id":"e","personnel_ids":["1","1","2"]}"#)
        .expect("a good body");
    assert_eq!((event.as_str(), ids.len()), ("e", 2));
}

#[test]
fn hostile_precheck_bodies_are_400_or_parsed() {
    for body in [
        &br#"{"action_type":"others","params":{}}"#[..],
        br#"{"action_type":"unlock_contact_emails","params":{"event_id":"e","personnel_ids":["1"]}}"#,
    ] {
        assert!(parsing::precheck_body(body).is_ok(), "{body:?}");
    }
    for body in [
        &br#"{"action_type":"nope","params":{}}"#[..],
        br#"{"action_type":"others","params":[]}"#,
        br#"{"action_type":"others","params":{},"extra":1}"#,
        br#"{"action_type":"unlock_contact_phones","params":{"event_id":""}}"#,
        br#"{"action_type":"others","params":{},"locale":5}"#,
    ] {
        let error = parsing::precheck_body(body).expect_err("refused");
        assert_eq!(error.status.as_u16(), 400, "{body:?}");
    }
}

#[test]
fn hostile_query_strings_never_panic() {
    let long = format!("keyword={}", "%FF".repeat(10_000));
    for raw in [
        "",
        "&&&==&",
        "page=99999999999999999999999",
        "pageSize=-1",
        "wait=18446744073709551616",
        "date_start_from=9999-99-99",
        "date_start_from=2027-02-2%C3%A9",
        "date_start_from=%E2%80%8A%E2%80%8A%E2%80%8A%E2%80%8A%E2%80%8A",
        "keyword=%",
        "%=%",
        long.as_str(),
    ] {
        for answer in parsing::read_query(raw) {
            if let Err(e) = answer {
                assert_eq!(e.status.as_u16(), 400, "{raw}");
            }
        }
    }
    assert!(!parsing::decodes_to_utf8("a=%FF"));
    assert!(parsing::decodes_to_utf8("a=%C3%A9&b=%"));
}

#[test]
fn hostile_import_files_are_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let stored = [("1001".to_string(), "139574".to_string())];
    let files: [(&str, &[u8]); 6] = [
        ("a.csv", b"id,eventId\n\"unterminated\n"),
        ("b.csv", b"\xff\xfe\n\x00"),
        ("c.jsonl", b"{\"id\":[1,2]}\n"),
        (
            "d.jsonl",
            b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n",
        ),
        ("e.jsonl", b"{\"id\":\"1\",\"eventIds\":{\"x\":1}}\n"),
        ("f.csv", b""),
    ];
    for (name, content) in files {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        for files in [
            import::ImportFiles {
                events: Some(path.clone()),
                ..Default::default()
            },
            import::ImportFiles {
                exhibitors: Some(path.clone()),
                ..Default::default()
            },
            import::ImportFiles {
                personnel: Some(path.clone()),
                ..Default::default()
            },
        ] {
            let _ = import::read_catalog(&files, &stored);
        }
    }
}
