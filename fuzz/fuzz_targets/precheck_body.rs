//! The precheck body: any bytes decode to an action and params, or a 400.
#![no_main]

use libfuzzer_sys::fuzz_target;
use unlockd::http::parsing;

fuzz_target!(|data: &[u8]| {
    match parsing::precheck_body(data) {
        Ok((action_type, _params, unlock)) => {
            assert!(!action_type.is_empty());
            if let Some((event_id, ids)) = unlock {
                assert!(!event_id.is_empty());
                assert!(!ids.is_empty() && ids.len() <= 100);
            }
        }
        Err(e) => assert_eq!(e.status.as_u16(), 400, "{e:?}"),
    }
});
