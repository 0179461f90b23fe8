//! The test vectors of `spec/vectors/frames.json` (spec §14), replayed as
//! cases: every `invalid` frame must be a connection error with its code,
//! every `invalid` preface must fail the connection.

use serde_json::Value;

use crate::wire;

/// The vectors shipped with the spec, built into the runner.
pub const BUILT_IN: &str = include_str!("../../spec/vectors/frames.json");

/// A frame a receiver must reject.
#[derive(Debug, Clone)]
pub struct InvalidFrame {
    pub name: String,
    pub section: String,
    pub bytes: Vec<u8>,
    pub code: u32,
}

/// A preface a receiver must refuse.
#[derive(Debug, Clone)]
pub struct InvalidPreface {
    pub name: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
pub struct Vectors {
    pub frames: Vec<InvalidFrame>,
    pub prefaces: Vec<InvalidPreface>,
}

impl Vectors {
    /// Reads the vectors file's text; `Err` says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let root: Value = serde_json::from_str(text).map_err(|err| format!("not JSON: {err}"))?;
        let field = |value: &Value, key: &str| -> Result<String, String> {
            value
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("a vector without \"{key}\": {value}"))
        };
        let bytes = |value: &Value| -> Result<Vec<u8>, String> {
            wire::from_hex(&field(value, "hex")?).ok_or_else(|| format!("bad hex in {value}"))
        };
        let mut vectors = Self::default();
        for value in root["invalid"].as_array().ok_or("no \"invalid\" list")? {
            let error = field(value, "error")?;
            vectors.frames.push(InvalidFrame {
                name: field(value, "name")?,
                section: field(value, "section")?,
                bytes: bytes(value)?,
                code: wire::code::by_name(&error).ok_or_else(|| format!("unknown code {error}"))?,
            });
        }
        for value in root["preface"]["invalid"]
            .as_array()
            .ok_or("no \"preface.invalid\" list")?
        {
            vectors.prefaces.push(InvalidPreface {
                name: field(value, "name")?,
                bytes: bytes(value)?,
            });
        }
        Ok(vectors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_vectors_load() {
        let vectors = Vectors::parse(BUILT_IN).expect("the spec's vectors");
        assert!(vectors.frames.len() >= 30);
        assert!(vectors.prefaces.len() >= 3);
        assert!(vectors
            .frames
            .iter()
            .any(|v| v.name == "window-update-zero" && v.code == wire::code::PROTOCOL_ERROR));
    }
}
