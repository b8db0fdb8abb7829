//! The SAE spliced in at the tap with its reconstruction error as a constant.
//!
//! `h' = decode(z) + err`, `err = (h − decode(z))` detached, so `h' = h` and the model's output is
//! unchanged. For the gradient run the tracked node is `h'` itself (a `Var` of `[T, d]`): the
//! decoder is linear in `z`, so `∂M/∂z[t, j] = W_dec[idx[t, j]] · ∂M/∂h'[t]` exactly, computed
//! afterwards over the k active latents of each position in bounded row blocks. This is the same
//! gradient as a `[T, k]` `Var` decoded through gathered decoder rows, without keeping the
//! `T·k·d` gathered rows alive in the graph (12 GB at T = 2.9k, k = 256, d = 4096).

use anyhow::{Context, Result, bail};
use candle_core::{DType, Tensor, Var};

use crate::model::tap::{TapEdit, TapSite};
use crate::sae::codes::DECODE_BUDGET_BYTES;
use crate::sae::{Sae, SparseCodes};

/// How the SAE's codes are changed before decoding (the error node is kept in every case).
#[derive(Debug, Clone, PartialEq)]
pub enum CodeChange {
    /// No change: the patched model, which must reproduce the plain model.
    Keep,
    /// Zero-ablate these latents at every position where they are active.
    Zero(Vec<u32>),
    /// Add `delta` to `latent`'s value at sequence position `position` (finite differences).
    Shift {
        /// Sequence position.
        position: usize,
        /// Latent index; it must be active there.
        latent: u32,
        /// Amount added to its activation.
        delta: f64,
    },
}

/// Top-k codes of every position, on the host.
#[derive(Debug, Clone, Default)]
pub struct HostCodes {
    /// Activations `[T][k]`, descending within a position.
    pub values: Vec<Vec<f32>>,
    /// Latent indices `[T][k]`, aligned with `values`.
    pub indices: Vec<Vec<u32>>,
}

/// Encode one `[1, T, d]` residual: the SAE-dtype rows, their codes and the error term.
fn encode_residual(sae: &Sae, residual: &Tensor) -> Result<(SparseCodes, Tensor)> {
    let (b, _, _) = residual.dims3()?;
    if b != 1 {
        bail!("attribution runs one sequence at a time, the tap saw a batch of {b}");
    }
    let h = residual.squeeze(0)?.to_dtype(sae.dtype())?.detach();
    let codes = sae.encode(&h)?;
    let err = (&h - sae.decode(&codes)?)?.detach();
    Ok((codes, err))
}

fn to_candle(e: anyhow::Error, site: &TapSite) -> candle_core::Error {
    candle_core::Error::Msg(format!(
        "SAE patch at positions {}..{}: {e:#}",
        site.start,
        site.start + site.len
    ))
}

/// The gradient run's edit: replaces the residual with the tracked node `h' = decode(z) + err`.
pub struct GradPatch<'a> {
    sae: &'a Sae,
    /// `h'` as a `Var` `[T, d]` in the SAE dtype, set by the edit.
    pub node: Option<Var>,
    /// The codes `z` the node was decoded from.
    pub codes: Option<SparseCodes>,
    /// Mean over positions of `‖err‖ / ‖h‖`.
    pub rel_error: f64,
}

impl<'a> GradPatch<'a> {
    /// An edit for `sae` (its hookpoint must be the tap's layer).
    pub fn new(sae: &'a Sae) -> Self {
        Self {
            sae,
            node: None,
            codes: None,
            rel_error: 0.0,
        }
    }

    fn patch(&mut self, residual: &Tensor) -> Result<Tensor> {
        if self.node.is_some() {
            bail!("the tap was reached twice; attribution needs one prefill call");
        }
        let (codes, err) = encode_residual(self.sae, residual)?;
        let x_hat = self.sae.decode(&codes)?;
        self.rel_error = mean_rel_norm(&err, &(&x_hat + &err)?)?;
        let node = Var::from_tensor(&(x_hat + err)?)?;
        let out = node.as_tensor().to_dtype(residual.dtype())?.unsqueeze(0)?;
        self.node = Some(node);
        self.codes = Some(codes);
        Ok(out)
    }
}

impl TapEdit for GradPatch<'_> {
    fn edit(&mut self, residual: &Tensor, site: &TapSite) -> candle_core::Result<Option<Tensor>> {
        self.patch(residual)
            .map(Some)
            .map_err(|e| to_candle(e, site))
    }
}

/// An edit that decodes changed codes and adds the error term back.
pub struct CodeEdit<'a> {
    sae: &'a Sae,
    change: &'a CodeChange,
    /// (position, latent) pairs the change touched.
    pub touched: usize,
}

impl<'a> CodeEdit<'a> {
    /// An edit applying `change` through `sae`.
    pub fn new(sae: &'a Sae, change: &'a CodeChange) -> Self {
        Self {
            sae,
            change,
            touched: 0,
        }
    }

