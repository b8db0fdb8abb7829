//! The training stream: items (images) yield rows (tokens), gathered into a bounded buffer of
//! whole items, shuffled, and cut into batches. The order is a pure function of the seed, so a
//! position `(epoch, chunk, batch)` is enough to rebuild it after a restart.

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::util::rng::SeededRng;

/// Where training rows come from: a list of items, each yielding a known number of rows.
pub trait RowSource {
    /// Width of every row.
    fn d_in(&self) -> usize;
    /// Number of items.
    fn len(&self) -> usize;
    /// Whether there are no items.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Rows `item` will yield, without computing them (used to plan chunks and steps).
    fn count(&mut self, item: usize) -> Result<usize>;
    /// The rows of `item`, row-major f32 `[count, d_in]`.
    fn rows(&mut self, item: usize) -> Result<Vec<f32>>;
    /// How errors name `item` (e.g. its file).
    fn name(&self, item: usize) -> String;
}

/// A position in the stream: the next batch to train on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Position {
    /// Pass over the training items.
    pub epoch: u64,
    /// Chunk (buffer fill) within the epoch.
    pub chunk: usize,
    /// Batch within the chunk.
    pub batch: usize,
}

/// One buffer fill: whole items and how their rows split into batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Items, in load order.
    pub items: Vec<usize>,
    /// Rows of all its items.
    pub rows: usize,
    /// Batches cut from it.
    pub batches: usize,
}

impl Chunk {
    /// Half-open row range of batch `b` in the shuffled chunk; sizes differ by at most one and
    /// lie between `batch_rows` and `2 * batch_rows` (fewer only for a chunk smaller than a batch).
    pub fn batch_range(&self, b: usize) -> (usize, usize) {
        (
            b * self.rows / self.batches,
            (b + 1) * self.rows / self.batches,
        )
    }
}

/// The row counts of the training items and the batching parameters.
#[derive(Debug, Clone)]
pub struct Plan {
    items: Vec<usize>,
    counts: Vec<usize>,
    batch_rows: usize,
    buffer_rows: usize,
    seed: u64,
}

impl Plan {
    /// Count the rows of `items` (indices into `source`).
    pub fn new(
        source: &mut dyn RowSource,
        items: Vec<usize>,
        batch_rows: usize,
        buffer_rows: usize,
        seed: u64,
    ) -> Result<Self> {
        if batch_rows == 0 {
            bail!("the batch size must be at least one token");
        }
        if buffer_rows < batch_rows {
            bail!(
                "the shuffle buffer ({buffer_rows} tokens) is smaller than a batch ({batch_rows} tokens)"
            );
        }
        if items.is_empty() {
            bail!("no training items: the dataset is empty (or every image is held out)");
        }
        let mut counts = vec![0; source.len()];
        for &i in &items {
            if i >= source.len() {
                bail!("training item {i} is out of range ({} items)", source.len());
            }
            counts[i] = source
                .count(i)
                .with_context(|| format!("counting tokens of {}", source.name(i)))?;
        }
        if items.iter().all(|&i| counts[i] == 0) {
            bail!("the training items yield no tokens of the selected kind (try another --tokens)");
        }
        Ok(Self {
            items,
            counts,
            batch_rows,
            buffer_rows,
            seed,
        })
    }

    /// Rows that `item` yields.
    pub fn count(&self, item: usize) -> usize {
        self.counts[item]
    }

    /// Total rows in one epoch.
    pub fn rows_per_epoch(&self) -> usize {
        self.items.iter().map(|&i| self.counts[i]).sum()
    }

