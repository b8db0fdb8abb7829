//! `glint bench pages`: how long a feature page takes to open, computed (logit lens and both
//! neighbour lists, then co-firing over its top images) and kept (read back from a store),
//! against the time one pass over the SAE's decoder takes on the same device in the same run.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::DType;
use serde::Serialize;

use crate::dashboard::{
    COFIRING_IMAGES, FeaturePage, PAGE_TOP, PageRequest, Side, feature_page_with, image_codes,
    logit_lens, neighbours,
};
use crate::session::Session;
use crate::store::{Manifest, Store};
use crate::util::scratch::ScratchDir;

/// Settings of `glint bench pages`.
#[derive(Debug, Clone)]
pub struct PagesBenchOptions {
    /// Features timed (spread evenly over the SAE).
    pub features: usize,
    /// Images the co-firing is counted over (at most [`COFIRING_IMAGES`]; 0 skips it).
    pub images: Vec<PathBuf>,
}

/// Milliseconds of one part, over the features timed.
#[derive(Debug, Clone, Serialize)]
pub struct Millis {
    /// Median.
    pub median: f64,
    /// Slowest.
    pub max: f64,
}

impl Millis {
    fn of(mut ms: Vec<f64>) -> Millis {
        ms.sort_by(f64::total_cmp);
        Millis {
            median: ms.get(ms.len() / 2).copied().unwrap_or(f64::NAN),
            max: ms.last().copied().unwrap_or(f64::NAN),
        }
    }
}

/// The result of `glint bench pages`.
#[derive(Debug, Clone, Serialize)]
pub struct PagesBenchReport {
    /// SAE latents.
    pub latents: usize,
    /// SAE width.
    pub d_model: usize,
    /// Features timed.
    pub features: Vec<u32>,
    /// The logit lens of one feature.
    pub logit_lens_ms: Millis,
    /// Its decoder neighbours.
    pub decoder_neighbours_ms: Millis,
    /// Its encoder neighbours.
    pub encoder_neighbours_ms: Millis,
    /// A page without co-firing, not yet kept: logit lens and both neighbour lists.
    pub page_uncached_ms: Millis,
    /// Co-firing over the images given (each one forward to the tap), when any were.
    pub cofiring_ms: Option<Millis>,
    /// Images the co-firing was counted over.
    pub cofiring_images: usize,
    /// A kept page read back from a store.
    pub page_cached_ms: Millis,
    /// Baseline: one pass reading the decoder on the device (sum of its elements).
    pub decoder_pass_ms: f64,
    /// `decoder_neighbours_ms.median` over `decoder_pass_ms`.
    pub neighbours_over_pass: f64,
}

/// Milliseconds `f` takes.
fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, f64)> {
    let start = Instant::now();
    let out = f()?;
    Ok((out, start.elapsed().as_secs_f64() * 1e3))
}

