//! Query strings: every parameter reader answers a value or a 400, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use unlockd::http::parsing;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parsing::decodes_to_utf8(raw);
    for answer in parsing::read_query(raw) {
        if let Err(e) = answer {
            assert_eq!(e.status.as_u16(), 400, "{e:?}");
        }
    }
    if let Some(n) = parsing::parse_whole(raw) {
        assert_eq!(n.to_string().len() <= raw.len(), true);
    }
});
