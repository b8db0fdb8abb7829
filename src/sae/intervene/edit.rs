//! The intervention as the layer tap's edit: scope masks per call, the three modes' arithmetic.

use anyhow::{Context, Result, bail};
use candle_core::{DType, Tensor};

use super::{Direction, EditStats, Intervention, Mode};
use crate::model::llava_next::SequenceMap;
use crate::model::tap::{TapEdit, TapSite};
use crate::sae::{Sae, SparseCodes};

/// An intervention bound to an SAE and a prompt, usable as the layer tap's edit.
pub struct SteerEdit<'a> {
    sae: &'a Sae,
    iv: &'a Intervention,
    prompt: &'a SequenceMap,
    feats: Tensor,
    /// The edits' target values `[f]` (f32), on the SAE's device.
    targets: Tensor,
    /// Whether no target is below zero (edited rows then stay valid activations).
    targets_non_negative: bool,
    dirs: Tensor,
    stats: EditStats,
    pending: Pending,
}

/// Device-side records of past edits, folded into the statistics only when they are read:
/// copying them to the host inside each step would make every decode step wait for the device
/// halfway through its layers.
#[derive(Default)]
struct Pending {
    /// `replace` blocks: scope mask, the edited features' original pre-activations, and the
    /// block's top-k values and indices after the edit.
    replaced: Vec<(Vec<bool>, Tensor, Tensor, Tensor)>,
    /// Row norms of each edit's change and of the rows it changed.
    changes: Vec<(Tensor, Tensor)>,
    /// Per edited block, a scalar that is NaN when a row of the result is not finite or its
    /// squared norm overflows f32 (RMSNorm would then turn it into zeros without a word).
    overflow: Vec<Tensor>,
}

impl<'a> SteerEdit<'a> {
    /// Validate `iv` against `sae` and precompute its decoder directions.
    pub fn new(sae: &'a Sae, iv: &'a Intervention, prompt: &'a SequenceMap) -> Result<Self> {
        iv.validate(sae)?;
        let ids: Vec<u32> = iv.edits.iter().map(|e| e.0).collect();
        let feats = Tensor::new(ids.as_slice(), sae.device())?;
        let values: Vec<f32> = iv.edits.iter().map(|e| e.1).collect();
        let targets = Tensor::new(values.as_slice(), sae.device())?;
        let mut dirs = sae.w_dec().index_select(&feats, 0)?;
        if iv.mode == Mode::Add && iv.direction == Direction::Unit {
            let norms = dirs.sqr()?.sum_keepdim(1)?.sqrt()?;
            let host: Vec<f32> = norms.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
            if let Some(i) = host.iter().position(|&n| n.is_nan() || n <= 0.0) {
                bail!(
                    "feature {}: its decoder row has zero length, so it has no unit direction",
                    ids[i]
                );
            }
            dirs = dirs.broadcast_div(&norms)?;
        }
        Ok(Self {
            sae,
            iv,
            prompt,
            feats,
            targets,
            targets_non_negative: values.iter().all(|v| *v >= 0.0),
            dirs,
            stats: EditStats::new(iv),
            pending: Pending::default(),
        })
    }

    /// Totals so far (copies the pending device-side records to the host first).
    pub fn stats(&mut self) -> Result<&EditStats> {
        self.settle()?;
        Ok(&self.stats)
    }

    /// The final totals.
    pub fn into_stats(mut self) -> Result<EditStats> {
        self.settle()?;
        Ok(self.stats)
    }

    fn settle(&mut self) -> Result<()> {
        let flags = std::mem::take(&mut self.pending.overflow);
        if !flags.is_empty() {
            let flags = Tensor::stack(&flags, 0)?.to_vec1::<f32>()?;
            if flags.iter().any(|v| !v.is_finite()) {
                bail!(
                    "steering {} ({}) made the residual non-finite (NaN or infinity, or too \
                     large for the model's arithmetic); lower the strength",
                    self.describe(),
                    self.iv.mode
                );
            }
        }
        for (mask, orig, vals, ids) in std::mem::take(&mut self.pending.replaced) {
            let before = orig.to_dtype(DType::F32)?.to_vec2::<f32>()?;
            let vals = vals.to_dtype(DType::F32)?.to_vec2::<f32>()?;
            self.count_replace(&mask, &before, &vals, &ids.to_vec2::<u32>()?);
        }
        for (delta, base) in std::mem::take(&mut self.pending.changes) {
            let (d, b) = (delta.to_vec1::<f32>()?, base.to_vec1::<f32>()?);
            self.stats.rel_change_sum += d
                .iter()
                .zip(&b)
                .map(|(x, y)| if *y > 0.0 { f64::from(x / y) } else { 0.0 })
                .sum::<f64>();
        }
        Ok(())
    }

