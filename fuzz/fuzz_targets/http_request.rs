//! The web edge's request-head path (`spec/patterns.md` §9.2): parsing and
//! routing arbitrary bytes never panics, every refusal carries one of the
//! statuses the spec lists, and a head read in pieces is read the same as
//! whole (every prefix shorter than a whole head is "incomplete").
#![no_main]

use libfuzzer_sys::fuzz_target;
use mux_server::http::check_request;

fuzz_target!(|data: &[u8]| {
    let whole = check_request(data);
    if let Err(err) = &whole {
        assert!(
            [400, 404, 405, 411, 413, 431, 505].contains(&err.status()),
            "{err}: status {}",
            err.status()
        );
    }
    if let Ok(Some(len)) = whole {
        assert!(len <= data.len());
        let cut = data.first().map_or(0, |&b| usize::from(b)) % len.max(1);
        if cut < len {
            assert!(
                matches!(check_request(&data[..cut]), Ok(None)),
                "a prefix of a whole head was not incomplete"
            );
        }
    }
});
