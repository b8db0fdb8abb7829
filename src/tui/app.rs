//! The workbench state and the messages that change it. Changes happen only in [`App::update`]
//! (see `update/`); rendering reads this state and records where it drew what ([`Hit`]), so
//! mouse clicks land on what the user sees.

use std::cell::RefCell;
use std::path::PathBuf;

use crossterm::event::{KeyEvent, MouseEvent};
use image::RgbImage;

use ratatui::layout::Rect;

use super::data::{ExampleSet, FeatureDetail, FeatureRow, Picture};
use super::keymap::{Key, Keymap};
use super::screens::attrib::{AttribDone, AttribInput, AttribJob, AttribState};
use super::screens::steer::{SteerEffect, SteerInput, SteerMsg, SteerState};
use super::theme::Theme;
use crate::dashboard::FeaturePage;
use crate::engine::{ActorStatus, Analysis, ModelError};
use crate::heatmap::overlay::OverlayStyle;
use crate::store::{Explanation, FeatureList};

pub use super::screens::feature::{ExplainState, FeatureState, PageState};
pub use super::screens::features::{Column, FeaturesState};
pub use super::screens::image::{ImageFocus, ImageState, TokenHere};

/// Everything that reaches the UI task.
#[derive(Debug)]
pub enum Event {
    /// A key press.
    Key(KeyEvent),
    /// A mouse event.
    Mouse(MouseEvent),
    /// The terminal was resized to (columns, rows).
    Resize(u16, u16),
    /// Periodic tick (spinner, actor status).
    Tick(ActorStatus),
    /// A feature's detail finished loading.
    FeatureLoaded {
        /// The feature.
        id: u32,
        /// Its detail, or why it could not be loaded.
        result: Result<FeatureDetail, String>,
    },
    /// The image of an image request was read.
    ImageLoaded {
        /// The request.
        ticket: u64,
        /// The image, or why it could not be read.
        result: Result<RgbImage, String>,
    },
    /// The model actor answered an image request.
    Analyzed {
        /// The request.
        ticket: u64,
        /// Its analysis.
        result: Result<Analysis, ModelError>,
    },
    /// The full-resolution picture of a feature's example was read.
    FullLoaded {
        /// The feature.
        id: u32,
        /// The list the example is in.
        set: ExampleSet,
        /// Position of the example in that list.
        index: usize,
        /// The picture, or why it could not be read.
        result: Result<Picture, String>,
    },
    /// The explainer answered (the explanation is already in the store).
    Explained {
        /// The feature.
        id: u32,
        /// The explanation, or why there is none.
        result: Result<Explanation, String>,
    },
    /// A human label was written to the store (or could not be).
    LabelSaved {
        /// The feature.
        id: u32,
        /// Why it could not be written, if it could not.
        result: Result<(), String>,
    },
    /// A result for the steering screen (generation events, preset files).
    Steer(SteerMsg),
    /// The model actor answered an attribution request.
    Attributed(AttribDone),
    /// A feature was put on a list (or could not be).
    ListSaved {
        /// The feature.
        id: u32,
        /// The list as it now is, or why it was not written.
        result: Result<FeatureList, String>,
    },
    /// The store took commits from the job writing it: every feature row read again, and the
    /// title with the new image count.
    StoreGrew {
        /// The rows as the store now answers them.
        rows: Vec<FeatureRow>,
        /// The title bar's store description.
        title: String,
    },
    /// A feature page was read or computed (`None`: not kept, and not asked to compute).
    PageLoaded {
        /// The feature.
        id: u32,
        /// The page, or why there is none.
        result: Result<Option<FeaturePage>, String>,
    },
}

