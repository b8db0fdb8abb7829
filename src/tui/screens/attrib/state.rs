//! The attribution screen's state: the typed inputs, the last result and the ranked view of it.

use image::RgbImage;

use crate::attribute::{AttributionResult, LatentAttribution, Part, sort_by};

/// A line typed on the attribution screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttribInput {
    /// The image: a file path or a dataset index (empty: none).
    Image,
    /// The prompt.
    Prompt,
    /// The answer token.
    Answer,
    /// The baseline token.
    Baseline,
}

impl AttribInput {
    /// Label shown before the text.
    pub fn label(self) -> &'static str {
        match self {
            AttribInput::Image => "attribution image (file or dataset index; empty: none): ",
            AttribInput::Prompt => "attribution prompt: ",
            AttribInput::Answer => "answer token (e.g. \" red\" or Ġred): ",
            AttribInput::Baseline => "baseline token (e.g. \" blue\"): ",
        }
    }
}

/// How the latent list is ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttribSort {
    /// By |total attribution|.
    #[default]
    AbsTotal,
    /// By |attribution at image tokens|.
    AbsImage,
}

impl AttribSort {
    /// The other ranking.
    pub fn next(self) -> Self {
        match self {
            AttribSort::AbsTotal => AttribSort::AbsImage,
            AttribSort::AbsImage => AttribSort::AbsTotal,
        }
    }

    /// Short name for the list's title.
    pub fn label(self) -> &'static str {
        match self {
            AttribSort::AbsTotal => "|total|",
            AttribSort::AbsImage => "|image|",
        }
    }

    fn part(self) -> Part {
        match self {
            AttribSort::AbsTotal => Part::Total,
            AttribSort::AbsImage => Part::Image,
        }
    }
}

/// Which values of a signed patch map are drawn with the heatmap ramp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MapSign {
    /// |attribution|: where the latent matters either way.
    #[default]
    Magnitude,
    /// The positive part: patches where the latent pushes towards the answer.
    Positive,
    /// The negative part (negated): patches where it pushes towards the baseline.
    Negative,
}

impl MapSign {
    /// The next choice.
    pub fn next(self) -> Self {
        match self {
            MapSign::Magnitude => MapSign::Positive,
            MapSign::Positive => MapSign::Negative,
            MapSign::Negative => MapSign::Magnitude,
        }
    }

    /// What the map shows, for the picture's title.
    pub fn label(self) -> &'static str {
        match self {
            MapSign::Magnitude => "|attribution|",
            MapSign::Positive => "towards the answer (+)",
            MapSign::Negative => "towards the baseline (−)",
        }
    }

    /// The drawn value of an attribution `v` (never below zero).
    pub fn apply(self, v: f32) -> f32 {
        match self {
            MapSign::Magnitude => v.abs(),
            MapSign::Positive => v.max(0.0),
            MapSign::Negative => (-v).max(0.0),
        }
    }
}

/// The attribution screen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttribState {
    /// Latest request.
    pub ticket: u64,
    /// Image as typed (path or dataset index); `None` runs the prompt alone.
    pub image: Option<String>,
    /// Prompt.
    pub prompt: String,
    /// Answer token.
    pub answer: String,
    /// Baseline token.
    pub baseline: String,
    /// The last attribution.
    pub result: Option<AttributionResult>,
    /// Its image, read for drawing.
    pub rgb: Option<RgbImage>,
    /// The result's latents in the chosen order.
    pub ranked: Vec<LatentAttribution>,
    /// Selected position in `ranked`.
    pub sel: usize,
    /// Ranking.
    pub sort: AttribSort,
    /// Part of the signed map drawn.
    pub sign: MapSign,
    /// Waiting for the model actor.
    pub pending: bool,
    /// Why the last request failed.
    pub error: Option<String>,
}

impl AttribState {
    /// Rank the result's latents by `sort`, keeping the selected latent selected.
    pub fn rerank(&mut self) {
        let keep = self.selected().map(|l| l.latent);
        self.ranked = self
            .result
            .as_ref()
            .map_or_else(Vec::new, |r| r.latents.clone());
        sort_by(&mut self.ranked, self.sort.part(), true);
        self.sel = keep
            .and_then(|id| self.ranked.iter().position(|l| l.latent == id))
            .unwrap_or(0);
    }

    /// The selected latent.
    pub fn selected(&self) -> Option<&LatentAttribution> {
        self.ranked.get(self.sel)
    }

    /// The selected latent's map as the heatmap renderer takes it: `(image token, value ≥ 0)`.
    pub fn map_acts(&self) -> Vec<(u32, f32)> {
        self.selected().map_or_else(Vec::new, |l| {
            l.image_map
                .iter()
                .map(|&(t, v)| (t, self.sign.apply(v)))
                .filter(|&(_, v)| v > 0.0)
                .collect()
        })
    }

    /// What is still missing before a request can be sent, in words.
    pub fn missing(&self) -> Option<&'static str> {
        if self.prompt.trim().is_empty() {
            Some("type a prompt first (i)")
        } else if self.answer.is_empty() {
            Some("type an answer token first (a)")
        } else if self.baseline.is_empty() {
            Some("type a baseline token first (b)")
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latent(latent: u32, total: f64, image: f64) -> LatentAttribution {
        LatentAttribution {
            latent,
            total,
            image,
            text: total - image,
            activation_sum: 1.0,
            positions: 2,
            image_map: vec![(0, image as f32), (1, -0.5)],
            text_map: vec![],
        }
    }

    fn tok(text: &str, id: u32) -> crate::attribute::TokenChoice {
        crate::attribute::TokenChoice {
            text: text.into(),
            id,
            token: text.into(),
        }
    }

    #[test]
    fn ranks_by_magnitude_keep_the_selection_and_signs_split_the_map() {
        let mut s = AttribState {
            result: Some(AttributionResult {
                answer: tok("a", 1),
                baseline: tok("b", 2),
                plain_metric: None,
                patched_metric: 1.0,
                positions: 3,
                image_positions: 2,
                active_pairs: 3,
                sae_rel_error: 0.0,
                layout: None,
                latents: vec![
                    latent(1, 2.0, 0.1),
                    latent(2, -3.0, 0.2),
                    latent(3, 0.5, -4.0),
                ],
                timing: Default::default(),
            }),
            ..Default::default()
        };
        s.rerank();
        let ids = |s: &AttribState| s.ranked.iter().map(|l| l.latent).collect::<Vec<_>>();
        assert_eq!(ids(&s), [2, 1, 3]);
        s.sel = 1;
        s.sort = s.sort.next();
        s.rerank();
        assert_eq!(ids(&s), [3, 2, 1]);
        assert_eq!(s.selected().map(|l| l.latent), Some(1));
        s.sel = 0;
        assert_eq!(s.map_acts(), [(0, 4.0), (1, 0.5)]);
        s.sign = MapSign::Positive;
        assert!(s.map_acts().is_empty());
        s.sign = MapSign::Negative;
        assert_eq!(s.map_acts(), [(0, 4.0), (1, 0.5)]);
        s.sel = 2;
        assert_eq!(s.map_acts(), [(1, 0.5)]);
    }
}
