//! Dense supervision of the sample model's image tokens: two linear heads read the colour and
//! the shape under every patch from the projector's output, and their loss teaches the vision
//! tower and projector to carry both into the language model. The heads are training aids only;
//! the checkpoint never holds them.

use anyhow::Result;
use candle_core::{D, DType, Device, Tensor};
use candle_nn::{Linear, Module, VarBuilder, VarMap};

use super::patch_labels::{LABEL_CLASSES, PatchLabels};

/// The two heads over image-token features of width `hidden`.
pub struct PatchProbe {
    vars: VarMap,
    colour: Linear,
    shape: Linear,
}

/// Cross-entropy of both heads, and how many patches each got right.
pub struct ProbeLoss {
    /// Mean of the colour and shape cross-entropies over every patch.
    pub loss: Tensor,
    /// Patches on objects whose colour was read right.
    pub colour_right: usize,
    /// Patches on objects whose shape was read right.
    pub shape_right: usize,
    /// Patches on objects.
    pub on_objects: usize,
}

impl PatchProbe {
    /// Heads for features of width `hidden`, initialised from `seed`'s stream.
    pub fn new(hidden: usize, seed: u64) -> Result<Self> {
        let vars = VarMap::new();
        let vb = VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu);
        // candle's default initialiser draws from its own global generator: seed the weights
        // here so a run is deterministic.
        let mut rng = crate::util::rng::SeededRng::for_name(seed, "train-model/probe");
        let colour = candle_nn::linear(hidden, LABEL_CLASSES, vb.pp("colour"))?;
        let shape = candle_nn::linear(hidden, LABEL_CLASSES, vb.pp("shape"))?;
        let scale = 1.0 / (hidden as f32).sqrt();
        for var in vars.all_vars() {
            let n = var.elem_count();
            let values: Vec<f32> = (0..n).map(|_| rng.normal() as f32 * scale).collect();
            var.set(&Tensor::from_vec(values, var.shape(), &Device::Cpu)?)?;
        }
        Ok(Self {
            vars,
            colour,
            shape,
        })
    }

    /// The heads' variables, for the optimizer.
    pub fn vars(&self) -> Vec<candle_core::Var> {
        self.vars.all_vars()
    }

    /// The loss of both heads on `views` (`[views, patches, hidden]`, the projector's output)
    /// against `labels`.
    pub fn loss(&self, views: &Tensor, labels: &PatchLabels) -> Result<ProbeLoss> {
        let hidden = views.dim(D::Minus1)?;
        let flat = views.reshape(((), hidden))?.to_dtype(DType::F32)?;
        let colour = self.colour.forward(&flat)?;
        let shape = self.shape.forward(&flat)?;
        let (want_colour, want_shape) = (labels.colour_tensor()?, labels.shape_tensor()?);
        let weights = balanced_weights(labels)?;
        let loss = ((weighted_cross_entropy(&colour, &want_colour, &weights)?
            + weighted_cross_entropy(&shape, &want_shape, &weights)?)?
            * 0.5)?;
        let got_colour = colour.argmax(D::Minus1)?.to_vec1::<u32>()?;
        let got_shape = shape.argmax(D::Minus1)?.to_vec1::<u32>()?;
        let on = || (0..labels.colour.len()).filter(|&i| labels.colour[i] != 0);
        Ok(ProbeLoss {
            loss,
            colour_right: on().filter(|&i| got_colour[i] == labels.colour[i]).count(),
            shape_right: on().filter(|&i| got_shape[i] == labels.shape[i]).count(),
            on_objects: labels.on_objects(),
        })
    }
}

/// Per-patch weights giving the patches on objects and the background half the loss each:
/// objects cover a tenth of an image or less, and unweighted the heads learn to say background.
fn balanced_weights(labels: &PatchLabels) -> Result<Tensor> {
    let n = labels.colour.len();
    let on = labels.on_objects();
    let (w_on, w_off) = match (on, n - on) {
        (0, _) => (0.0, 1.0 / n as f32),
        (_, 0) => (1.0 / n as f32, 0.0),
        (on, off) => (0.5 / on as f32, 0.5 / off as f32),
    };
    let w: Vec<f32> = labels
        .colour
        .iter()
        .map(|&c| if c == 0 { w_off } else { w_on })
        .collect();
    Ok(Tensor::new(w, &Device::Cpu)?)
}

/// `sum_i weights_i * -log softmax(logits_i)[target_i]` (weights summing to one).
fn weighted_cross_entropy(logits: &Tensor, targets: &Tensor, weights: &Tensor) -> Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let picked = logp.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?;
    Ok((picked * weights)?.sum_all()?.neg()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heads_learn_separable_labels() {
        // Features that carry their labels in two coordinates: the heads must read them.
        let labels = PatchLabels {
            colour: (0..64).map(|i| (i % 7) as u32).collect(),
            shape: (0..64).map(|i| ((i / 7) % 7) as u32).collect(),
        };
        let mut feats = vec![0f32; 64 * 16];
        for i in 0..64 {
            feats[i * 16 + labels.colour[i] as usize] = 3.0;
            feats[i * 16 + 8 + labels.shape[i] as usize] = 3.0;
        }
        let views = Tensor::from_vec(feats, (1, 64, 16), &Device::Cpu).unwrap();
        let probe = PatchProbe::new(16, 0).unwrap();
        let mut opt = <candle_nn::AdamW as candle_nn::Optimizer>::new(
            probe.vars(),
            candle_nn::ParamsAdamW {
                lr: 0.05,
                ..Default::default()
            },
        )
        .unwrap();
        let first = probe.loss(&views, &labels).unwrap();
        for _ in 0..100 {
            let l = probe.loss(&views, &labels).unwrap();
            candle_nn::Optimizer::backward_step(&mut opt, &l.loss).unwrap();
        }
        let last = probe.loss(&views, &labels).unwrap();
        let value = |l: &ProbeLoss| l.loss.to_scalar::<f32>().unwrap();
        assert!(value(&last) < 0.2 * value(&first));
        assert_eq!(last.colour_right, last.on_objects);
        assert_eq!(last.shape_right, last.on_objects);
        assert!(first.colour_right.min(first.shape_right) < first.on_objects);
    }
}