/// Work `update` asks the runner to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Leave the workbench.
    Quit,
    /// Load a feature's detail from the store.
    LoadFeature(u32),
    /// Read an image and send it through the model actor.
    Analyze {
        /// Request number; answers for older tickets are dropped.
        ticket: u64,
        /// Where the image comes from.
        source: ImageSource,
    },
    /// Cancel the model actor's work.
    CancelModel,
    /// Read one example of a feature at full resolution.
    LoadFull {
        /// The feature.
        id: u32,
        /// The list the example is in.
        set: ExampleSet,
        /// Position of the example in that list.
        index: usize,
    },
    /// Load these features' details into the runner's cache (the neighbours of the one shown).
    Prefetch(Vec<u32>),
    /// Read a feature's page from the store; with `compute`, compute it on the model when the
    /// store has none (and keep it there).
    LoadPage {
        /// The feature.
        id: u32,
        /// Compute it when it is not kept.
        compute: bool,
    },
    /// Ask the explainer about a feature, in the background.
    Explain(u32),
    /// Add a feature to a named list of the store (or change its note).
    AddToList {
        /// The list.
        name: String,
        /// The feature.
        id: u32,
        /// Why it is on the list.
        note: Option<String>,
    },
    /// Store (or, with `None`, remove) a feature's human label.
    SaveLabel {
        /// The feature.
        id: u32,
        /// The label.
        text: Option<String>,
    },
    /// Steering work: a generation request or a preset file.
    Steer(SteerEffect),
    /// Run an attribution on the model actor.
    Attrib(AttribJob),
}

/// An image to open on the image screen.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    /// A dataset image of the store, by index.
    Dataset(u32),
    /// A file.
    Path(PathBuf),
}

/// The five screens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// All cached features.
    Features,
    /// One feature: examples, histogram, explanation.
    Feature,
    /// One image analysed live.
    Image,
    /// Default and steered generations side by side.
    Steer,
    /// The latents behind an answer, with their patch maps.
    Attrib,
}

impl Screen {
    /// Keymap mode of the screen.
    pub fn mode(self) -> &'static str {
        match self {
            Screen::Features => "features",
            Screen::Feature => "feature",
            Screen::Image => "image",
            Screen::Steer => "steer",
            Screen::Attrib => "attrib",
        }
    }
}

/// What a one-line prompt is asking for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    /// Search text.
    Search,
    /// Density range `min..max`.
    Density,
    /// Feature number.
    Jump,
    /// Dataset image index or file path.
    OpenImage,
    /// A human label for a feature.
    Label(u32),
    /// `NAME[: note]` of the list a feature is added to.
    ListAdd(u32),
    /// A line typed on the steering screen.
    Steer(SteerInput),
    /// A line typed on the attribution screen.
    Attrib(AttribInput),
}

impl Prompt {
    /// Whether the typed text is taken as is, spaces included (tokens like `" red"`).
    pub fn keeps_spaces(self) -> bool {
        matches!(
            self,
            Prompt::Attrib(AttribInput::Answer | AttribInput::Baseline)
        )
    }

    /// Label shown before the text.
    pub fn label(self) -> &'static str {
        match self {
            Prompt::Search => "search (id, text, list:NAME, near:ID, writes:TEXT): ",
            Prompt::Density => "density range (e.g. 0.001..0.1, empty clears): ",
            Prompt::Jump => "feature #: ",
            Prompt::OpenImage => "image (dataset index or file path): ",
            Prompt::Label(_) => "label (Enter saves, empty removes, C-u clears): ",
            Prompt::ListAdd(_) => "add to list (NAME: note): ",
            Prompt::Steer(input) => input.label(),
            Prompt::Attrib(input) => input.label(),
        }
    }
}

/// What a drawn region of the screen stands for, for mouse clicks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    /// A screen's tab in the title bar.
    Tab(Screen),
    /// A column header of the features table (index into [`Column::ALL`]).
    Header(usize),
    /// A row of the features table (position in the view).
    FeatureRow(usize),
    /// An example of the feature screen's grid (position in the list).
    Example(usize),
    /// The full-size example view.
    Full,
    /// The image screen's picture, exactly the rect it was drawn in.
    Picture,
    /// A row of the image screen's feature list.
    ImageFeature(usize),
    /// The help overlay.
    Help,
    /// One of the steering screen's generation panes.
    SteerText,
}