    /// The chunks of epoch `epoch`: items in a seeded order, filled greedily up to the buffer
    /// size; a final chunk under half a buffer joins the one before it.
    pub fn epoch(&self, epoch: u64) -> Vec<Chunk> {
        let mut order = self.items.clone();
        SeededRng::for_name(self.seed, &format!("sae-train/epoch/{epoch}")).shuffle(&mut order);
        let mut groups: Vec<(Vec<usize>, usize)> = Vec::new();
        let mut current = (Vec::new(), 0usize);
        for item in order {
            current.0.push(item);
            current.1 += self.counts[item];
            if current.1 >= self.buffer_rows {
                groups.push(std::mem::take(&mut current));
            }
        }
        if !current.0.is_empty() {
            match groups.last_mut() {
                Some(last) if current.1 < self.buffer_rows / 2 => {
                    last.0.extend(current.0);
                    last.1 += current.1;
                }
                _ => groups.push(current),
            }
        }
        groups
            .into_iter()
            .filter(|(_, rows)| *rows > 0)
            .map(|(items, rows)| Chunk {
                items,
                rows,
                batches: (rows / self.batch_rows).max(1),
            })
            .collect()
    }

    /// Optimizer steps in the first `epochs` epochs.
    pub fn steps_in(&self, epochs: u64) -> u64 {
        (0..epochs)
            .map(|e| self.epoch(e).iter().map(|c| c.batches as u64).sum::<u64>())
            .sum()
    }

    /// The position after `pos` has been consumed, moving to the next chunk or epoch as needed.
    pub fn normalise(&self, pos: Position, chunks: &[Chunk]) -> Position {
        let mut pos = pos;
        if pos.chunk < chunks.len() && pos.batch >= chunks[pos.chunk].batches {
            pos = Position {
                chunk: pos.chunk + 1,
                batch: 0,
                ..pos
            };
        }
        if pos.chunk >= chunks.len() {
            pos = Position {
                epoch: pos.epoch + 1,
                chunk: 0,
                batch: 0,
            };
        }
        pos
    }

    /// Load `chunk` (chunk number `index` of `epoch`) and shuffle its rows.
    pub fn load(
        &self,
        source: &mut dyn RowSource,
        chunk: &Chunk,
        epoch: u64,
        index: usize,
    ) -> Result<Buffer> {
        let d = source.d_in();
        let mut rows = Vec::with_capacity(chunk.rows * d);
        for &item in &chunk.items {
            let got = source
                .rows(item)
                .with_context(|| format!("reading activations of {}", source.name(item)))?;
            let expected = self.counts[item] * d;
            if got.len() != expected {
                bail!(
                    "{} yielded {} values but {} tokens of width {d} were planned; the dataset or \
                     model changed during training",
                    source.name(item),
                    got.len(),
                    self.counts[item]
                );
            }
            rows.extend_from_slice(&got);
        }
        let mut order: Vec<u32> = (0..chunk.rows as u32).collect();
        SeededRng::for_name(self.seed, &format!("sae-train/epoch/{epoch}/chunk/{index}"))
            .shuffle(&mut order);
        Ok(Buffer { rows, order, d })
    }
}

/// A loaded chunk: its rows and their shuffled order.
#[derive(Debug, Clone)]
pub struct Buffer {
    rows: Vec<f32>,
    order: Vec<u32>,
    d: usize,
}

impl Buffer {
    /// Shuffled rows `start..end` as an f32 `[end - start, d]` tensor on `device`.
    pub fn batch(&self, start: usize, end: usize, device: &Device) -> Result<Tensor> {
        let mut out = Vec::with_capacity((end - start) * self.d);
        for &r in &self.order[start..end] {
            let r = r as usize * self.d;
            out.extend_from_slice(&self.rows[r..r + self.d]);
        }
        Ok(Tensor::from_vec(out, (end - start, self.d), device)?)
    }

    /// All rows in load order, `[rows, d]`.
    pub fn all(&self, device: &Device) -> Result<Tensor> {
        Ok(Tensor::from_slice(
            &self.rows,
            (self.order.len(), self.d),
            device,
        )?)
    }
}

/// An in-memory source for tests and small experiments: item `i` is `items[i]`.
#[derive(Debug, Clone)]
pub struct VecSource {
    /// Row width.
    pub d: usize,
    /// Row-major rows per item.
    pub items: Vec<Vec<f32>>,
}

