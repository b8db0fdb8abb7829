//! Attribution on the sample world: gradients against finite differences (f64), predicted
//! against actual ablation effects, the error node, and gradients reaching the tap.

use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor, Var};

use super::*;
use crate::model::llava_next::SeqToken;
use crate::model::load::{LoadOptions, load_model};
use crate::model::tap::{TapEdit, TapSite};
use crate::sample;

struct World {
    model: LoadedModel,
    sae: Sae,
    layer: usize,
    item: PreparedItem,
}

fn sample_item() -> AttributionItem {
    AttributionItem {
        prompt: "What colour is the circle?".into(),
        answer: "Ġred".into(),
        baseline: " blue".into(),
        image: Some(sample::sample_root().join("shapes/images/shape-0000.png")),
    }
}

fn load_sample(dtype: DType) -> LoadedModel {
    let opts = LoadOptions {
        device: Device::Cpu,
        dtype,
        random_weights: None,
    };
    load_model(&sample::default_model().display().to_string(), &opts).unwrap()
}

/// The language model in `dtype`; the vision tower runs in f32 (candle's CPU layer norm has no
/// f64 kernel), and its embeddings are cast: the gradients checked live above the tap anyway.
fn load(dtype: DType) -> World {
    let model = load_sample(dtype);
    let sae = Sae::load(&sample::default_sae(), None, &Device::Cpu, dtype).unwrap();
    let layer = sae.hookpoint_layer().unwrap();
    let opts = AttributeOptions {
        chat: true,
        ..Default::default()
    };
    let mut item = PreparedItem::new(&load_sample(DType::F32), &sample_item(), &opts).unwrap();
    item.embeds = item.embeds.to_dtype(dtype).unwrap();
    World {
        model,
        sae,
        layer,
        item,
    }
}

/// The sample world in f64 (model and SAE), loaded and embedded once for every test.
fn f64_world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| load(DType::F64))
}

fn attributor(w: &World) -> Attributor<'_> {
    Attributor::new(&w.model, &w.sae, w.layer)
}

/// One differentiable forward and backward on the f64 world, shared by the tests that read it.
fn f64_gradients() -> &'static LatentGradients {
    static G: OnceLock<LatentGradients> = OnceLock::new();
    G.get_or_init(|| {
        attributor(f64_world())
            .gradients(&f64_world().item, true)
            .unwrap()
    })
}

/// The full attribution of the f64 world's item.
fn f64_result() -> &'static AttributionResult {
    static R: OnceLock<AttributionResult> = OnceLock::new();
    R.get_or_init(|| {
        attributor(f64_world())
            .run(&f64_world().item, true)
            .unwrap()
    })
}

fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx).powi(2);
        syy += (b - my).powi(2);
    }
    sxy / (sxx * syy).sqrt()
}

#[test]
fn latent_gradients_match_central_finite_differences_in_f64() {
    let w = f64_world();
    let a = attributor(w);
    let g = f64_gradients();
    let grads = g.grads.as_ref().expect("gradient reached the tap");
    // The (position, slot) pairs with the largest |z · grad|: the ones attribution ranks first.
    let mut pairs: Vec<(usize, usize, f64)> = Vec::new();
    for (t, row) in grads.iter().enumerate() {
        for (j, &dz) in row.iter().enumerate() {
            if g.codes.values[t][j] > 0.0 {
                pairs.push((t, j, (f64::from(g.codes.values[t][j]) * dz).abs()));
            }
        }
    }
    pairs.sort_by(|x, y| y.2.total_cmp(&x.2));
    // The two strongest pairs overall (text, at the last position here) and at image tokens.
    let is_image = |t: usize| matches!(w.item.map.tokens[t], SeqToken::Image { .. });
    let image_pairs = pairs.iter().filter(|p| is_image(p.0)).take(2);
    let chosen: Vec<_> = pairs.iter().take(2).chain(image_pairs).copied().collect();
    assert_eq!(chosen.len(), 4);
    let (mut worst, mut worst_image) = (0f64, 0f64);
    for &(t, j, _) in &chosen {
        let latent = g.codes.indices[t][j];
        let eps = 1e-3 * f64::from(g.codes.values[t][j]).max(1.0);
        let shifted = |delta| {
            a.metric(
                &w.item,
                &CodeChange::Shift {
                    position: t,
                    latent,
                    delta,
                },
                true,
            )
            .unwrap()
        };
        let fd = (shifted(eps) - shifted(-eps)) / (2.0 * eps);
        let rel = (fd - grads[t][j]).abs() / fd.abs().max(grads[t][j].abs()).max(1e-12);
        println!(
            "position {t} latent {latent}: dM/dz = {:.9e}, finite difference = {fd:.9e}, rel err {rel:.2e}",
            grads[t][j]
        );
        if is_image(t) {
            worst_image = worst_image.max(rel);
        } else {
            worst = worst.max(rel);
        }
    }
    assert!(worst < 1e-3, "worst relative error {worst:.3e}");
    // The model computes norms, attention scores and logits in f64 for f64 models, so the
    // metric resolves far below the image tokens' small gradients (~1e-3 here).
    assert!(
        worst_image < 1e-3,
        "worst image-token relative error {worst_image:.3e}"
    );
}

