//! The demo page in a real browser (headless Chromium driven over
//! WebDriver): the web edge's event stream, topic and long poll as a
//! browser's `EventSource` and `fetch` see them, across a server restart.

use std::collections::HashSet;
use std::time::Duration;

use mux_server::{demo, Server};
use mux_testkit::webdriver::ChromeDriver;
use mux_testkit::{any_local_address, wait_until};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(30);

/// The `EPOCH-ID` ids of the events the page received, as `(epoch, id)`.
fn event_ids(state: &Value) -> Vec<(String, u64)> {
    state["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter_map(|e| e["id"].as_str())
                .filter_map(|id| id.split_once('-'))
                .map(|(epoch, id)| (epoch.to_owned(), id.parse().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

/// Each epoch's ids are consecutive, in order; no id arrives twice.
fn assert_in_order_without_duplicates(ids: &[(String, u64)]) {
    let unique: HashSet<&(String, u64)> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "duplicates in {ids:?}");
    for pair in ids.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if a.0 == b.0 {
            assert_eq!(b.1, a.1 + 1, "a gap or reordering in {ids:?}");
        }
    }
}

#[test]
#[ignore = "needs chromium and chromium-driver"]
fn the_demo_page_follows_its_streams_across_a_server_restart() {
    let loopback = any_local_address();
    let builder = Server::builder().bind(loopback).threads(2).http(loopback);
    let (server, clock) = demo::start_with(builder).expect("the demo server starts");
    let http = server.http_addr().expect("an HTTP edge");
    let driver = ChromeDriver::start().expect("chromedriver starts");
    let browser = driver.session().expect("a headless Chromium session");
    browser
        .goto(&format!("http://{http}/"))
        .expect("the page opens");
    let state = || {
        browser
            .execute("return window.muxDemo;")
            .expect("the page's state")
    };

    wait_until(
        LIMIT,
        "three events, two publications and two polls",
        || {
            let now = state();
            event_ids(&now).len() >= 3
                && now["topic"].as_u64() >= Some(2)
                && now["polls"].as_u64() >= Some(2)
        },
    );
    let before = state();
    let first_epoch = event_ids(&before)[0].0.clone();
    assert_in_order_without_duplicates(&event_ids(&before));

    // A restart: a new process would have a new in-memory log, so a new epoch.
    drop(clock);
    server
        .shutdown_gracefully(Duration::from_secs(5))
        .expect("the server stops");
    let builder = Server::builder().bind(loopback).threads(2).http(http);
    let (server, clock) = demo::start_with(builder).expect("the demo server starts again");

    wait_until(LIMIT, "three events of the restarted log", || {
        event_ids(&state())
            .iter()
            .filter(|(e, _)| *e != first_epoch)
            .count()
            >= 3
    });
    let after = state();
    let ids = event_ids(&after);
    assert_in_order_without_duplicates(&ids);
    let restarted: Vec<u64> = ids
        .iter()
        .filter(|(e, _)| *e != first_epoch)
        .map(|(_, id)| *id)
        .collect();
    // The browser resumed with Last-Event-ID from the old epoch: the new log
    // is replayed from its first entry, so the ticks appended before it
    // reconnected are not lost.
    assert_eq!(restarted[0], 1, "the restarted log from its start: {ids:?}");
    wait_until(
        LIMIT,
        "the long-polled value to move on after the restart",
        || {
            let now = state();
            now["polls"].as_u64() > after["polls"].as_u64().map(|p| p + 1)
                && now["value"] != before["value"]
        },
    );
    drop(clock);
    server
        .shutdown_gracefully(Duration::from_secs(5))
        .expect("the server stops");
}
