//! The workbench state and the messages that change it. Changes happen only in [`App::update`]
//! (see `update.rs`); rendering reads this state and nothing else.

use std::path::PathBuf;

use crossterm::event::{KeyEvent, MouseEvent};
use image::RgbImage;

use super::data::{FeatureDetail, FeatureRow, Picture};
use super::keymap::{Key, Keymap};
use super::theme::Theme;
use crate::engine::{ActorStatus, Analysis, ModelError};
use crate::explain::overlay::OverlayStyle;

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
}

/// An image to open on the image screen.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    /// A dataset image of the store, by index.
    Dataset(u32),
    /// A file.
    Path(PathBuf),
}

/// The three screens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// All cached features.
    Features,
    /// One feature: examples, histogram, explanation.
    Feature,
    /// One image analysed live.
    Image,
}

impl Screen {
    /// Keymap mode of the screen.
    pub fn mode(self) -> &'static str {
        match self {
            Screen::Features => "features",
            Screen::Feature => "feature",
            Screen::Image => "image",
        }
    }
}

/// Columns of the features table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// Feature id.
    Id,
    /// Density.
    Density,
    /// Max activation.
    Max,
    /// Images fired.
    Images,
    /// Explanation score.
    Score,
    /// Explanation text.
    Explanation,
}

impl Column {
    /// Every column, in table order.
    pub const ALL: [Column; 6] = [
        Column::Id,
        Column::Density,
        Column::Max,
        Column::Images,
        Column::Score,
        Column::Explanation,
    ];

    /// Header text.
    pub fn title(self) -> &'static str {
        match self {
            Column::Id => "id",
            Column::Density => "density",
            Column::Max => "max",
            Column::Images => "images",
            Column::Score => "score",
            Column::Explanation => "explanation",
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
}

impl Prompt {
    /// Label shown before the text.
    pub fn label(self) -> &'static str {
        match self {
            Prompt::Search => "search (id or text): ",
            Prompt::Density => "density range (e.g. 0.001..0.1, empty clears): ",
            Prompt::Jump => "feature #: ",
            Prompt::OpenImage => "image (dataset index or file path): ",
        }
    }
}

/// The features table: all rows plus the sorted, filtered view.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeaturesState {
    /// Every feature of the store.
    pub rows: Vec<FeatureRow>,
    /// Indices into `rows` shown, in order.
    pub view: Vec<usize>,
    /// Selected position in `view`.
    pub sel: usize,
    /// Sort column index into [`Column::ALL`] and direction.
    pub sort: (usize, bool),
    /// Search text (matches id or explanation).
    pub search: String,
    /// Density range kept.
    pub density: Option<(f64, f64)>,
}

/// The feature screen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureState {
    /// Feature shown (or being loaded).
    pub id: Option<u32>,
    /// Its loaded detail.
    pub detail: Option<FeatureDetail>,
    /// Selected example.
    pub sel: usize,
    /// Full-size view of the selected example open.
    pub full: bool,
}

/// Which part of the image screen takes the arrows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageFocus {
    /// The feature list.
    #[default]
    List,
    /// The patch cursor.
    Grid,
}

/// The image screen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageState {
    /// Latest request.
    pub ticket: u64,
    /// Caption (dataset id or file name).
    pub label: String,
    /// The image, once read.
    pub rgb: Option<RgbImage>,
    /// The actor's analysis, once done.
    pub analysis: Option<Analysis>,
    /// Features firing on the image: (feature, max, tokens).
    pub features: Vec<(u32, f32, usize)>,
    /// Selected feature in `features`.
    pub sel: usize,
    /// Patch cursor (row, col) in the base grid.
    pub cursor: (u16, u16),
    /// Focused pane.
    pub focus: ImageFocus,
    /// The selected feature's heatmap on this image.
    pub picture: Option<Picture>,
    /// Waiting for the actor.
    pub pending: bool,
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
    /// Heatmap style (intensity or the original's binary mask).
    pub style: OverlayStyle,
    /// Active keymap.
    pub keymap: Keymap,
    /// Active theme.
    pub theme: Theme,
    /// Help overlay shown.
    pub help: bool,
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
    /// Ticks seen (drives the spinner).
    pub ticks: u64,
    /// Something changed since the last draw.
    pub dirty: bool,
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
            style: OverlayStyle::default(),
            keymap,
            theme,
            help: false,
            prompt: None,
            pending_keys: Vec::new(),
            actor: ActorStatus::default(),
            message: None,
            title,
            size: (80, 24),
            ticks: 0,
            dirty: true,
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

    /// Rebuild the sorted, filtered view, keeping the selected feature where possible.
    pub fn refresh_view(&mut self) {
        let keep = self.selected_row().map(|r| r.id);
        let fs = &mut self.features;
        let q = fs.search.trim().to_lowercase();
        let mut view: Vec<usize> = (0..fs.rows.len())
            .filter(|&i| {
                let r = &fs.rows[i];
                let text_ok = q.is_empty()
                    || r.id.to_string().contains(&q)
                    || r.explanation
                        .as_ref()
                        .is_some_and(|e| e.to_lowercase().contains(&q));
                let dens_ok = fs
                    .density
                    .is_none_or(|(lo, hi)| r.density >= lo && r.density <= hi);
                text_ok && dens_ok
            })
            .collect();
        let (col, desc) = fs.sort;
        let rows = &fs.rows;
        view.sort_by(|&a, &b| {
            let (x, y) = (&rows[a], &rows[b]);
            let o = match Column::ALL[col] {
                Column::Id => x.id.cmp(&y.id),
                Column::Density => x.density.total_cmp(&y.density),
                Column::Max => x.max.total_cmp(&y.max),
                Column::Images => x.images.cmp(&y.images),
                Column::Score => x
                    .score
                    .unwrap_or(f32::NEG_INFINITY)
                    .total_cmp(&y.score.unwrap_or(f32::NEG_INFINITY)),
                Column::Explanation => x.explanation.cmp(&y.explanation),
            };
            let o = if desc { o.reverse() } else { o };
            o.then(x.id.cmp(&y.id))
        });
        fs.sel = keep
            .and_then(|id| view.iter().position(|&i| rows[i].id == id))
            .unwrap_or(0);
        fs.view = view;
    }
}
