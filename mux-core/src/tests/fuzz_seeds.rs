//! Replays the fuzz targets' seeds (`fuzz/seeds/<target>/`) through the
//! harnesses the fuzzer runs (`crate::fuzzing`), so that every `cargo test`
//! re-checks each past finding and each hand-made case.
//!
//! Test code, compiled only under `#[cfg(test)]` (see `lib.rs`).

use std::path::PathBuf;

use arbitrary::{Arbitrary, Unstructured};

use crate::frame::Frame;
use crate::fuzzing;

/// The seeds of `target`, by file name.
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target);
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| {
            let path = entry.expect("a directory entry").path();
            let bytes = std::fs::read(&path).expect("a readable seed");
            (path.display().to_string(), bytes)
        })
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

#[test]
fn frame_decode_seeds_replay() {
    for (name, bytes) in seeds("frame_decode") {
        let outcome = std::panic::catch_unwind(|| fuzzing::decode_stream(&bytes));
        assert!(matches!(outcome, Ok(Ok(()))), "{name}: {outcome:?}");
    }
}

#[test]
fn feed_message_seeds_replay() {
    for (name, bytes) in seeds("feed_message") {
        let outcome = std::panic::catch_unwind(|| fuzzing::feed_message(&bytes));
        assert!(matches!(outcome, Ok(Ok(()))), "{name}: {outcome:?}");
    }
}

#[test]
fn frame_roundtrip_seeds_replay() {
    for (name, bytes) in seeds("frame_roundtrip") {
        let frame = Frame::arbitrary_take_rest(Unstructured::new(&bytes));
        if let Ok(frame) = frame {
            let outcome = std::panic::catch_unwind(|| fuzzing::encode_frame(frame));
            assert!(matches!(outcome, Ok(Ok(()))), "{name}: {outcome:?}");
        }
    }
}

#[test]
fn connection_seeds_replay() {
    for (name, bytes) in seeds("connection") {
        let ops = Vec::<fuzzing::Op>::arbitrary_take_rest(Unstructured::new(&bytes))
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        let outcome = std::panic::catch_unwind(|| fuzzing::run_pair(ops));
        assert!(matches!(outcome, Ok(Ok(()))), "{name}: {outcome:?}");
    }
}