impl RowSource for VecSource {
    fn d_in(&self) -> usize {
        self.d
    }
    fn len(&self) -> usize {
        self.items.len()
    }
    fn count(&mut self, item: usize) -> Result<usize> {
        Ok(self.items[item].len() / self.d)
    }
    fn rows(&mut self, item: usize) -> Result<Vec<f32>> {
        Ok(self.items[item].clone())
    }
    fn name(&self, item: usize) -> String {
        format!("item {item}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(counts: &[usize]) -> VecSource {
        let items = counts
            .iter()
            .enumerate()
            .map(|(i, &c)| (0..c * 2).map(|j| (i * 1000 + j) as f32).collect())
            .collect();
        VecSource { d: 2, items }
    }

    #[test]
    fn chunks_cover_every_item_once_and_batches_cover_every_row() {
        let mut src = source(&[5, 7, 3, 9, 4, 6, 2, 8]);
        let plan = Plan::new(&mut src, (0..8).collect(), 4, 12, 9).unwrap();
        for epoch in 0..3 {
            let chunks = plan.epoch(epoch);
            let mut seen: Vec<usize> = chunks.iter().flat_map(|c| c.items.clone()).collect();
            seen.sort();
            assert_eq!(seen, (0..8).collect::<Vec<_>>());
            for (ci, c) in chunks.iter().enumerate() {
                assert!(c.rows >= 6 || ci == 0, "{c:?}");
                let buf = plan.load(&mut src, c, epoch, ci).unwrap();
                let mut all = Vec::new();
                for b in 0..c.batches {
                    let (s, e) = c.batch_range(b);
                    assert!((4..8).contains(&(e - s)), "{s}..{e}");
                    all.extend(
                        buf.batch(s, e, &Device::Cpu)
                            .unwrap()
                            .to_vec2::<f32>()
                            .unwrap(),
                    );
                }
                assert_eq!(all.len(), c.rows);
                let mut firsts: Vec<f32> = all.iter().map(|r| r[0]).collect();
                firsts.sort_by(f32::total_cmp);
                firsts.dedup();
                assert_eq!(firsts.len(), c.rows, "each row exactly once");
            }
        }
        assert_ne!(plan.epoch(0), plan.epoch(1), "epochs are reshuffled");
        assert_eq!(plan.epoch(1), plan.epoch(1));
        assert_eq!(plan.rows_per_epoch(), 44);
        let steps: u64 = plan.epoch(0).iter().map(|c| c.batches as u64).sum();
        assert_eq!(plan.steps_in(1), steps);
    }

    #[test]
    fn positions_roll_over_chunks_and_epochs() {
        let mut src = source(&[4, 4]);
        let plan = Plan::new(&mut src, vec![0, 1], 4, 4, 0).unwrap();
        let chunks = plan.epoch(0);
        assert_eq!(chunks.len(), 2);
        let p = plan.normalise(
            Position {
                epoch: 0,
                chunk: 0,
                batch: 1,
            },
            &chunks,
        );
        assert_eq!(
            p,
            Position {
                epoch: 0,
                chunk: 1,
                batch: 0
            }
        );
        let p = plan.normalise(
            Position {
                epoch: 0,
                chunk: 1,
                batch: 1,
            },
            &chunks,
        );
        assert_eq!(
            p,
            Position {
                epoch: 1,
                chunk: 0,
                batch: 0
            }
        );
    }

    #[test]
    fn bad_plans_are_explained() {
        let mut src = source(&[0, 0]);
        let err = Plan::new(&mut src, vec![0, 1], 4, 8, 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no tokens"), "{err}");
        let err = Plan::new(&mut src, vec![], 4, 8, 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("empty"), "{err}");
        let err = Plan::new(&mut src, vec![0], 8, 4, 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("smaller than a batch"), "{err}");
        let mut src = source(&[3]);
        let plan = Plan::new(&mut src, vec![0], 2, 4, 0).unwrap();
        src.items[0].pop();
        let chunk = &plan.epoch(0)[0];
        let err = plan.load(&mut src, chunk, 0, 0).unwrap_err().to_string();
        assert!(err.contains("item 0 yielded 5 values"), "{err}");
    }
}
