//! `glint probe`: one image (and an optional prompt) to the tap, then the strongest SAE features.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use crate::model::anyres::{ImageToken, TokenKind};
use crate::model::llava_next::SeqToken;
use crate::sae::SparseCodes;
use crate::session::{Session, TapRun};

/// One feature's strength over the image tokens.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FeatureSummary {
    /// Latent index.
    pub feature: u32,
    /// Largest activation over image tokens.
    pub max: f32,
    /// Mean activation over all image tokens (zeros included).
    pub mean: f32,
    /// Image tokens it fires on.
    pub count: usize,
}

/// One sequence position with its strongest features.
#[derive(Debug, Clone, Serialize)]
pub struct TokenReport {
    /// Sequence position.
    pub position: usize,
    /// `text`, `base`, `highres` or `newline`.
    pub kind: &'static str,
    /// Decoded text token, or the image cell as `tile:row,col`.
    pub label: String,
    /// `(feature, activation)`, strongest first.
    pub top: Vec<(u32, f32)>,
}

/// Everything `glint probe` reports.
#[derive(Debug, Serialize)]
pub struct ProbeReport {
    /// Model as named by the user.
    pub model: String,
    /// SAE hookpoint.
    pub hookpoint: String,
    /// Tapped decoder layer.
    pub layer: usize,
    /// Sequence length.
    pub positions: usize,
    /// Image tokens (newlines included).
    pub image_tokens: usize,
    /// Strongest features over the image, by max activation.
    pub image_features: Vec<FeatureSummary>,
    /// Every position's strongest features.
    pub tokens: Vec<TokenReport>,
}

/// A probe's report and the raw tensors behind it.
pub struct Probe {
    /// The report.
    pub report: ProbeReport,
    /// The tap run (ids, geometry, residual).
    pub run: TapRun,
    /// SAE codes of every position.
    pub codes: SparseCodes,
}

/// Run one probe.
pub fn probe(session: &Session, image: &Path, prompt: Option<&str>, top: usize) -> Result<Probe> {
    let ids = session.prompt_ids(prompt, true)?;
    let run = session.run_to_tap(ids, Some(image))?;
    let codes = session.sae.encode(&run.residual)?;
    let values = codes.values.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    let indices = codes.indices.to_vec2::<u32>()?;
    let geometry: Vec<ImageToken> = run.layout.as_ref().map(|l| l.tokens()).unwrap_or_default();
    let tok = session.model.tokenizer()?;

    let mut tokens = Vec::with_capacity(run.map.len());
    let mut per_feature: HashMap<u32, (f32, f32, usize)> = HashMap::new();
    let mut image_tokens = 0;
    for (pos, st) in run.map.tokens.iter().enumerate() {
        let mut row: Vec<(u32, f32)> = indices[pos]
            .iter()
            .zip(&values[pos])
            .filter(|(_, v)| crate::sae::is_active(**v))
            .map(|(i, v)| (*i, *v))
            .collect();
        row.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let (kind, label) = match st {
            SeqToken::Text { id } => ("text", tok.decode(&[*id], false).unwrap_or_default()),
            SeqToken::Image { token, .. } => {
                image_tokens += 1;
                let g = geometry
                    .get(*token)
                    .context("image token without geometry")?;
                if g.kind != TokenKind::Newline {
                    for &(f, v) in &row {
                        let e = per_feature.entry(f).or_insert((0.0, 0.0, 0));
                        e.0 = e.0.max(v);
                        e.1 += v;
                        e.2 += 1;
                    }
                }
                let kind = match g.kind {
                    TokenKind::Base => "base",
                    TokenKind::HighRes => "highres",
                    TokenKind::Newline => "newline",
                };
                (kind, format!("{}:{},{}", g.tile, g.row, g.col))
            }
        };
        row.truncate(top);
        tokens.push(TokenReport {
            position: pos,
            kind,
            label,
            top: row,
        });
    }
    let cells = geometry
        .iter()
        .filter(|g| g.kind != TokenKind::Newline)
        .count()
        .max(1);
    let mut image_features: Vec<FeatureSummary> = per_feature
        .into_iter()
        .map(|(feature, (max, sum, count))| FeatureSummary {
            feature,
            max,
            mean: sum / cells as f32,
            count,
        })
        .collect();
    image_features.sort_by(|a, b| b.max.total_cmp(&a.max).then(a.feature.cmp(&b.feature)));
    image_features.truncate(top);
    let report = ProbeReport {
        model: session.model.id.clone(),
        hookpoint: session.sae.hookpoint().to_string(),
        layer: session.layer,
        positions: run.map.len(),
        image_tokens,
        image_features,
        tokens,
    };
    Ok(Probe { report, run, codes })
}

