//! Feature pages computed in batch: the request of a feature from what the store keeps, and the
//! pages of many features computed with one session and kept in the store.

use anyhow::{Context, Result, bail};

use std::collections::HashMap;
use std::path::PathBuf;

use crate::dashboard::{
    COFIRING_IMAGES, FeaturePage, ImageCodes, PageRequest, feature_page_with, image_codes,
};
use crate::session::Session;
use crate::store::{FeatureFilter, Store};

/// The page request of feature `id`: its top examples' image files, best first.
pub fn page_request(store: &Store, id: u32) -> Result<PageRequest> {
    let root = crate::dataset::store_image_root(&store.manifest().dataset);
    let mut images = Vec::new();
    for ex in store.top_examples(id)?.into_iter().take(COFIRING_IMAGES) {
        let rec = store
            .image(ex.image)?
            .with_context(|| format!("feature {id}: image {} has no record", ex.image))?;
        images.push(root.join(&rec.path));
    }
    Ok(PageRequest {
        feature: id,
        images,
    })
}

/// Images whose codes a batch keeps at once: an image of the 8B model at k = 256 holds about
/// 9 MB of codes, so this bounds the memory near 300 MB.
const CODES_KEPT: usize = 32;

/// What [`compute_missing_pages`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PagesDone {
    /// Pages computed and kept.
    pub computed: usize,
    /// Features whose page the store already kept for this SAE.
    pub kept: usize,
}

/// The features of `filter` that a page is computed for: the listed ones, or with `all` every
/// feature that fired in the store (a page's co-firing needs examples).
pub fn page_targets(store: &Store, filter: &FeatureFilter) -> Result<Vec<u32>> {
    let latents = store.manifest().num_latents as u32;
    let ids: Vec<u32> = match filter {
        FeatureFilter::All => {
            let mut ids = Vec::new();
            for r in store.features() {
                ids.push(r?.0);
            }
            ids
        }
        FeatureFilter::Range(a, b) => (*a..*b).collect(),
        FeatureFilter::List(v) => v.clone(),
    };
    if let Some(f) = ids.iter().find(|&&f| f >= latents) {
        bail!("feature {f} is out of range: the store's SAE has {latents} features (0..{latents})");
    }
    Ok(ids)
}

/// Compute and keep the page of every feature in `ids` the store has none of for this session's
/// SAE; `progress(done, total, feature)` is called before each.
pub fn compute_missing_pages(
    session: &Session,
    store: &Store,
    ids: &[u32],
    progress: &mut dyn FnMut(usize, usize, u32),
) -> Result<PagesDone> {
    let m = store.manifest();
    if m.sae_fingerprint != session.sae_fingerprint {
        bail!(
            "store {} was cached with SAE {} ({}), not the loaded SAE {}; its pages would not \
             describe it (pass the store's SAE with --sae)",
            store.dir().display(),
            m.sae_id,
            m.sae_fingerprint,
            session.sae_id
        );
    }
    let fingerprint = m.sae_fingerprint.clone();
    let mut done = PagesDone::default();
    let mut missing = Vec::new();
    for &f in ids {
        if store.page::<FeaturePage>(f, &fingerprint)?.is_some() {
            done.kept += 1;
        } else {
            missing.push(f);
        }
    }
    let mut codes: HashMap<PathBuf, ImageCodes> = HashMap::new();
    for (i, &f) in missing.iter().enumerate() {
        progress(i, missing.len(), f);
        let req = page_request(store, f)?;
        // Features share top images: each image is run to the tap once for the whole batch.
        let page = feature_page_with(session, &req, &mut |path| {
            if let Some(codes) = codes.get(path) {
                return Ok(codes.clone());
            }
            let c = image_codes(session, path)?;
            if codes.len() >= CODES_KEPT {
                codes.clear();
            }
            codes.insert(path.to_path_buf(), c.clone());
            Ok(c)
        })
        .with_context(|| format!("feature {f}: computing its page"))?;
        store.put_page(f, &fingerprint, &page)?;
        done.computed += 1;
    }
    Ok(done)
}
