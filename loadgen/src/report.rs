//! What a workload hands back: one human line, one JSON object, and whether
//! the run met its own correctness conditions (not a timing target: those are
//! judged by scripts/bench, never by the tool).

use serde::Serialize;

#[derive(Debug)]
pub struct Outcome {
    pub human: String,
    pub json: serde_json::Value,
    pub ok: bool,
}

impl Outcome {
    /// `json` gets `"workload"` and `"ok"` fields added.
    pub fn new(workload: &str, human: String, json: impl Serialize, ok: bool) -> Outcome {
        let mut json = serde_json::to_value(json).unwrap_or(serde_json::Value::Null);
        if let serde_json::Value::Object(map) = &mut json {
            map.insert("workload".into(), workload.into());
            map.insert("ok".into(), ok.into());
        }
        Outcome { human, json, ok }
    }
}
