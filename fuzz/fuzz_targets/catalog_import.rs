//! The catalog import parser (CSV and JSON Lines): any file is read into records or
//! refused with its line, never a panic. The first byte picks the format and the file
//! kind; the rest is the file.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use unlockd::catalog::import::{self, ImportFiles};

/// This process's scratch directory (the readers take paths).
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("unlockd-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, file)) = data.split_first() else {
        return;
    };
    let extension = if selector & 1 == 0 { "csv" } else { "jsonl" };
    let path = scratch().join(format!("input.{extension}"));
    if std::fs::write(&path, file).is_err() {
        return;
    }
    let stored = [("1001".to_string(), "139574".to_string())];
    let files = match (selector >> 1) % 3 {
        0 => ImportFiles {
            events: Some(path),
            ..ImportFiles::default()
        },
        1 => ImportFiles {
            exhibitors: Some(path),
            ..ImportFiles::default()
        },
        _ => ImportFiles {
            personnel: Some(path),
            ..ImportFiles::default()
        },
    };
    if let Ok(import) = import::read_catalog(&files, &stored) {
        for event in &import.events {
            assert!(!event.record.id.is_empty());
        }
    }
});
