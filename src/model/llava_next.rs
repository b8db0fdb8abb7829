//! LLaVA-NeXT assembly: vision tower → projector → anyres packing → Llama with a tap.

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;

use super::anyres::ImageLayout;
use super::config::LlavaNextConfig;
use super::kv_cache::KvCache;
use super::llama::Llama;
use super::tap::{ForwardOptions, ForwardOutput};
use super::vision::{Projector, VisionTower};

/// What sits at one position of a multimodal sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqToken {
    /// A text token.
    Text {
        /// Its token id.
        id: u32,
    },
    /// An image token.
    Image {
        /// Which image of the prompt (0-based).
        image: usize,
        /// Index into that image's `ImageLayout::tokens()`.
        token: usize,
    },
}

/// The full sequence a prompt expands to: one entry per position.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SequenceMap {
    /// One entry per sequence position.
    pub tokens: Vec<SeqToken>,
}

impl SequenceMap {
    /// Number of positions.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether the sequence is empty.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Positions holding tokens of image `image`, in order.
    pub fn image_positions(&self, image: usize) -> Vec<usize> {
        self.tokens
            .iter()
            .enumerate()
            .filter(|(_, t)| matches!(t, SeqToken::Image { image: i, .. } if *i == image))
            .map(|(p, _)| p)
            .collect()
    }

    /// Token ids of the sequence, with `image_id` standing for every image position.
    pub fn ids(&self, image_id: u32) -> Vec<u32> {
        self.tokens
            .iter()
            .map(|t| match t {
                SeqToken::Text { id } => *id,
                SeqToken::Image { .. } => image_id,
            })
            .collect()
    }
}

/// One image ready to be spliced into a prompt.
pub struct ImageInput<'a> {
    /// Normalised views `[views, 3, S, S]`.
    pub pixel_values: &'a Tensor,
    /// Its anyres layout.
    pub layout: &'a ImageLayout,
}

/// A loaded LLaVA-NeXT model.
pub struct LlavaNext {
    vision: VisionTower,
    projector: Projector,
    image_newline: Tensor,
    llm: Llama,
    cfg: LlavaNextConfig,
}