#[test]
fn patched_logits_equal_plain_logits() {
    let w = f64_world();
    let forward = |edit: Option<&mut dyn TapEdit>, differentiable| {
        // The plain run reads the tap without editing, so both runs split the fast and the
        // differentiable layers at the same place.
        let tap = match edit {
            Some(e) => Tap::edit(w.layer, e),
            None => Tap::read(w.layer),
        };
        let opts = ForwardOptions {
            tap: Some(tap),
            until: Until::Logits(LogitPositions::Last),
            differentiable,
        };
        let out = w
            .model
            .model
            .forward(&w.item.embeds, 0, None, opts)
            .unwrap();
        out.logits
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap()
    };
    for differentiable in [false, true] {
        let plain = forward(None, differentiable);
        let mut edit = patch::CodeEdit::new(&w.sae, &CodeChange::Keep);
        let patched = forward(Some(&mut edit), differentiable);
        let mut grad = patch::GradPatch::new(&w.sae);
        let node = forward(Some(&mut grad), differentiable);
        let scale = plain.iter().fold(0f64, |m, v| m.max(v.abs()));
        for other in [&patched, &node] {
            let diff = plain
                .iter()
                .zip(other.iter())
                .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
            println!(
                "differentiable {differentiable}: max |Δlogit| = {diff:.3e} (max |logit| {scale:.3})"
            );
            // The fused path normalises in f32 even here; the differentiable one stays in f64.
            let tolerance = if differentiable { 1e-9 } else { 1e-5 };
            assert!(diff <= tolerance * scale.max(1.0), "logits moved by {diff}");
        }
        // The SAE alone is far from the residual, so the error node is doing real work.
        assert!(grad.rel_error > 1e-3, "SAE error {}", grad.rel_error);
    }
    let a = attributor(w);
    let (plain, patched) = (
        a.plain_metric(&w.item).unwrap(),
        a.metric(&w.item, &CodeChange::Keep, false).unwrap(),
    );
    assert!((plain - patched).abs() < 1e-5, "{plain} vs {patched}");
}

#[test]
fn gradients_reach_the_tap_only_through_differentiable_ops() {
    let w = f64_world();
    let a = attributor(w);
    let on = f64_gradients();
    let grads = on
        .grads
        .as_ref()
        .expect("differentiable forward: gradient reaches the tap");
    let nonzero = grads.iter().flatten().filter(|g| g.abs() > 1e-12).count();
    let total: usize = grads.iter().map(Vec::len).sum();
    println!("nonzero dM/dz: {nonzero} of {total}");
    assert!(
        nonzero * 2 > total,
        "{nonzero} of {total} gradients are nonzero"
    );
    // The fused rope / softmax / rms_norm record no backward: the path is cut silently.
    let off = a.gradients(&w.item, false).unwrap();
    assert!(
        off.grads.is_none(),
        "fused ops unexpectedly carried a gradient"
    );
    assert!((off.metric - on.metric).abs() < 1e-5);
}

/// The direct construction: a `[T, k]` `Var` of the codes, decoded through gathered decoder rows.
struct SparseVarPatch<'a> {
    sae: &'a Sae,
    var: Option<(Var, Tensor)>,
}

impl TapEdit for SparseVarPatch<'_> {
    fn edit(&mut self, residual: &Tensor, _: &TapSite) -> candle_core::Result<Option<Tensor>> {
        let h = residual.squeeze(0)?.to_dtype(self.sae.dtype())?;
        let codes = self.sae.encode(&h).unwrap();
        let err = (&h - self.sae.decode(&codes)?)?.detach();
        let (t, k) = codes.values.dims2()?;
        let z = Var::from_tensor(&codes.values.to_dtype(self.sae.dtype())?)?;
        let rows = self
            .sae
            .w_dec()
            .index_select(&codes.indices.flatten_all()?, 0)?
            .reshape((t, k, self.sae.d_in()))?;
        let dec = z.as_tensor().unsqueeze(1)?.matmul(&rows)?.squeeze(1)?;
        let out = ((dec.broadcast_add(self.sae.b_dec())? + err)?).to_dtype(residual.dtype())?;
        self.var = Some((z, codes.indices));
        Ok(Some(out.unsqueeze(0)?))
    }
}