/// Write the probe's tensors: input_ids, residual, top_acts, top_indices, image_token_mask.
pub fn write_dump(probe: &Probe, path: &Path, image_token_id: u32) -> Result<()> {
    let ids = probe.run.map.ids(image_token_id);
    let n = ids.len();
    let mask: Vec<u8> = probe
        .run
        .map
        .tokens
        .iter()
        .map(|t| u8::from(matches!(t, SeqToken::Image { .. })))
        .collect();
    let cpu = Device::Cpu;
    let tensors: HashMap<String, Tensor> = [
        ("input_ids", Tensor::from_vec(ids, n, &cpu)?),
        (
            "residual",
            probe.run.residual.to_device(&cpu)?.to_dtype(DType::F32)?,
        ),
        (
            "top_acts",
            probe.codes.values.to_device(&cpu)?.to_dtype(DType::F32)?,
        ),
        ("top_indices", probe.codes.indices.to_device(&cpu)?),
        ("image_token_mask", Tensor::from_vec(mask, n, &cpu)?),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    candle_core::safetensors::save(&tensors, path)
        .with_context(|| format!("{}: cannot write the dump", path.display()))
}

/// Human-readable report: image features, then text tokens and the strongest image cells.
pub fn format_report(r: &ProbeReport, top: usize) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} · {} (layer {}) · {} positions, {} image tokens",
        r.model, r.hookpoint, r.layer, r.positions, r.image_tokens
    );
    let _ = writeln!(s, "\nstrongest features over the image");
    let _ = writeln!(
        s,
        "{:>8} {:>10} {:>10} {:>7}",
        "feature", "max", "mean", "tokens"
    );
    for f in &r.image_features {
        let _ = writeln!(
            s,
            "{:>8} {:>10.4} {:>10.4} {:>7}",
            f.feature, f.max, f.mean, f.count
        );
    }
    let _ = writeln!(s, "\ntext tokens");
    for t in r.tokens.iter().filter(|t| t.kind == "text") {
        let _ = writeln!(
            s,
            "{:>5} {:<18} {}",
            t.position,
            format!("{:?}", t.label),
            fmt_top(&t.top)
        );
    }
    let mut cells: Vec<&TokenReport> = r
        .tokens
        .iter()
        .filter(|t| t.kind == "base" || t.kind == "highres")
        .collect();
    cells.sort_by(|a, b| {
        let ma = a.top.first().map(|x| x.1).unwrap_or(0.0);
        let mb = b.top.first().map(|x| x.1).unwrap_or(0.0);
        mb.total_cmp(&ma).then(a.position.cmp(&b.position))
    });
    let _ = writeln!(s, "\nstrongest image cells (tile:row,col)");
    for t in cells.into_iter().take(top) {
        let _ = writeln!(
            s,
            "{:>5} {:<8} {:<12} {}",
            t.position,
            t.kind,
            t.label,
            fmt_top(&t.top)
        );
    }
    s
}

fn fmt_top(top: &[(u32, f32)]) -> String {
    top.iter()
        .take(5)
        .map(|(f, v)| format!("{f}:{v:.3}"))
        .collect::<Vec<_>>()
        .join("  ")
}
