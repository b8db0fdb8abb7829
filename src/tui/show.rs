//! `glint probe --show`: the strongest image feature's heatmap printed inline with viuer.

use std::path::Path;

use anyhow::{Context, Result};

use crate::engine::Analysis;
use crate::engine::session::probe_image_acts;
use crate::heatmap::overlay::OverlayStyle;
use crate::jobs::probe::Probe;
use crate::tui::data::{LARGE_SIDE, picture};

/// Print the overlay of the probe's strongest image feature to the terminal.
pub fn print_strongest(probe: &Probe, image: &Path, theme: &str) -> Result<()> {
    let layout = probe
        .run
        .layout
        .clone()
        .context("the probe has no image to show")?;
    let analysis = Analysis {
        image: image.to_path_buf(),
        layout,
        acts: probe_image_acts(probe)?,
    };
    let Some(&(feature, max, _)) = analysis.features().first() else {
        println!("no feature fires on the image; nothing to show");
        return Ok(());
    };
    let (_, th) = super::load_config(theme)?;
    let pic = picture(
        image,
        String::new(),
        &analysis.layout,
        &analysis.feature_acts(feature),
        LARGE_SIDE,
    );
    let img = image::DynamicImage::ImageRgb8(pic.overlay(&OverlayStyle::default(), &th.ramp, None));
    println!(
        "\nfeature {feature} (max {max:.3}) over {}:",
        image.display()
    );
    let conf = viuer::Config {
        absolute_offset: false,
        width: Some(60),
        ..Default::default()
    };
    viuer::print(&img, &conf).context("cannot print the heatmap to this terminal")?;
    Ok(())
}
