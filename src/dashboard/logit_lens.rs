//! The logit lens of a feature: its decoder direction read as a final hidden state, through the
//! model's final norm and unembedding; the tokens it raises and lowers most.

use anyhow::{Context, Result, bail};
use candle_core::DType;
use serde::{Deserialize, Serialize};

use crate::model::llama::Llama;
use crate::model::tokenizer::PromptTokenizer;
use crate::sae::Sae;

/// One token and the logit the feature's direction gives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogit {
    /// Vocabulary id.
    pub token: u32,
    /// The token's text (its tokenizer piece), when a tokenizer is at hand.
    pub text: Option<String>,
    /// The logit.
    pub logit: f32,
}

impl TokenLogit {
    /// The token as people read it: its byte-level BPE piece with the space and newline marks
    /// (`Ġ`, `Ċ`) read back; `None` without a tokenizer.
    pub fn readable(&self) -> Option<String> {
        self.text
            .as_deref()
            .map(|s| s.replace('Ġ', " ").replace('Ċ', "\n"))
    }
}

/// The tokens a feature's direction raises and lowers most, strongest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogitLens {
    /// Feature index.
    pub feature: u32,
    /// Highest logits, descending.
    pub raises: Vec<TokenLogit>,
    /// Lowest logits, ascending.
    pub lowers: Vec<TokenLogit>,
}

/// The `top` tokens feature `feature` raises and lowers most (ties by lower token id).
pub fn logit_lens(
    llm: &Llama,
    sae: &Sae,
    tokenizer: Option<&PromptTokenizer>,
    feature: u32,
    top: usize,
) -> Result<LogitLens> {
    if feature as usize >= sae.num_latents() {
        bail!(
            "feature {feature} is out of range: the SAE has {} latents",
            sae.num_latents()
        );
    }
    let direction = sae.w_dec().narrow(0, feature as usize, 1)?;
    let logits = llm
        .head_logits(&direction)
        .with_context(|| format!("logit lens of feature {feature}"))?
        .flatten_all()?
        .to_dtype(DType::F32)?
        .to_vec1::<f32>()?;
    if let Some(bad) = logits.iter().position(|v| !v.is_finite()) {
        bail!(
            "logit lens of feature {feature}: token {bad} has a non-finite logit; the SAE's decoder row or the model's head holds non-finite values"
        );
    }
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    order.sort_by(|&a, &b| {
        logits[b as usize]
            .total_cmp(&logits[a as usize])
            .then(a.cmp(&b))
    });
    let entry = |t: u32| TokenLogit {
        token: t,
        text: tokenizer.and_then(|tok| tok.id_to_token(t)),
        logit: logits[t as usize],
    };
    let top = top.min(order.len());
    let raises = order[..top].iter().map(|&t| entry(t)).collect();
    let mut lowest: Vec<u32> = order[order.len() - top..].to_vec();
    lowest.reverse();
    let lowers = lowest.into_iter().map(entry).collect();
    Ok(LogitLens {
        feature,
        raises,
        lowers,
    })
}

/// The dense reference: `rmsnorm(d) · W_U`, for tests.
#[cfg(test)]
fn dense_logits(
    llm: &Llama,
    d: &candle_core::Tensor,
    weight: &candle_core::Tensor,
    eps: f64,
) -> Result<Vec<f32>> {
    let d = d.to_dtype(DType::F64)?;
    let rms = (d.sqr()?.mean_all()?.to_scalar::<f64>()? + eps).sqrt();
    let normed = (d / rms)?.broadcast_mul(&weight.to_dtype(DType::F64)?)?;
    let w_u = llm.lm_head().to_dtype(DType::F64)?;
    Ok(normed
        .unsqueeze(0)?
        .matmul(&w_u.t()?)?
        .flatten_all()?
        .to_dtype(DType::F32)?
        .to_vec1()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{ModelSpec, Session};

    #[test]
    fn top_tokens_match_a_dense_computation() {
        let s = Session::open(&ModelSpec::default(), None).unwrap();
        let llm = s.model.model.llm();
        let tok = s.model.tokenizer.as_ref();
        let file = crate::sample::default_model().join("model.safetensors");
        let tensors = candle_core::safetensors::load(&file, &candle_core::Device::Cpu).unwrap();
        let weights = tensors["language_model.model.norm.weight"].clone();
        let eps = s.model.config.text_config.rms_norm_eps;
        for f in [0u32, 7, 200] {
            let lens = logit_lens(llm, &s.sae, tok, f, 10).unwrap();
            let d = s.sae.w_dec().get(f as usize).unwrap();
            let dense = dense_logits(llm, &d, &weights, eps).unwrap();
            let mut order: Vec<usize> = (0..dense.len()).collect();
            order.sort_by(|&a, &b| dense[b].total_cmp(&dense[a]).then(a.cmp(&b)));
            let want: Vec<u32> = order[..10].iter().map(|&t| t as u32).collect();
            let got: Vec<u32> = lens.raises.iter().map(|t| t.token).collect();
            assert_eq!(got, want, "feature {f}");
            for t in &lens.raises {
                let rel = (t.logit - dense[t.token as usize]).abs()
                    / dense[t.token as usize].abs().max(1e-3);
                assert!(rel < 1e-4, "feature {f} token {}: {rel}", t.token);
            }
            let lowest = order[order.len() - 1] as u32;
            assert_eq!(lens.lowers[0].token, lowest);
            assert!(lens.raises[0].logit >= lens.raises[9].logit);
        }
        assert!(logit_lens(llm, &s.sae, tok, 1 << 20, 10).is_err());
    }
}
