//! What travels to and from the model actor: jobs, lanes, results and errors.
//!
//! Nothing here names candle types, so the TUI can hold these values without touching the model.

use std::path::PathBuf;

use crate::model::anyres::ImageLayout;

/// Work the actor can do.
#[derive(Debug, Clone, PartialEq)]
pub enum Job {
    /// Run one image (and an optional prompt) to the tap and encode its image tokens.
    Analyze {
        /// Image file.
        image: PathBuf,
        /// Optional user prompt.
        prompt: Option<String>,
    },
}

impl Job {
    /// A short human description for the status line.
    pub fn describe(&self) -> String {
        match self {
            Job::Analyze { image, .. } => {
                let name = image.file_name().map(|n| n.to_string_lossy().into_owned());
                format!(
                    "analyzing {}",
                    name.unwrap_or_else(|| image.display().to_string())
                )
            }
        }
    }
}

/// How a job is queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Latest wins: a newer interactive job supersedes an older one still queued.
    Interactive,
    /// First in, first out; never superseded.
    Batch,
}

/// One image's sparse activations at its non-newline image tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// The image that was analysed.
    pub image: PathBuf,
    /// Its anyres geometry.
    pub layout: ImageLayout,
    /// `(token index among image tokens, feature, value)`, values above zero only.
    pub acts: Vec<(u16, u32, f32)>,
}

impl Analysis {
    /// Features that fire anywhere on the image: `(feature, max, tokens fired)`, strongest first.
    pub fn features(&self) -> Vec<(u32, f32, usize)> {
        let mut by: std::collections::BTreeMap<u32, (f32, usize)> = Default::default();
        for &(_, f, v) in &self.acts {
            let e = by.entry(f).or_insert((0.0, 0));
            e.0 = e.0.max(v);
            e.1 += 1;
        }
        let mut out: Vec<_> = by.into_iter().map(|(f, (m, n))| (f, m, n)).collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }

    /// Features firing at one image token, strongest first.
    pub fn at_token(&self, token: u16) -> Vec<(u32, f32)> {
        let mut out: Vec<_> = self
            .acts
            .iter()
            .filter(|a| a.0 == token)
            .map(|a| (a.1, a.2))
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }

    /// One feature's `(token, value)` pairs, as the heatmap renderer takes them.
    pub fn feature_acts(&self, feature: u32) -> Vec<(u32, f32)> {
        self.acts
            .iter()
            .filter(|a| a.1 == feature)
            .map(|a| (u32::from(a.0), a.2))
            .collect()
    }
}

/// Why a job produced no analysis.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// The model or SAE could not be loaded.
    #[error("model load failed: {0}")]
    Load(String),
    /// A newer interactive job replaced this one before it ran.
    #[error("superseded by a newer request")]
    Superseded,
    /// Cancelled (Esc) before or while it ran.
    #[error("cancelled")]
    Cancelled,
    /// The actor has stopped; no more jobs can run.
    #[error("the model actor has stopped")]
    Stopped,
    /// The job itself failed.
    #[error("{0}")]
    Failed(String),
}

/// What the actor is doing, for the status line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActorStatus {
    /// Description of the running job; `None` when idle.
    pub busy: Option<String>,
    /// Current stage of the running job.
    pub stage: String,
    /// Steps done of `total`.
    pub done: u32,
    /// Steps in the running job.
    pub total: u32,
    /// Jobs waiting in the queue (as of the last drain).
    pub queued: usize,
}