/// Run the benchmark on `session`'s model and SAE.
pub fn run_pages_bench(session: &Session, o: &PagesBenchOptions) -> Result<PagesBenchReport> {
    let n = session.sae.num_latents();
    if o.features == 0 {
        bail!("--features 0 times nothing; give at least 1");
    }
    let features: Vec<u32> = (0..o.features.min(n))
        .map(|i| (i * n / o.features.min(n)) as u32)
        .collect();
    let llm = session.model.model.llm();
    let tokenizer = session.model.tokenizer.as_ref();
    // One untimed page first: kernels load and allocations settle.
    logit_lens(llm, &session.sae, tokenizer, features[0], PAGE_TOP)?;
    neighbours(&session.sae, features[0], Side::Decoder, PAGE_TOP)?;
    let w_dec = session.sae.w_dec();
    let (_, decoder_pass_ms) =
        timed(|| Ok(w_dec.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()?))?;
    let (mut lens, mut dec, mut enc, mut page) = (vec![], vec![], vec![], vec![]);
    for &f in &features {
        let (_, a) = timed(|| logit_lens(llm, &session.sae, tokenizer, f, PAGE_TOP))?;
        let (_, b) = timed(|| neighbours(&session.sae, f, Side::Decoder, PAGE_TOP))?;
        let (_, c) = timed(|| neighbours(&session.sae, f, Side::Encoder, PAGE_TOP))?;
        lens.push(a);
        dec.push(b);
        enc.push(c);
        page.push(a + b + c);
    }
    let images: Vec<PathBuf> = o.images.iter().take(COFIRING_IMAGES).cloned().collect();
    let mut pages = Vec::new();
    let mut cofiring = Vec::new();
    for &f in &features {
        let req = PageRequest {
            feature: f,
            images: images.clone(),
        };
        // The co-firing's cost is its images' forwards to the tap.
        let mut codes_ms = 0.0;
        let p = feature_page_with(session, &req, &mut |path| {
            let (codes, ms) = timed(|| image_codes(session, path))?;
            codes_ms += ms;
            Ok(codes)
        })?;
        cofiring.push(codes_ms);
        pages.push(p);
    }
    let page_cached_ms = cached_reads(session, &pages)?;
    let d_model = w_dec.dim(1)?;
    let decoder_neighbours_ms = Millis::of(dec);
    Ok(PagesBenchReport {
        latents: n,
        d_model,
        neighbours_over_pass: decoder_neighbours_ms.median / decoder_pass_ms.max(1e-9),
        features,
        logit_lens_ms: Millis::of(lens),
        decoder_neighbours_ms,
        encoder_neighbours_ms: Millis::of(enc),
        page_uncached_ms: Millis::of(page),
        cofiring_ms: (!images.is_empty()).then(|| Millis::of(cofiring)),
        cofiring_images: images.len(),
        page_cached_ms,
        decoder_pass_ms,
    })
}

/// Keep `pages` in a temporary store and time reading each back, as the workbench opens it.
fn cached_reads(session: &Session, pages: &[FeaturePage]) -> Result<Millis> {
    let dir = ScratchDir::new("bench-pages");
    let manifest = Manifest {
        sae_fingerprint: session.sae_fingerprint.clone(),
        ..Manifest::synthetic(
            session.sae_id.clone(),
            session.sae.num_latents(),
            session.sae.k(),
            1,
        )
    };
    let store = Store::create(&dir.path().join("store"), &manifest)?;
    for p in pages {
        store.put_page(p.feature, &session.sae_fingerprint, p)?;
    }
    let mut ms = Vec::new();
    for p in pages {
        let (read, t) = timed(|| {
            store
                .page::<FeaturePage>(p.feature, &session.sae_fingerprint)?
                .with_context(|| format!("the page of feature {} was not kept", p.feature))
        })?;
        if read != *p {
            bail!("the page of feature {} read back differs", p.feature);
        }
        ms.push(t);
    }
    Ok(Millis::of(ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::ModelSpec;

    #[test]
    fn the_sample_world_times_every_part_of_a_page() {
        let s = Session::open(&ModelSpec::default(), None).unwrap();
        let dir = crate::sample::default_dataset()
            .parent()
            .unwrap()
            .join("images");
        let images = vec![dir.join("shape-0000.png"), dir.join("shape-0001.png")];
        let r = run_pages_bench(
            &s,
            &PagesBenchOptions {
                features: 3,
                images,
            },
        )
        .unwrap();
        assert_eq!(r.features.len(), 3);
        assert_eq!(r.cofiring_images, 2);
        assert!(r.page_uncached_ms.median > 0.0 && r.page_cached_ms.median > 0.0);
        assert!(r.cofiring_ms.is_some() && r.decoder_pass_ms > 0.0);
        let none = PagesBenchOptions {
            features: 0,
            images: vec![],
        };
        assert!(run_pages_bench(&s, &none).is_err());
    }
}