impl LlavaNext {
    /// Build from weights named in the older Hugging Face layout (`language_model.model.*`, …).
    pub fn load(cfg: &LlavaNextConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            vision: VisionTower::load(cfg, vb.pp("vision_tower").pp("vision_model"))?,
            projector: Projector::load(cfg, vb.pp("multi_modal_projector"))?,
            image_newline: vb.get(cfg.text_config.hidden_size, "image_newline")?,
            llm: Llama::load(
                &cfg.text_config,
                cfg.tie_word_embeddings || cfg.text_config.tie_word_embeddings,
                vb.pp("language_model"),
            )?,
            cfg: cfg.clone(),
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &LlavaNextConfig {
        &self.cfg
    }

    /// The language model.
    pub fn llm(&self) -> &Llama {
        &self.llm
    }

    /// Device the weights live on.
    pub fn device(&self) -> &Device {
        self.image_newline.device()
    }

    /// Compute dtype of the weights.
    pub fn dtype(&self) -> DType {
        self.image_newline.dtype()
    }

    /// Number of decoder layers.
    pub fn num_layers(&self) -> usize {
        self.cfg.text_config.num_hidden_layers
    }

    /// Vision hidden states the projector reads, per view: `[views, g*g, vision hidden]`.
    pub fn vision_states(&self, pixel_values: &Tensor) -> Result<Tensor> {
        self.vision_states_with(pixel_values, false)
    }

    fn vision_states_with(&self, pixel_values: &Tensor, differentiable: bool) -> Result<Tensor> {
        let px = pixel_values
            .to_device(self.device())?
            .to_dtype(self.dtype())?;
        self.vision.forward_with(&px, differentiable)
    }

    /// Projected vision features of every view: `[views, g*g, hidden]`.
    pub fn view_features(&self, pixel_values: &Tensor) -> Result<Tensor> {
        self.view_features_with(pixel_values, false)
    }

    /// [`LlavaNext::view_features`], recording a backward through the vision tower when
    /// `differentiable` (training the whole model).
    pub fn view_features_with(
        &self,
        pixel_values: &Tensor,
        differentiable: bool,
    ) -> Result<Tensor> {
        self.projector
            .forward(&self.vision_states_with(pixel_values, differentiable)?)
    }

    /// The learned feature that ends each row of high-resolution tokens.
    pub fn image_newline(&self) -> &Tensor {
        &self.image_newline
    }

    /// Packed image features `[layout.num_image_tokens(), hidden]`, in sequence order.
    pub fn image_features(&self, pixel_values: &Tensor, layout: &ImageLayout) -> Result<Tensor> {
        self.image_features_with(pixel_values, layout, false)
    }

    fn image_features_with(
        &self,
        pixel_values: &Tensor,
        layout: &ImageLayout,
        differentiable: bool,
    ) -> Result<Tensor> {
        let views = self.view_features_with(pixel_values, differentiable)?;
        pack_image_features(&views, layout, &self.image_newline)
    }

    /// Embed `ids`, splicing each image's features where `<image>` stands.
    ///
    /// A run of image tokens is either a single placeholder (expanded here) or already as long
    /// as the image's token count; runs and images must correspond one to one.
    pub fn embed_sequence(
        &self,
        ids: &[u32],
        images: &[ImageInput<'_>],
    ) -> Result<(Tensor, SequenceMap)> {
        self.embed_sequence_with(ids, images, false)
    }

    /// [`LlavaNext::embed_sequence`], recording a backward through the vision tower when
    /// `differentiable` (training the whole model).
    pub fn embed_sequence_with(
        &self,
        ids: &[u32],
        images: &[ImageInput<'_>],
        differentiable: bool,
    ) -> Result<(Tensor, SequenceMap)> {
        let image_id = self.cfg.image_token_index;
        let runs = image_runs(ids, image_id);
        if runs.len() != images.len() {
            candle_core::bail!(
                "the prompt has {} image placeholder(s) but {} image(s) were given",
                runs.len(),
                images.len()
            );
        }
        let mut pieces = Vec::new();
        let mut map = SequenceMap::default();
        let mut cursor = 0;
        for (i, ((start, len), img)) in runs.iter().zip(images).enumerate() {
            let n = img.layout.num_image_tokens();
            if *len != 1 && *len != n {
                candle_core::bail!(
                    "image {i}: the prompt has a run of {len} image tokens, expected 1 or {n}"
                );
            }
            self.push_text(&ids[cursor..*start], &mut pieces, &mut map)?;
            pieces.push(self.image_features_with(img.pixel_values, img.layout, differentiable)?);
            map.tokens
                .extend((0..n).map(|token| SeqToken::Image { image: i, token }));
            cursor = start + len;
        }
        self.push_text(&ids[cursor..], &mut pieces, &mut map)?;
        if pieces.is_empty() {
            candle_core::bail!("cannot run an empty prompt");
        }
        Ok((Tensor::cat(&pieces, 0)?.unsqueeze(0)?, map))
    }

    fn push_text(
        &self,
        ids: &[u32],
        pieces: &mut Vec<Tensor>,
        map: &mut SequenceMap,
    ) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let vocab = self.cfg.text_config.vocab_size;
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= vocab) {
            candle_core::bail!("token id {bad} is outside the vocabulary of {vocab}");
        }
        pieces.push(self.llm.embed_ids(ids)?);
        map.tokens
            .extend(ids.iter().map(|&id| SeqToken::Text { id }));
        Ok(())
    }

    /// Embeddings `[1, n, hidden]` of text-only ids (decoding steps).
    pub fn embed_ids(&self, ids: &[u32]) -> Result<Tensor> {
        self.llm.embed_ids(ids)?.unsqueeze(0)
    }

    /// Run the language model over embeddings; see [`Llama::forward`].
    pub fn forward(
        &self,
        embeds: &Tensor,
        offset: usize,
        cache: Option<&mut KvCache>,
        opts: ForwardOptions<'_>,
    ) -> Result<ForwardOutput> {
        self.llm.forward(embeds, offset, cache, opts)
    }
}

/// `(start, len)` of each maximal run of `image_id` in `ids`.
fn image_runs(ids: &[u32], image_id: u32) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        if ids[i] == image_id {
            let start = i;
            while i < ids.len() && ids[i] == image_id {
                i += 1;
            }
            runs.push((start, i - start));
        } else {
            i += 1;
        }
    }
    runs
}

/// Base view first, then the stitched high-res map cropped by unpadding, a newline after each row.
pub fn pack_image_features(
    views: &Tensor,
    layout: &ImageLayout,
    newline: &Tensor,
) -> Result<Tensor> {
    let (n_views, per_view, hidden) = views.dims3()?;
    let g = layout.grid_side as usize;
    let (nph, npw) = (layout.tiles.0 as usize, layout.tiles.1 as usize);
    if per_view != g * g || n_views != 1 + nph * npw {
        candle_core::bail!(
            "vision features {n_views}x{per_view} do not match the layout ({} views of {}x{g})",
            1 + nph * npw,
            g
        );
    }
    let base = views.get(0)?;
    let grid = views
        .narrow(0, 1, nph * npw)?
        .reshape((nph, npw, g, g, hidden))?
        .permute((0, 2, 1, 3, 4))?
        .reshape((nph * g, npw * g, hidden))?;
    let (r0, r1) = layout.kept_rows;
    let (c0, c1) = layout.kept_cols;
    let (rows, cols) = ((r1 - r0) as usize, (c1 - c0) as usize);
    let grid = grid
        .narrow(0, r0 as usize, rows)?
        .narrow(1, c0 as usize, cols)?;
    let nl = newline
        .to_dtype(grid.dtype())?
        .reshape((1, 1, hidden))?
        .broadcast_as((rows, 1, hidden))?;
    let grid = Tensor::cat(&[&grid, &nl], 1)?.reshape((rows * (cols + 1), hidden))?;
    Tensor::cat(&[&base, &grid], 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_found() {
        assert_eq!(image_runs(&[1, 9, 9, 2, 9], 9), vec![(1, 2), (4, 1)]);
        assert!(image_runs(&[1, 2], 9).is_empty());
    }
}