    fn patch(&mut self, residual: &Tensor) -> Result<Tensor> {
        let (codes, err) = encode_residual(self.sae, residual)?;
        let dev = codes.values.device().clone();
        let (t, k) = codes.values.dims2()?;
        // f64 on the host so a small finite-difference step survives in an f64 SAE.
        let mut values: Vec<f64> = codes
            .values
            .to_dtype(DType::F64)?
            .flatten_all()?
            .to_vec1()?;
        let indices: Vec<u32> = codes.indices.flatten_all()?.to_vec1()?;
        match self.change {
            CodeChange::Keep => {}
            CodeChange::Zero(latents) => {
                for (v, i) in values.iter_mut().zip(&indices) {
                    if *v > 0.0 && latents.contains(i) {
                        *v = 0.0;
                        self.touched += 1;
                    }
                }
            }
            CodeChange::Shift {
                position,
                latent,
                delta,
            } => {
                let row = position * k..(position + 1) * k;
                if *position >= t {
                    bail!("position {position} is past the sequence of {t}");
                }
                if let Some(j) = row
                    .clone()
                    .find(|&j| indices[j] == *latent && values[j] > 0.0)
                {
                    values[j] += delta;
                    self.touched += 1;
                }
            }
        }
        let changed = SparseCodes {
            values: Tensor::from_vec(values, (t, k), &dev)?.to_dtype(self.sae.dtype())?,
            indices: codes.indices,
        };
        let h = (self.sae.decode(&changed)? + err)?;
        Ok(h.to_dtype(residual.dtype())?.unsqueeze(0)?)
    }
}

impl TapEdit for CodeEdit<'_> {
    fn edit(&mut self, residual: &Tensor, site: &TapSite) -> candle_core::Result<Option<Tensor>> {
        self.patch(residual)
            .map(Some)
            .map_err(|e| to_candle(e, site))
    }
}

/// `∂M/∂z[t, j] = W_dec[indices[t, j]] · grad[t]` for every position and slot: f64 `[T][k]`.
pub fn latent_grads(sae: &Sae, indices: &Tensor, grad: &Tensor) -> Result<Vec<Vec<f64>>> {
    let (rows, k) = indices.dims2()?;
    let d = sae.d_in();
    if grad.dims() != [rows, d] {
        bail!(
            "gradient at the SAE output has shape {:?}, expected [{rows}, {d}]",
            grad.dims()
        );
    }
    let per_row = (k * d * sae.dtype().size_in_bytes()).max(1);
    let block = (DECODE_BUDGET_BYTES / per_row).clamp(1, 4096);
    let mut out = Vec::with_capacity(rows);
    for start in (0..rows).step_by(block) {
        let len = block.min(rows - start);
        let ids = indices.narrow(0, start, len)?.flatten_all()?;
        let dec = sae.w_dec().index_select(&ids, 0)?.reshape((len, k, d))?;
        let g = grad
            .narrow(0, start, len)?
            .to_dtype(sae.dtype())?
            .unsqueeze(2)?;
        let dz = dec
            .matmul(&g)
            .context("gathering decoder rows against the gradient")?
            .squeeze(2)?
            .to_dtype(DType::F64)?;
        out.extend(dz.to_vec2::<f64>()?);
    }
    Ok(out)
}

/// Move codes to the host.
pub fn host_codes(codes: &SparseCodes) -> Result<HostCodes> {
    Ok(HostCodes {
        values: codes.values.to_dtype(DType::F32)?.to_vec2()?,
        indices: codes.indices.to_vec2()?,
    })
}

/// Mean over rows of `‖a_r‖ / ‖b_r‖` (rows of zero norm count as 0).
fn mean_rel_norm(a: &Tensor, b: &Tensor) -> Result<f64> {
    let norm = |t: &Tensor| -> Result<Vec<f64>> {
        Ok(t.to_dtype(DType::F64)?.sqr()?.sum(1)?.sqrt()?.to_vec1()?)
    };
    let (na, nb) = (norm(a)?, norm(b)?);
    let n = na.len().max(1) as f64;
    Ok(na
        .iter()
        .zip(&nb)
        .map(|(x, y)| if *y > 0.0 { x / y } else { 0.0 })
        .sum::<f64>()
        / n)
}

/// `logit(answer) − logit(baseline)` of `[1, 1, vocab]` last-position logits, kept in the graph.
pub fn logit_diff(logits: &Tensor, answer: u32, baseline: u32) -> Result<Tensor> {
    let row = logits.flatten_all()?;
    let vocab = row.dim(0)?;
    for id in [answer, baseline] {
        if id as usize >= vocab {
            bail!("token {id} is outside the model's {vocab} logits");
        }
    }
    Ok((row.get(answer as usize)? - row.get(baseline as usize)?)?)
}
