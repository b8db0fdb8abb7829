//! Keys and values of every decoder layer seen so far, for incremental decoding.
//!
//! Each layer's keys and values live in one zero-filled buffer with room to spare, written in
//! place as positions arrive, so a decode step copies one position instead of the whole cache
//! (what concatenating would do, twice per layer per token). Views handed to attention are
//! padded with the buffer's zeros to the key alignment the attention kernels want.

use candle_core::{Result, Tensor};

/// Positions reserved beyond what is needed when a buffer (re)grows.
const HEADROOM: usize = 512;

/// Buffer lengths are multiples of this, so any key alignment up to it is a free view.
const GRANULE: usize = 64;

/// One layer's keys and values: `[b, kv_heads, capacity, head_dim]` each, `len` filled.
struct LayerKv {
    k: Tensor,
    v: Tensor,
    len: usize,
}

impl LayerKv {
    fn capacity(&self) -> usize {
        self.k.dims()[2]
    }

    /// A buffer of `capacity` positions holding the first `len` of `self`.
    fn regrow(&self, capacity: usize) -> Result<Self> {
        let grow = |x: &Tensor| -> Result<Tensor> {
            let (b, h, _, d) = x.dims4()?;
            let fresh = Tensor::zeros((b, h, capacity, d), x.dtype(), x.device())?;
            if self.len > 0 {
                fresh.slice_set(&x.narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
            }
            Ok(fresh)
        };
        Ok(Self {
            k: grow(&self.k)?,
            v: grow(&self.v)?,
            len: self.len,
        })
    }
}

/// Keys and values of every layer seen so far; a cache records no backward.
#[derive(Default)]
pub struct KvCache {
    layers: Vec<Option<LayerKv>>,
}

impl KvCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of positions cached (0 when empty).
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map_or(0, |l| l.len)
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An independent copy of the buffers (appending to one leaves the other as it was).
    pub fn try_clone(&self) -> Result<Self> {
        let layers = self
            .layers
            .iter()
            .map(|l| {
                l.as_ref()
                    .map(|l| {
                        Ok(LayerKv {
                            k: l.k.copy()?,
                            v: l.v.copy()?,
                            len: l.len,
                        })
                    })
                    .transpose()
            })
            .collect::<Result<_>>()?;
        Ok(Self { layers })
    }

    /// Make room for `n` layers (dropping any cached positions when the count changes).
    pub(crate) fn ensure_layers(&mut self, n: usize) {
        if self.layers.len() != n {
            self.layers = (0..n).map(|_| None).collect();
        }
    }

    /// Append `[b, kv_heads, t, d]` keys and values to `layer` and return views of everything
    /// cached, padded with zeros to a multiple of `align` positions.
    pub(crate) fn append(
        &mut self,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
        align: usize,
    ) -> Result<(Tensor, Tensor)> {
        let Some(slot) = self.layers.get_mut(layer) else {
            candle_core::bail!("KV cache has no layer {layer}");
        };
        let t = k.dim(2)?;
        let entry = match slot.take() {
            Some(e) => e,
            None => LayerKv {
                k: k.narrow(2, 0, 0)?,
                v: v.narrow(2, 0, 0)?,
                len: 0,
            },
        };
        let align = align.clamp(1, GRANULE);
        let needed = (entry.len + t).next_multiple_of(align);
        let mut entry = if needed > entry.capacity() || entry.len == 0 {
            entry.regrow((entry.len + t + HEADROOM).next_multiple_of(GRANULE))?
        } else {
            entry
        };
        entry.k.slice_set(&k.contiguous()?, 2, entry.len)?;
        entry.v.slice_set(&v.contiguous()?, 2, entry.len)?;
        entry.len += t;
        let visible = entry.len.next_multiple_of(align);
        let views = (
            entry.k.narrow(2, 0, visible)?,
            entry.v.narrow(2, 0, visible)?,
        );
        *slot = Some(entry);
        Ok(views)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn block(start: f32, t: usize) -> Tensor {
        Tensor::arange(start, start + (2 * t * 3) as f32, &Device::Cpu)
            .unwrap()
            .reshape((1, 2, t, 3))
            .unwrap()
    }

    #[test]
    fn appends_equal_concatenation_and_pad_with_zeros() {
        let mut cache = KvCache::new();
        cache.ensure_layers(1);
        let (a, b) = (block(0.0, 5), block(100.0, 1));
        cache.append(0, &a, &a, 1).unwrap();
        let (k, v) = cache.append(0, &b, &b, 8).unwrap();
        assert_eq!(cache.len(), 6);
        assert_eq!(k.dims(), [1, 2, 8, 3]);
        let want = Tensor::cat(&[&a, &b], 2).unwrap();
        let got = k.narrow(2, 0, 6).unwrap();
        let diff = (got - &want).unwrap().abs().unwrap().sum_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
        let pad = v.narrow(2, 6, 2).unwrap().abs().unwrap().sum_all().unwrap();
        assert_eq!(pad.to_scalar::<f32>().unwrap(), 0.0);
    }

    #[test]
    fn grows_past_its_headroom_and_copies_are_independent() {
        let mut cache = KvCache::new();
        cache.ensure_layers(2);
        let first = block(0.0, 4);
        for layer in 0..2 {
            cache.append(layer, &first, &first, 1).unwrap();
        }
        let snapshot = cache.try_clone().unwrap();
        let long = Tensor::ones((1, 2, HEADROOM + 10, 3), DType::F32, &Device::Cpu).unwrap();
        let (k, _) = cache.append(0, &long, &long, 1).unwrap();
        assert_eq!(k.dims()[2], 4 + HEADROOM + 10);
        let sum = k.sum_all().unwrap().to_scalar::<f32>().unwrap();
        let first_sum = first.sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(sum, first_sum + (2 * (HEADROOM + 10) * 3) as f32);
        // The snapshot still holds 4 positions and takes its own appends.
        let mut snap = snapshot;
        assert_eq!(snap.len(), 4);
        let (k2, _) = snap.append(0, &block(7.0, 1), &block(7.0, 1), 1).unwrap();
        assert_eq!(k2.dims()[2], 5);
        assert_eq!(cache.len(), 4 + HEADROOM + 10);
    }
}