/// The whole workbench state.
#[derive(Debug)]
pub struct App {
    /// Screen shown.
    pub screen: Screen,
    /// Features table.
    pub features: FeaturesState,
    /// Feature screen.
    pub feature: FeatureState,
    /// Image screen.
    pub image: ImageState,
    /// Steering screen.
    pub steer: SteerState,
    /// Attribution screen.
    pub attrib: AttribState,
    /// Heatmap style (intensity or the original's binary mask).
    pub style: OverlayStyle,
    /// Active keymap.
    pub keymap: Keymap,
    /// Active theme.
    pub theme: Theme,
    /// Help overlay shown.
    pub help: bool,
    /// Lines the help overlay is scrolled by (when it does not fit).
    pub help_scroll: usize,
    /// Open prompt and its text.
    pub prompt: Option<(Prompt, String)>,
    /// Keys of a chord typed so far.
    pub pending_keys: Vec<Key>,
    /// Last model actor status.
    pub actor: ActorStatus,
    /// Last message for the status line, and whether it is an error.
    pub message: Option<(String, bool)>,
    /// Store description for the title bar (never an absolute path).
    pub title: String,
    /// Terminal size (columns, rows).
    pub size: (u16, u16),
    /// Latents of the store's SAE, when known (a feature number past them is out of range).
    pub latents: Option<usize>,
    /// Ticks seen (drives the spinner).
    pub ticks: u64,
    /// Something changed since the last draw.
    pub dirty: bool,
    /// Explanation requests.
    pub explain: ExplainState,
    /// The store's feature lists.
    pub lists: Vec<FeatureList>,
    /// The feature pages computed so far (kept in the store), for `near:` and `writes:` searches.
    pub pages: std::collections::BTreeMap<u32, FeaturePage>,
    /// The list `B` adds to.
    pub list: String,
    /// Regions of the last frame, topmost last (written while drawing).
    pub hits: RefCell<Vec<(Rect, Hit)>>,
}

impl App {
    /// A workbench over `rows` with the given keymap and theme.
    pub fn new(rows: Vec<FeatureRow>, keymap: Keymap, theme: Theme, title: String) -> App {
        let mut app = App {
            screen: Screen::Features,
            features: FeaturesState {
                rows,
                sort: (0, false),
                ..Default::default()
            },
            feature: FeatureState::default(),
            image: ImageState::default(),
            steer: SteerState::default(),
            attrib: AttribState::default(),
            style: OverlayStyle::default(),
            keymap,
            theme,
            help: false,
            help_scroll: 0,
            prompt: None,
            pending_keys: Vec::new(),
            actor: ActorStatus::default(),
            message: None,
            title,
            size: (80, 24),
            latents: None,
            ticks: 0,
            dirty: true,
            explain: ExplainState::default(),
            lists: Vec::new(),
            pages: Default::default(),
            list: super::update::DEFAULT_LIST.to_string(),
            hits: RefCell::new(Vec::new()),
        };
        app.refresh_view();
        app
    }

    /// Whether the heatmaps use the original system's mask style.
    pub fn mask_style(&self) -> bool {
        matches!(self.style, OverlayStyle::DarkenMask)
    }

    /// The selected feature row of the table, if any.
    pub fn selected_row(&self) -> Option<&FeatureRow> {
        self.features
            .view
            .get(self.features.sel)
            .and_then(|&i| self.features.rows.get(i))
    }

    /// The stored row of feature `id`.
    pub fn row(&self, id: u32) -> Option<&FeatureRow> {
        self.features.rows.iter().find(|r| r.id == id)
    }

    /// Why feature `id` cannot be named here, when it is past the SAE's latents.
    pub fn out_of_range(&self, id: u32) -> Option<String> {
        match self.latents {
            Some(n) if id as usize >= n => Some(format!(
                "feature {id} is out of range: the SAE has {n} latents (0..={})",
                n - 1
            )),
            _ => None,
        }
    }

    /// Record that `hit` was drawn at `area` (called by the panes while rendering).
    pub fn hit(&self, area: Rect, hit: Hit) {
        if area.width > 0 && area.height > 0 {
            self.hits.borrow_mut().push((area, hit));
        }
    }

    /// The topmost region drawn at cell (x, y) in the last frame.
    pub fn hit_at(&self, x: u16, y: u16) -> Option<(Rect, Hit)> {
        let pos = ratatui::layout::Position::new(x, y);
        self.hits
            .borrow()
            .iter()
            .rev()
            .find(|(r, _)| r.contains(pos))
            .copied()
    }
}
