//! The journal of paid answers: every answer the explainer's endpoint returns is appended raw,
//! with its request's fingerprint, to `explain-journal.jsonl` in the store folder and flushed to
//! the disk before it is parsed or stored.
//!
//! So an answer that was paid for is never lost (a kill after it arrived, a malformed body, a
//! body cut off mid-way) and never asked for again unless the user says so: a rerun reads the
//! journal first. Requests are journalled as sent too, so a run killed with requests in flight
//! can say how many may have been billed twice.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::util::hash::Fingerprint;

/// File name of the journal inside the store folder.
pub const JOURNAL_FILE: &str = "explain-journal.jsonl";

/// The fingerprint of a request body and its tag (the feature): what identifies "the same
/// question" across runs.
pub fn request_fingerprint(body: &Value, tag: Option<&str>) -> String {
    Fingerprint::new()
        .field(tag.unwrap_or(""))
        .field(&body.to_string())
        .hex()
}

/// One answer as the endpoint returned it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalAnswer {
    /// HTTP status (a success: only those are billed).
    pub status: u16,
    /// Whether the whole body arrived (false: cut off, or over the size cap).
    pub complete: bool,
    /// The body as received (up to the size cap).
    pub body: String,
}

/// One line of the journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Line {
    /// The request was sent.
    Sent {
        request: String,
        tag: Option<String>,
    },
    /// An answer arrived.
    Answer {
        request: String,
        tag: Option<String>,
        #[serde(flatten)]
        answer: JournalAnswer,
    },
    /// The answer was stored (a later `--redo` asks again rather than replaying it).
    Stored { request: String },
}

/// The journal of one store, shared by every request of a run.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Latest answer per request not yet stored.
    pending: HashMap<String, JournalAnswer>,
    /// Requests an earlier run sent and never got an answer to (in flight at a kill).
    unanswered: HashSet<String>,
}

impl Journal {
    /// Open (or start) the journal in `store_dir`; a last line cut by a kill is ignored.
    pub fn open(store_dir: &Path) -> Result<Self> {
        let path = store_dir.join(JOURNAL_FILE);
        let mut state = State::default();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                for line in text.lines() {
                    match serde_json::from_str::<Line>(line) {
                        Ok(Line::Sent { request, .. }) => {
                            state.unanswered.insert(request);
                        }
                        Ok(Line::Answer {
                            request, answer, ..
                        }) => {
                            state.unanswered.remove(&request);
                            state.pending.insert(request, answer);
                        }
                        Ok(Line::Stored { request }) => {
                            state.pending.remove(&request);
                        }
                        Err(_) => {}
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("{}: cannot read", path.display()));
            }
        }
        Ok(Self {
            path,
            state: Mutex::new(state),
        })
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The answer an earlier request of this fingerprint received and nobody stored.
    pub fn pending(&self, request: &str) -> Option<JournalAnswer> {
        self.lock().pending.get(request).cloned()
    }

    /// Requests an earlier run sent without an answer arriving (killed in flight): each may
    /// have been billed, and asking again pays once more.
    pub fn unanswered(&self) -> usize {
        self.lock().unanswered.len()
    }

    /// Record that `request` is about to be sent.
    pub fn sent(&self, request: &str, tag: Option<&str>) -> Result<()> {
        self.append(&Line::Sent {
            request: request.into(),
            tag: tag.map(String::from),
        })
    }

    /// Record an answer to `request`, on the disk before this returns.
    pub fn answer(&self, request: &str, tag: Option<&str>, answer: &JournalAnswer) -> Result<()> {
        self.append(&Line::Answer {
            request: request.into(),
            tag: tag.map(String::from),
            answer: answer.clone(),
        })?;
        let mut state = self.lock();
        state.unanswered.remove(request);
        state.pending.insert(request.into(), answer.clone());
        Ok(())
    }

    /// Record that the answer to `request` is in the store.
    pub fn stored(&self, request: &str) -> Result<()> {
        self.append(&Line::Stored {
            request: request.into(),
        })?;
        self.lock().pending.remove(request);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a cache of the file; one left by a panicking holder is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn append(&self, line: &Line) -> Result<()> {
        let mut text = serde_json::to_string(line)?;
        text.push('\n');
        // Held across the write so lines from concurrent requests never interleave.
        let _guard = self.lock();
        let mut file = File::options()
            .create(true)
            .append(true)
            .open(&self.path)
            .with_context(|| format!("{}: cannot open the answer journal", self.path.display()))?;
        file.write_all(text.as_bytes())
            .and_then(|_| file.sync_data())
            .with_context(|| {
                format!(
                    "{}: cannot write the answer journal (is the disk full?)",
                    self.path.display()
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_survive_reopening_until_stored_and_unanswered_requests_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let a = JournalAnswer {
            status: 200,
            complete: false,
            body: "{\"choi".into(),
        };
        j.sent("r1", Some("3")).unwrap();
        j.answer("r1", Some("3"), &a).unwrap();
        j.sent("r2", Some("4")).unwrap();
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.pending("r1"), Some(a));
        assert_eq!(j.unanswered(), 1);
        j.stored("r1").unwrap();
        // A line cut by a kill is ignored.
        let mut f = File::options().append(true).open(j.path()).unwrap();
        f.write_all(b"{\"event\":\"answer\",\"requ").unwrap();
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.pending("r1"), None);
    }
}
