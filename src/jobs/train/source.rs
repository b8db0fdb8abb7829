//! Training rows from a LLaVA-NeXT model: each dataset image runs (as `<bos><image>`) to the tap,
//! and the selected positions' residuals are its rows; an optional on-disk cache keeps them for
//! later epochs so the model runs once per image.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use candle_core::{DType, Tensor};

use crate::dataset::Dataset;
use crate::model::anyres::{ImageLayout, TokenKind};
use crate::model::llava_next::ImageInput;
use crate::model::load::LoadedModel;
use crate::model::tap::ForwardOptions;
use crate::sae::train::data::RowSource;
use crate::session::encode::TokenSelection;
use crate::util::hash::Fingerprint;

/// What one selected row stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowTag {
    /// A text token.
    Text,
    /// Image token `token` of the image's `ImageLayout::tokens()`.
    Image(u32),
}

/// Residual rows of dataset images at one layer.
pub struct ModelSource<'a> {
    model: &'a LoadedModel,
    dataset: &'a Dataset,
    layer: usize,
    tokens: TokenSelection,
    max_pixels: u64,
    ids: Vec<u32>,
    layouts: Vec<Option<ImageLayout>>,
    cache: Option<PathBuf>,
}

impl<'a> ModelSource<'a> {
    /// A source over `dataset`; with `cache`, rows are also kept in (and read from) that folder.
    pub fn new(
        model: &'a LoadedModel,
        dataset: &'a Dataset,
        layer: usize,
        tokens: TokenSelection,
        max_pixels: u64,
        cache: Option<PathBuf>,
    ) -> Result<Self> {
        let ids = model.tokenizer()?.cache_prompt_ids()?;
        let mut source = Self {
            model,
            dataset,
            layer,
            tokens,
            max_pixels,
            ids,
            layouts: vec![None; dataset.len()],
            cache: None,
        };
        if let Some(dir) = cache {
            prepare_cache(&dir, &source.fingerprint())?;
            source.cache = Some(dir);
        }
        Ok(source)
    }

    /// Fingerprint of what the rows are: model, layer, token kinds, prompt, dtype and dataset.
    pub fn fingerprint(&self) -> String {
        let mut fp = Fingerprint::new();
        fp.field(&self.model.fingerprint)
            .field(&self.layer.to_string())
            .field(&format!("{:?}", self.tokens))
            .field(&format!("{:?}", self.ids))
            .field(&format!(
                "{:?}/{:?}",
                self.model.model.dtype(),
                self.model.model.device().location()
            ))
            .field(&self.dataset.fingerprint());
        fp.hex()
    }

    /// Anyres geometry of `item`, from its size (no pixels decoded).
    pub fn layout(&mut self, item: usize) -> Result<ImageLayout> {
        if let Some(l) = &self.layouts[item] {
            return Ok(l.clone());
        }
        let path = self.dataset.path(&self.dataset.items[item]);
        let (w, h) = image::image_dimensions(&path)
            .with_context(|| format!("cannot read image {}", path.display()))?;
        let cfg = &self.model.config;
        let layout = ImageLayout::new(
            (h, w),
            &cfg.pinpoints(),
            self.model.processor.tile_px(),
            cfg.vision_config.patch_size as u32,
        )
        .with_context(|| format!("{}: image geometry", path.display()))?;
        self.layouts[item] = Some(layout.clone());
        Ok(layout)
    }

    /// The selected positions of `item`'s sequence and what each one is.
    pub fn tags(&mut self, item: usize) -> Result<(Vec<u32>, Vec<RowTag>)> {
        let layout = self.layout(item)?;
        let kinds: Vec<TokenKind> = layout.tokens().iter().map(|t| t.kind).collect();
        let image_id = self.model.config.image_token_index;
        let (mut positions, mut tags) = (Vec::new(), Vec::new());
        let mut pos = 0u32;
        for &id in &self.ids {
            if id == image_id {
                for (t, kind) in kinds.iter().enumerate() {
                    if self.tokens.keeps_image(*kind) {
                        positions.push(pos);
                        tags.push(RowTag::Image(t as u32));
                    }
                    pos += 1;
                }
            } else {
                if self.tokens.keeps_text() {
                    positions.push(pos);
                    tags.push(RowTag::Text);
                }
                pos += 1;
            }
        }
        Ok((positions, tags))
    }

