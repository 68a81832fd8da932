//! The unlock create body: any bytes decode to the parsed request or a field-naming 400.
#![no_main]

use libfuzzer_sys::fuzz_target;
use unlockd::http::parsing;

fuzz_target!(|data: &[u8]| {
    let _ = parsing::is_json_content_type(data);
    match parsing::unlock_body(data) {
        Ok((event_id, ids)) => {
            // What the parser promises the handler.
            assert!(!event_id.is_empty() && event_id.chars().count() <= 100);
            assert!(!ids.is_empty() && ids.len() <= 100);
            let unique: std::collections::HashSet<&String> = ids.iter().collect();
            assert_eq!(unique.len(), ids.len(), "ids are deduplicated");
        }
        Err(e) => assert!(e.status.is_client_error(), "{e:?}"),
    }
});
