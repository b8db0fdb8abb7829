//! Runs `glint bench` and prints its report.

use std::path::Path;

use anyhow::{Context, Result};

use crate::cli::args::{BenchArgs, ModelArgs};
use crate::jobs::bench::{BenchOptions, run_bench};
use crate::model::config::LlavaNextConfig;
use crate::sample;

/// `glint bench`.
pub fn run(model: &ModelArgs, args: &BenchArgs) -> Result<()> {
    match &args.part {
        Some(crate::cli::args::BenchPart::Store(a)) => return super::bench_store::run(a),
        Some(crate::cli::args::BenchPart::Pages(a)) => return super::bench_pages::run(model, a),
        None => {}
    }
    let spec_flags = model.spec()?;
    let spec = args
        .config
        .clone()
        .or_else(|| model.model.clone())
        .unwrap_or_else(|| {
            sample::sample_root()
                .join("configs/llama3-llava-next-8b.json")
                .display()
                .to_string()
        });
    let dtype = spec_flags.dtype;
    let sae_dtype = spec_flags.sae_dtype;
    // A bare config has no weights: random ones are implied.
    let random = model
        .random_weights
        .or(spec.ends_with(".json").then_some(0));
    let text = if spec.ends_with(".json") {
        std::fs::read_to_string(&spec).with_context(|| format!("{spec}: cannot read"))?
    } else {
        std::fs::read_to_string(Path::new(&spec).join("config.json"))
            .with_context(|| format!("{spec}/config.json: cannot read"))?
    };
    let layers = LlavaNextConfig::from_json(&text, &spec)?
        .text_config
        .num_hidden_layers;
    let opts = BenchOptions {
        model: spec,
        random_weights: random,
        device: spec_flags.device.open()?,
        dtype,
        sae_dtype,
        latents: args.latents,
        k: args.k,
        layer: args.layer.unwrap_or(24.min(layers - 1)),
        images: args.images.max(1),
        decode_tokens: args.decode_tokens,
        train_steps: args.train_steps,
        attribute: args.attribute,
    };
    let (report, _loaded) = run_bench(&opts)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "device {} · {} · {} image tokens, {} positions",
            report.device, report.dtype, report.image_tokens, report.seq_len
        );
        println!("load                   {:>10.2} s", report.load_s);
        println!(
            "forward to tap         {:>10.2} images/s   (baseline)",
            report.forward_to_tap_img_per_s
        );
        println!(
            "cache step             {:>10.2} images/s   ({:.2}x the forward's time)",
            report.cache_img_per_s, report.cache_overhead_ratio
        );
        println!(
            "SAE encode             {:>10.4} s/image",
            report.sae_encode_s
        );
        println!(
            "  vision + embedding   {:>10.4} s/image",
            report.vision_embed_s
        );
        println!(
            "  layers to the tap    {:>10.4} s/image",
            report.layers_to_tap_s
        );
        println!("prefill (full model)   {:>10.4} s", report.prefill_s);
        if let (Some(p), Some(s)) = (report.decode_tok_per_s, report.decode_steered_tok_per_s) {
            println!("decode                 {p:>10.2} tokens/s   steered {s:.2} tokens/s");
        }
        if let Some(a) = &report.attribute {
            println!(
                "attribution            {:>10.3} s        ({} latents; per-latent ablation loop {:.0} s, {:.0}x)",
                a.total_s, a.active_latents, a.per_latent_loop_s, a.speedup
            );
        }
        if let Some(t) = &report.train {
            println!(
                "SAE training           {:>10.0} tokens/s   ({} steps of {} rows; sparse products \
                 vs dense: rel. error {:.1e})",
                t.tokens_per_s, t.timed_steps, t.batch_rows, t.sparse_check
            );
        }
        println!(
            "fused kernels          {}",
            if report.fused_kernels {
                "on"
            } else {
                "off (GLINT_FUSED=0)"
            }
        );
        if let Some(b) = report.peak_rss_bytes {
            println!("peak host memory       {:>10.2} GB", b as f64 / 1e9);
        }
        if let Some(b) = report.peak_gpu_bytes {
            println!("peak GPU memory        {:>10.2} GB", b as f64 / 1e9);
        }
    }
    Ok(())
}