    fn cache_file(&self, item: usize) -> Option<PathBuf> {
        self.cache
            .as_ref()
            .map(|d| d.join(format!("{item:06}.f32")))
    }

    /// Run `item` to the tap and keep the selected rows.
    fn compute(&mut self, item: usize) -> Result<Vec<f32>> {
        let (positions, _) = self.tags(item)?;
        let path = self.dataset.path(&self.dataset.items[item]);
        let prepared = crate::session::ImagePrep::for_model(
            self.model,
            crate::model::preprocess::ImageLimits::pixels(self.max_pixels),
        )
        .prepare(&path)?;
        let images = [ImageInput {
            pixel_values: &prepared.pixel_values,
            layout: &prepared.layout,
        }];
        let m = &self.model.model;
        let (embeds, map) = m.embed_sequence(&self.ids, &images)?;
        let expected = positions.last().map_or(0, |&p| p as usize + 1);
        if map.len() < expected {
            bail!(
                "{}: the sequence has {} positions, fewer than planned",
                path.display(),
                map.len()
            );
        }
        let out = m.forward(&embeds, 0, None, ForwardOptions::to_tap(self.layer))?;
        let residual = out
            .tapped
            .context("the forward returned no tapped residual")?
            .squeeze(0)?;
        let index = Tensor::new(positions.as_slice(), residual.device())?;
        let rows = residual.index_select(&index, 0)?.to_dtype(DType::F32)?;
        Ok(rows.flatten_all()?.to_vec1()?)
    }
}

impl RowSource for ModelSource<'_> {
    fn d_in(&self) -> usize {
        self.model.config.text_config.hidden_size
    }

    fn len(&self) -> usize {
        self.dataset.len()
    }

    fn count(&mut self, item: usize) -> Result<usize> {
        Ok(self.tags(item)?.0.len())
    }

    fn rows(&mut self, item: usize) -> Result<Vec<f32>> {
        let want = self.count(item)? * self.d_in();
        if let Some(file) = self.cache_file(item)
            && let Ok(bytes) = std::fs::read(&file)
            && bytes.len() == want * 4
        {
            return Ok(bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect());
        }
        let rows = self.compute(item)?;
        if let Some(file) = self.cache_file(item) {
            let bytes: Vec<u8> = rows.iter().flat_map(|v| v.to_le_bytes()).collect();
            let partial = file.with_extension("partial");
            std::fs::write(&partial, bytes)
                .with_context(|| format!("cannot write {}", partial.display()))?;
            std::fs::rename(&partial, &file)
                .with_context(|| format!("cannot move {} into place", partial.display()))?;
        }
        Ok(rows)
    }

    fn name(&self, item: usize) -> String {
        self.dataset
            .path(&self.dataset.items[item])
            .display()
            .to_string()
    }
}

const CACHE_META: &str = "cache.json";

/// Make `dir` an activation cache for `key`, emptying it when it holds another key's rows.
fn prepare_cache(dir: &Path, key: &str) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create activation cache {}", dir.display()))?;
    let meta = dir.join(CACHE_META);
    let current = std::fs::read_to_string(&meta).ok();
    let want = serde_json::json!({ "key": key }).to_string();
    if current.as_deref() == Some(want.as_str()) {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        if path
            .extension()
            .is_some_and(|e| e == "f32" || e == "partial")
        {
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove stale {}", path.display()))?;
        }
    }
    std::fs::write(&meta, want).with_context(|| format!("cannot write {}", meta.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_is_emptied_when_its_key_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("acts");
        prepare_cache(&dir, "a").unwrap();
        std::fs::write(dir.join("000001.f32"), [0u8; 8]).unwrap();
        std::fs::write(dir.join("notes.txt"), "keep").unwrap();
        prepare_cache(&dir, "a").unwrap();
        assert!(dir.join("000001.f32").exists());
        prepare_cache(&dir, "b").unwrap();
        assert!(!dir.join("000001.f32").exists());
        assert!(dir.join("notes.txt").exists());
    }
}
