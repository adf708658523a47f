//! The JSON report (`--report FILE.json`): the [`Report`] serialised as is (schema 1,
//! `replay/REPORT.md`). Nothing is computed here.

use super::Report;

impl Report {
    /// The JSON report.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}