    /// "feature 3 at strength 50, feature 7 at strength 2", for messages.
    fn describe(&self) -> String {
        let parts: Vec<String> = self
            .iv
            .edits
            .iter()
            .map(|(f, v)| format!("feature {f} at strength {v}"))
            .collect();
        parts.join(", ")
    }

    /// Record whether `edited` stays finite for [`Self::settle`], without waiting for it.
    fn note_overflow(&mut self, edited: &Tensor) -> Result<()> {
        // 0·x is NaN exactly when x is NaN or infinite.
        let flag = (edited.to_dtype(DType::F32)?.sqr()?.sum(1)? * 0.0)?.sum_all()?;
        self.pending.overflow.push(flag);
        Ok(())
    }

    /// Record `Σ_rows ‖delta_r‖ / ‖base_r‖` for [`Self::settle`], without waiting for it.
    fn note_change(&mut self, delta: &Tensor, base: &Tensor) -> Result<()> {
        let norm =
            |t: &Tensor| -> Result<Tensor> { Ok(t.to_dtype(DType::F32)?.sqr()?.sum(1)?.sqrt()?) };
        self.pending.changes.push((norm(delta)?, norm(base)?));
        Ok(())
    }

    /// Edit `[rows, d]` residual rows; `mask` marks the scoped rows. `None` means unchanged.
    pub fn apply_rows(&mut self, h: &Tensor, mask: &[bool]) -> Result<Option<Tensor>> {
        let rows = h.dim(0)?;
        if mask.len() != rows {
            bail!(
                "scope mask has {} entries for {rows} residual rows",
                mask.len()
            );
        }
        self.stats.positions += rows as u64;
        self.stats.in_scope += mask.iter().filter(|&&m| m).count() as u64;
        let out = match self.iv.mode {
            Mode::Replace => self.replace(h, mask).map(Some),
            Mode::Clamp | Mode::Add => self.shift(h, mask),
        }?;
        if let Some(edited) = &out {
            self.note_overflow(edited)?;
        }
        Ok(out)
    }

    /// The original's hook: edit pre-activations at scoped rows, then reconstruct every row.
    fn replace(&mut self, h: &Tensor, mask: &[bool]) -> Result<Tensor> {
        let (rows, block, f) = (h.dim(0)?, self.sae.encode_block_rows(), self.iv.edits.len());
        let dev = self.sae.device();
        let mut parts = Vec::new();
        for start in (0..rows).step_by(block) {
            let len = block.min(rows - start);
            let m = &mask[start..start + len];
            let mut pre = self.sae.pre_acts(&h.narrow(0, start, len)?)?;
            let mut edited = None;
            if m.iter().any(|&b| b) {
                let orig = pre.index_select(&self.feats, 1)?;
                let idx = self
                    .feats
                    .unsqueeze(0)?
                    .broadcast_as((len, f))?
                    .contiguous()?;
                let target = self
                    .targets
                    .to_dtype(pre.dtype())?
                    .unsqueeze(0)?
                    .broadcast_as((len, f))?;
                // A fully scoped block (every decode step) needs no host-made selection.
                let new = if m.iter().all(|&b| b) {
                    target.contiguous()?
                } else {
                    let sel: Vec<u8> = m.iter().map(|&b| u8::from(b)).collect();
                    let sel = Tensor::from_vec(sel, (len, 1), dev)?.broadcast_as((len, f))?;
                    sel.where_cond(&target, &orig)?.contiguous()?
                };
                pre = pre.scatter(&idx, &new, 1)?;
                edited = Some(orig);
            }
            let (vals, ids) =
                self.sae
                    .topk_of_acts(&pre, self.sae.k(), self.targets_non_negative)?;
            if let Some(orig) = edited {
                let record = (m.to_vec(), orig, vals.clone(), ids.clone());
                self.pending.replaced.push(record);
            }
            parts.push(self.sae.decode(&SparseCodes {
                values: vals,
                indices: ids,
            })?);
        }
        let x_hat = Tensor::cat(&parts, 0)?.to_dtype(h.dtype())?;
        if mask.iter().all(|&b| b) {
            self.note_change(&(&x_hat - h)?, h)?;
        } else if let Some(idx) = scoped_index(mask, h)? {
            let diff = (x_hat.index_select(&idx, 0)? - h.index_select(&idx, 0)?)?;
            self.note_change(&diff, &h.index_select(&idx, 0)?)?;
        }
        Ok(x_hat)
    }

