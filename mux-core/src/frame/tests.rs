//! Frame codec tests: the spec's byte-exact vectors (loaded from
//! `spec/vectors/frames.json`, never copied here), incremental decoding, and
//! round-trip properties.