#[test]
fn output_node_gradients_equal_a_sparse_latent_var() {
    let w = f64_world();
    let mut edit = SparseVarPatch {
        sae: &w.sae,
        var: None,
    };
    let opts = ForwardOptions {
        tap: Some(Tap::edit(w.layer, &mut edit)),
        until: Until::Logits(LogitPositions::Last),
        differentiable: true,
    };
    let logits = w
        .model
        .model
        .forward(&w.item.embeds, 0, None, opts)
        .unwrap()
        .logits
        .unwrap();
    let (a, b) = (w.item.answer.id, w.item.baseline.id);
    let store = patch::logit_diff(&logits, a, b)
        .unwrap()
        .backward()
        .unwrap();
    let (z, _) = edit.var.unwrap();
    let literal = store
        .get(z.as_tensor())
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec2::<f64>()
        .unwrap();
    let ours = f64_gradients().grads.as_ref().unwrap();
    let scale = literal.iter().flatten().fold(0f64, |m, v| m.max(v.abs()));
    let diff = literal
        .iter()
        .flatten()
        .zip(ours.iter().flatten())
        .fold(0f64, |m, (x, y)| m.max((x - y).abs()));
    println!("max |Δ dM/dz| = {diff:.3e} of max {scale:.3e}");
    assert!(diff <= 1e-9 * scale.max(1.0));
}

#[test]
fn predicted_effects_track_zero_ablation() {
    let w = f64_world();
    let a = attributor(w);
    let result = f64_result();
    let top = result.ranked(Part::Total, true);
    let patched = result.patched_metric;
    let (mut predicted, mut actual) = (Vec::new(), Vec::new());
    for l in top.iter().take(12) {
        let ablated = a
            .metric(&w.item, &CodeChange::Zero(vec![l.latent]), false)
            .unwrap();
        predicted.push(l.total);
        actual.push(patched - ablated);
        println!(
            "latent {:>3}: predicted {:+.5}, actual {:+.5} (image {:+.5}, text {:+.5})",
            l.latent,
            l.total,
            patched - ablated,
            l.image,
            l.text
        );
    }
    let r = pearson(&predicted, &actual);
    println!("Pearson r over the top {} latents: {r:.4}", predicted.len());
    // The issue asks for 0.9; 0.994 was measured on this item.
    assert!(r >= 0.98, "Pearson r = {r}");
}

#[test]
fn result_parts_add_up_and_maps_cover_image_tokens() {
    let w = f64_world();
    let result = f64_result();
    let plain = result.plain_metric.unwrap();
    assert!((plain - result.patched_metric).abs() < 1e-5);
    assert!(result.image_positions > 0 && result.image_positions < result.positions);
    let layout = result.layout.as_ref().unwrap();
    let n_img = layout.num_image_tokens() as u32;
    for l in &result.latents {
        assert!((l.image + l.text - l.total).abs() < 1e-9 * (1.0 + l.total.abs()));
        let summed: f64 = l.image_map.iter().map(|e| f64::from(e.1)).sum();
        assert!((summed - l.image).abs() < 1e-4 * (1.0 + l.image.abs()));
        assert!(l.image_map.iter().all(|e| e.0 < n_img));
        assert_eq!(l.positions as usize, l.image_map.len() + l.text_map.len());
    }
    let k = w.sae.k();
    assert!(result.active_pairs <= result.positions * k);
}

#[test]
fn answer_tokens_are_checked() {
    let w = f64_world();
    let tok = w.model.tokenizer().unwrap();
    // The vocabulary's own spelling and the text form resolve to the one token.
    let red = tok
        .token_to_id("Ġred")
        .expect("the sample vocabulary has Ġred");
    assert_eq!(
        prepare::resolve_token(tok, "Ġred", "answer").unwrap().id,
        red
    );
    assert_eq!(
        prepare::resolve_token(tok, " red", "answer").unwrap().id,
        red
    );
    let empty = prepare::resolve_token(tok, "", "baseline").unwrap_err();
    assert!(format!("{empty:#}").contains("baseline is empty"));
    let many = prepare::resolve_token(tok, " red circle", "answer").unwrap_err();
    let msg = format!("{many:#}");
    assert!(msg.contains("2 tokens") && msg.contains("Ġred"), "{msg}");
    let mut same = sample_item();
    same.baseline = " red".into();
    let opts = AttributeOptions::default();
    assert!(PreparedItem::new(&w.model, &same, &opts).is_err());
}