    fn count_replace(
        &mut self,
        mask: &[bool],
        before: &[Vec<f32>],
        vals: &[Vec<f32>],
        ids: &[Vec<u32>],
    ) {
        for (r, _) in mask.iter().enumerate().filter(|(_, m)| **m) {
            let kth = vals[r].last().copied().unwrap_or(0.0);
            for (j, e) in self.stats.features.iter_mut().enumerate() {
                let kept = ids[r].contains(&e.feature);
                let orig = before[r][j];
                // Dropped: the row holds the other latents only, so the original held f iff it beat the k-th.
                let changed = if kept { orig != e.value } else { orig > kth };
                e.changed += u64::from(changed);
                e.dropped += u64::from(!kept);
                e.kth_sum += f64::from(kth);
            }
        }
    }

    /// `clamp` and `add`: `h + coef · dirs` at scoped rows, other rows untouched.
    fn shift(&mut self, h: &Tensor, mask: &[bool]) -> Result<Option<Tensor>> {
        let Some(idx) = scoped_index(mask, h)? else {
            return Ok(None);
        };
        let hs = h.index_select(&idx, 0)?;
        let (r, f) = (idx.dim(0)?, self.iv.edits.len());
        let coef: Vec<f32> = match self.iv.mode {
            Mode::Clamp => {
                let codes = self.sae.encode(&hs)?;
                let (vals, ids) = (
                    codes.values.to_vec2::<f32>()?,
                    codes.indices.to_vec2::<u32>()?,
                );
                let mut coef = Vec::with_capacity(r * f);
                for (vrow, irow) in vals.iter().zip(&ids) {
                    for &(feat, k) in &self.iv.edits {
                        let a = irow
                            .iter()
                            .position(|&i| i == feat)
                            .map_or(0.0, |p| vrow[p]);
                        coef.push(k - a);
                    }
                }
                coef
            }
            _ => (0..r)
                .flat_map(|_| self.iv.edits.iter().map(|e| e.1))
                .collect(),
        };
        for (j, e) in self.stats.features.iter_mut().enumerate() {
            e.changed += coef
                .iter()
                .skip(j)
                .step_by(f)
                .filter(|&&c| c != 0.0)
                .count() as u64;
        }
        if coef.iter().all(|&c| c == 0.0) {
            return Ok(None);
        }
        let dev = self.sae.device();
        let delta = Tensor::from_vec(coef, (r, f), dev)?
            .to_dtype(self.dirs.dtype())?
            .matmul(&self.dirs)?
            .to_dtype(h.dtype())?;
        self.note_change(&delta, &hs)?;
        Ok(Some(h.index_add(&idx, &delta, 0)?))
    }
}

/// Row indices of the scoped rows on `like`'s device, or `None` when there are none.
fn scoped_index(mask: &[bool], like: &Tensor) -> Result<Option<Tensor>> {
    let rows: Vec<u32> = mask
        .iter()
        .enumerate()
        .filter(|(_, m)| **m)
        .map(|(i, _)| i as u32)
        .collect();
    if rows.is_empty() {
        return Ok(None);
    }
    Ok(Some(Tensor::new(rows.as_slice(), like.device())?))
}

impl TapEdit for SteerEdit<'_> {
    fn edit(&mut self, residual: &Tensor, site: &TapSite) -> candle_core::Result<Option<Tensor>> {
        let (b, t, d) = residual.dims3()?;
        let mask: Vec<bool> = self.iv.scope.mask(site, self.prompt).repeat(b);
        let flat = residual.reshape((b * t, d))?;
        let out = self
            .apply_rows(&flat, &mask)
            .with_context(|| format!("steering at positions {}..{}", site.start, site.start + t))
            .map_err(|e| candle_core::Error::Msg(format!("{e:#}")))?;
        out.map(|x| x.reshape((b, t, d))).transpose()
    }
}
