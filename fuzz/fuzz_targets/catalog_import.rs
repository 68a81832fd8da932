//! The catalog import parser (CSV and JSON Lines): any file is read into records or
//! refused with its line, never a panic. The first byte picks the format and the file
//! kind; the rest is the file.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use unlockd::catalog::import::{self, EventIndex};

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
    let index = EventIndex::new([("1001".to_string(), "139574".to_string())]);
    match (selector >> 1) % 3 {
        0 => {
            if let Ok(events) = import::read_events(&path) {
                for event in &events {
                    assert!(!event.id.is_empty());
                }
            }
        }
        1 => {
            let _ = import::read_exhibitors(&path, &index);
        }
        _ => {
            let _ = import::read_personnel(&path, &index);
        }
    }
});
