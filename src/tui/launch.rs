//! Starting the workbench from the command line: pick the store, start the model actor (a failed
//! load is an error before the terminal changes), then run the UI.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::dataset::{Dataset, DatasetOptions};
use crate::engine::{ModelHandle, SessionEngine};
use crate::jobs::cache::{CacheOptions, run_cache};
use crate::session::ModelSpec;
use crate::session::Session;
use crate::store::{FeatureFilter, RankRule, Store};

/// Images in the sample store built on first use.
pub const SAMPLE_IMAGES: usize = 16;

/// Where the sample store lives: `<user cache dir>/glint/sample-store`.
pub fn sample_store_dir() -> Result<PathBuf> {
    let base = dirs::cache_dir()
        .context("no user cache folder (set XDG_CACHE_HOME or pass --cache DIR)")?;
    Ok(base.join("glint").join("sample-store"))
}

/// Open `dir`, or build the sample store (once) when no store is named.
pub fn open_store(model: &ModelSpec, dir: Option<&Path>) -> Result<Store> {
    if let Some(d) = dir {
        return Store::open(d)
            .with_context(|| format!("cannot open the store {} (--cache)", d.display()));
    }
    let dir = sample_store_dir()?;
    if dir.is_dir()
        && let Ok(store) = Store::open(&dir)
        && store.progress()?.complete
    {
        return Ok(store);
    }
    eprintln!(
        "building the sample store ({SAMPLE_IMAGES} images) in {} …",
        dir.display()
    );
    let session = Session::open(model, None)?;
    let spec = crate::sample::default_dataset();
    let dataset = Dataset::open(
        &spec,
        &DatasetOptions {
            limit: Some(SAMPLE_IMAGES),
            shuffle_seed: None,
            split: None,
        },
    )?;
    let opts = CacheOptions {
        out: dir.clone(),
        top_n: 16,
        rank: RankRule::Max,
        features: FeatureFilter::All,
        shard: None,
        commit_every: SAMPLE_IMAGES,
        // The first run's only wait: show that it moves.
        progress_bar: true,
        tokens: Default::default(),
        range_sample: crate::store::DEFAULT_RANGE_SAMPLE,
    };
    run_cache(&session, &dataset, &opts)?;
    Store::open(&dir)
}

/// `glint` without a subcommand.
pub fn main(model: &ModelSpec, cache: Option<&Path>, graphics: &str, theme: &str) -> Result<()> {
    use std::io::IsTerminal;
    // Before anything loads: without a terminal the UI cannot start, and loading a model first
    // only delays the error.
    let not_terminal = if !std::io::stdin().is_terminal() {
        Some("standard input")
    } else if !std::io::stdout().is_terminal() {
        Some("standard output")
    } else {
        None
    };
    if let Some(which) = not_terminal {
        anyhow::bail!(
            "the workbench needs a terminal, and {which} is not one; run glint in a terminal \
             (or tmux), or run a headless job with `glint --batch <command>` (`glint --batch` \
             lists them)"
        );
    }
    let mode: super::GraphicsMode = graphics.parse().map_err(anyhow::Error::msg)?;
    // Parse the config first: a bad user keymap, theme or explainer file is reported before
    // anything loads.
    super::load_config(super::theme::resolve(theme, None))?;
    let explain = super::explainer::load(model)?;
    let store = open_store(model, cache)?;
    let (args, layer) = (model.clone(), store.manifest().layer);
    let handle =
        ModelHandle::spawn(move || Ok(SessionEngine::new(Session::open(&args, Some(layer))?)))
            .context("cannot start the model")?;
    let bench = std::env::var_os("GLINT_FRAME_STATS").is_some();
    let switch = if bench {
        feature_switch_ms(&store)?
    } else {
        (0.0, 0.0)
    };
    let stats = super::run(store, handle, mode, theme, Some(explain))?;
    if bench {
        eprintln!(
            "feature switch from the store (images decoded once): mean {:.1} ms · slowest {:.1} ms",
            switch.0, switch.1
        );
        eprintln!(
            "frames {} · first frame {:.1} ms · slowest frame {:.1} ms",
            stats.frames,
            stats.first_frame.as_secs_f64() * 1e3,
            stats.slowest.as_secs_f64() * 1e3
        );
    }
    Ok(())
}

/// Mean and slowest time to load a feature's detail (stats, examples, thumbnails) through the
/// workbench's image cache, over up to 32 features.
pub fn feature_switch_ms(store: &Store) -> Result<(f64, f64)> {
    let cache = super::data::ImageCache::default();
    let ids: Vec<u32> = store
        .features()
        .take(32)
        .map(|r| r.map(|(f, _)| f))
        .collect::<Result<_>>()?;
    let (mut sum, mut worst) = (0.0f64, 0.0f64);
    for &f in &ids {
        let t = std::time::Instant::now();
        super::data::load_feature_cached(store, f, super::data::THUMB_SIDE, &cache)?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        sum += ms;
        worst = worst.max(ms);
    }
    Ok((sum / ids.len().max(1) as f64, worst))
}
