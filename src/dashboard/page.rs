//! A feature page: the logit lens, the nearest features on both sides of the SAE, and the
//! features that fire with it over its top examples, computed together on the model's device.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{CoFiring, LogitLens, Neighbour, Side, cofiring, logit_lens, neighbours};
use crate::session::Session;
use crate::session::encode::encode_image_tokens;

/// Tokens listed each way by the logit lens, and features by each neighbour list.
pub const PAGE_TOP: usize = 10;
/// Top examples re-encoded for co-firing (each costs one forward to the tap).
pub const COFIRING_IMAGES: usize = 8;

/// What a feature page computes with the model and SAE.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeaturePage {
    /// Feature index.
    pub feature: u32,
    /// Fingerprint of the SAE it was computed with (a page of another SAE is not this one's).
    pub sae_fingerprint: String,
    /// The tokens its decoder direction raises and lowers most.
    pub logit_lens: LogitLens,
    /// Nearest features by decoder cosine (what they write).
    pub decoder_neighbours: Vec<Neighbour>,
    /// Nearest features by encoder cosine (what they read).
    pub encoder_neighbours: Vec<Neighbour>,
    /// Features firing on the same image tokens, by Jaccard over (image, token) pairs.
    pub cofiring: Vec<CoFiring>,
    /// Images the co-firing was counted over.
    pub cofiring_images: usize,
}

/// Where the page's co-firing images come from: the feature's top examples, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct PageRequest {
    /// Feature index.
    pub feature: u32,
    /// Image files of its top examples (at most [`COFIRING_IMAGES`] are used).
    pub images: Vec<PathBuf>,
}

/// The SAE codes of one image's tokens, as `(token, feature, activation)`.
pub type ImageCodes = Vec<(u16, u32, f32)>;

/// Compute the page of `req.feature`; `step(done, total)` is called before each image and may
/// stop the work by returning an error (cancellation).
pub fn feature_page(
    session: &Session,
    req: &PageRequest,
    step: &mut dyn FnMut(usize, usize) -> Result<()>,
) -> Result<FeaturePage> {
    let total = req.images.len().min(COFIRING_IMAGES);
    let mut i = 0;
    feature_page_with(session, req, &mut |path| {
        step(i, total)?;
        i += 1;
        image_codes(session, path)
    })
}

/// The SAE codes of `path`'s image tokens under the session's default prompt.
pub fn image_codes(session: &Session, path: &Path) -> Result<ImageCodes> {
    let ids = session.prompt_ids(None, true)?;
    let run = session.run_to_tap(ids, Some(path))?;
    Ok(encode_image_tokens(&session.sae, &run)?.acts)
}

/// [`feature_page`] with the image codes from `codes_of`, so that a batch of pages can encode
/// each image once.
pub fn feature_page_with(
    session: &Session,
    req: &PageRequest,
    codes_of: &mut dyn FnMut(&Path) -> Result<ImageCodes>,
) -> Result<FeaturePage> {
    let f = req.feature;
    let llm = session.model.model.llm();
    let tokenizer = session.model.tokenizer.as_ref();
    let logit_lens = logit_lens(llm, &session.sae, tokenizer, f, PAGE_TOP)?;
    let decoder_neighbours = neighbours(&session.sae, f, Side::Decoder, PAGE_TOP)?;
    let encoder_neighbours = neighbours(&session.sae, f, Side::Encoder, PAGE_TOP)?;
    let mut acts = Vec::with_capacity(req.images.len().min(COFIRING_IMAGES));
    for path in req.images.iter().take(COFIRING_IMAGES) {
        let codes = codes_of(path)
            .with_context(|| format!("feature {f}: co-firing over {}", path.display()))?;
        acts.push(codes);
    }
    Ok(FeaturePage {
        feature: f,
        sae_fingerprint: session.sae_fingerprint.clone(),
        logit_lens,
        decoder_neighbours,
        encoder_neighbours,
        cofiring: cofiring(f, &acts, PAGE_TOP),
        cofiring_images: acts.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::ModelSpec;

    #[test]
    fn a_page_counts_cofiring_over_the_images_it_was_given() {
        let s = Session::open(&ModelSpec::default(), None).unwrap();
        let shapes = crate::sample::default_dataset();
        let dir = shapes.parent().unwrap().join("images");
        let images: Vec<PathBuf> = (0..3)
            .map(|i| dir.join(format!("shape-{i:04}.png")))
            .collect();
        // A feature that fires on the first image.
        let ids = s.prompt_ids(None, true).unwrap();
        let run = s.run_to_tap(ids, Some(&images[0])).unwrap();
        let acts0 = encode_image_tokens(&s.sae, &run).unwrap().acts;
        let f = acts0[0].1;
        let mut steps = Vec::new();
        let req = PageRequest {
            feature: f,
            images: images.clone(),
        };
        let page = feature_page(&s, &req, &mut |d, t| {
            steps.push((d, t));
            Ok(())
        })
        .unwrap();
        assert_eq!(steps, [(0, 3), (1, 3), (2, 3)]);
        assert_eq!((page.feature, page.cofiring_images), (f, 3));
        assert_eq!(page.logit_lens.raises.len(), PAGE_TOP);
        assert_eq!(page.decoder_neighbours.len(), PAGE_TOP);
        assert!(page.decoder_neighbours.iter().all(|n| n.feature != f));
        // The co-firing list is the core's count over exactly these images.
        let all: Vec<_> = images
            .iter()
            .map(|p| {
                let run = s
                    .run_to_tap(s.prompt_ids(None, true).unwrap(), Some(p))
                    .unwrap();
                encode_image_tokens(&s.sae, &run).unwrap().acts
            })
            .collect();
        assert_eq!(page.cofiring, cofiring(f, &all, PAGE_TOP));
        assert!(!page.cofiring.is_empty());
        // A step that fails stops the page (the actor's cancellation).
        let stopped = feature_page(&s, &req, &mut |_, _| anyhow::bail!("cancelled"));
        assert!(stopped.is_err());
        // Pages round-trip through JSON (the store keeps them so).
        let text = serde_json::to_string(&page).unwrap();
        assert_eq!(serde_json::from_str::<FeaturePage>(&text).unwrap(), page);
    }
}
