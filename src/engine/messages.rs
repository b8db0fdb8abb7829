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

/// An attribution request for the attribution screen: which latents drive `answer` over
/// `baseline` at the end of `prompt` (with `image`).
#[derive(Debug, Clone, PartialEq)]
pub struct AttribRequest {
    /// Request number chosen by the caller; the answer of an older one is dropped.
    pub ticket: u64,
    /// Image shown with the prompt.
    pub image: Option<PathBuf>,
    /// User text, wrapped in the chat template unless it holds its own `<image>`.
    pub prompt: String,
    /// Token whose logit counts for the answer.
    pub answer: String,
    /// Token whose logit counts against it.
    pub baseline: String,
}

impl AttribRequest {
    /// The request as the attribution library takes it, and whether to apply the chat template.
    pub fn item(&self) -> (crate::attribute::AttributionItem, bool) {
        let chat = !self.prompt.contains("<image>");
        let item = crate::attribute::AttributionItem {
            prompt: self.prompt.clone(),
            answer: self.answer.clone(),
            baseline: self.baseline.clone(),
            image: self.image.clone(),
        };
        (item, chat)
    }
}

/// One steering row as the model thread takes it: the strength already resolved to a raw value.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SteerSpec {
    /// Latent index.
    pub feature: u32,
    /// How the residual changes.
    pub mode: crate::sae::intervene::Mode,
    /// Raw value: the latent value for replace and clamp, α for add.
    pub value: f32,
    /// Decoder vector for `add`.
    pub direction: crate::sae::intervene::Direction,
    /// Positions edited.
    pub scope: crate::sae::intervene::Scope,
}

/// A default-versus-steered generation for the steering panel.
#[derive(Debug, Clone, PartialEq)]
pub struct SteerRequest {
    /// Request number chosen by the caller; every event of this request carries it.
    pub ticket: u64,
    /// The user prompt.
    pub prompt: String,
    /// Optional image shown with the prompt.
    pub image: Option<PathBuf>,
    /// Rows applied together; rows sharing mode, direction and scope form one intervention.
    pub edits: Vec<SteerSpec>,
    /// Most tokens generated per side.
    pub max_new_tokens: usize,
    /// Token choice (the same for both sides).
    pub sampling: crate::generate::Sampling,
}

impl SteerRequest {
    /// A key for everything the default side depends on (prompt, image, limit, sampling).
    pub fn prompt_key(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.prompt.hash(&mut h);
        self.image.hash(&mut h);
        self.max_new_tokens.hash(&mut h);
        format!("{:?}", self.sampling).hash(&mut h);
        h.finish()
    }

    /// A short human description for the status line.
    pub fn describe(&self) -> String {
        match self.edits.len() {
            0 => "generating".into(),
            1 => "steering 1 feature".into(),
            n => format!("steering {n} features"),
        }
    }
}

/// Which of the two generations an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The unsteered model.
    Default,
    /// The model with the request's edits.
    Steered,
}

/// What a steering request streams back, in order; [`SteerEvent::Ended`] always comes last.
#[derive(Debug, Clone, PartialEq)]
pub enum SteerEvent {
    /// A side starts; its earlier text is void.
    Started {
        /// The request.
        ticket: u64,
        /// Which side.
        side: Side,
        /// Replayed from the previous run of the same prompt rather than generated again.
        cached: bool,
    },
    /// One generated token of a side.
    Token {
        /// The request.
        ticket: u64,
        /// Which side.
        side: Side,
        /// Token id (what the difference highlighting compares).
        id: u32,
        /// Newly completed text; empty while a character is split across tokens.
        text: String,
    },
    /// A side ended.
    Finished {
        /// The request.
        ticket: u64,
        /// Which side.
        side: Side,
        /// Why it ended.
        stop: crate::generate::StopReason,
        /// Text held back for an incomplete character.
        tail: String,
        /// Decode steps per second (0 when replayed).
        tokens_per_second: f64,
        /// Steering that did nothing, or less than asked.
        warnings: Vec<String>,
    },
    /// The request is over: `Ok` when both sides ran, else why not.
    Ended {
        /// The request.
        ticket: u64,
        /// Success, or superseded, cancelled, failed.
        result: Result<(), ModelError>,
    },
}

impl SteerEvent {
    /// The request the event belongs to.
    pub fn ticket(&self) -> u64 {
        match self {
            SteerEvent::Started { ticket, .. }
            | SteerEvent::Token { ticket, .. }
            | SteerEvent::Finished { ticket, .. }
            | SteerEvent::Ended { ticket, .. } => *ticket,
        }
    }
}
