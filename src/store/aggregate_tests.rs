use std::process::Command;
use std::time::{Duration, Instant};

use half::f16;

use super::super::manifest::tests::manifest;
use super::super::range_sample::offer_sample;
use super::super::records::key_id;
use super::super::testutil::{build, dump, feed, listed_features, synth};
use super::super::{HIST_LEN, hist_bin};
use super::*;
use crate::util::rng::SeededRng;

fn record(index: u32) -> ImageRecord {
    ImageRecord {
        index,
        id: format!("{index}"),
        path: String::new(),
        width: 8,
        height: 8,
        layout: None,
        n_tokens: 40,
        top_features: Vec::new(),
    }
}

#[test]
fn top_n_order_ties_and_evictions() {
    let tmp = tempfile::tempdir().unwrap();
    // No range sample, which would keep some evicted images.
    let m = Manifest {
        range_sample: 0,
        ..manifest(4, 3, RankRule::Max)
    };
    let store = Store::create(tmp.path(), &m).unwrap();
    let mut agg = Aggregator::from_manifest(&m).unwrap();
    let peaks = [1.0, 2.0, 1.0, 2.0, 0.5, 3.0];
    for (i, &v) in peaks.iter().enumerate() {
        let acts = [(3u16, 0u32, v), (20, 0, v / 2.0), (5, 1, 0.1)];
        agg.add_image(record(i as u32), &acts, 16, 30).unwrap();
        if i == 2 {
            agg.commit(&store).unwrap();
        }
    }
    agg.finish(&store).unwrap();
    assert_eq!(agg.top_list(0), &[(3.0, 5), (2.0, 1), (2.0, 3)]);
    let ex = store.top_examples(0).unwrap();
    assert_eq!(
        ex.iter().map(|e| e.image).collect::<Vec<_>>(),
        vec![5, 1, 3]
    );
    assert_eq!(
        ex[0].tokens,
        vec![(3, f16::from_f32(3.0)), (20, f16::from_f32(1.5))]
    );
    assert_eq!(ex[0].mean_base, 3.0 / 16.0);
    // Image 0 and 2 entered at the first commit and were evicted later: they are not answered.
    for gone in [0, 2, 4] {
        assert!(store.example(0, gone).unwrap().is_none(), "image {gone}");
    }
    // One top record per feature that fired, holding exactly the listed examples.
    let tops = listed_features(&store);
    assert_eq!(tops, vec![0, 1]);
    assert_eq!(store.top_examples(1).unwrap().len(), 3);
    assert_eq!(store.example(0, 3).unwrap().as_ref(), Some(&ex[2]));
    assert!(store.example(2, 3).unwrap().is_none());
    // Feature 1 ties everywhere: the lowest image indices win.
    assert_eq!(
        store.top_list(1).unwrap(),
        vec![(0.1, 0), (0.1, 1), (0.1, 2)]
    );
    assert_eq!(
        store.image(5).unwrap().unwrap().top_features,
        vec![(0, 3.0), (1, 0.1)]
    );
}

#[test]
fn mean_base_and_max_pick_different_images() {
    let spike = [(20u16, 7u32, 9.0f32), (0, 7, 0.5)]; // one strong tile token
    let broad: Vec<(u16, u32, f32)> = (0..16).map(|t| (t, 7, 1.0)).collect(); // whole base view
    let mut winners = Vec::new();
    for rank in [RankRule::Max, RankRule::MeanBase] {
        let mut agg = Aggregator::new(8, 1, rank, FeatureFilter::All).unwrap();
        agg.add_image(record(0), &spike, 16, 30).unwrap();
        agg.add_image(record(1), &broad, 16, 30).unwrap();
        winners.push(agg.top_list(7)[0]);
    }
    assert_eq!(winners, vec![(9.0, 0), (1.0, 1)]);
    let tmp = tempfile::tempdir().unwrap();
    let m = manifest(8, 2, RankRule::MeanBase);
    let store = Store::create(tmp.path(), &m).unwrap();
    let mut agg = Aggregator::from_manifest(&m).unwrap();
    agg.add_image(record(0), &spike, 16, 30).unwrap();
    agg.add_image(record(1), &broad, 16, 30).unwrap();
    agg.commit(&store).unwrap();
    let ex = store.top_examples(7).unwrap();
    assert_eq!(
        (ex[0].image, ex[0].score, ex[0].max, ex[0].mean_base),
        (1, 1.0, 1.0, 1.0)
    );
    assert_eq!(
        (ex[1].image, ex[1].score, ex[1].max, ex[1].mean_base),
        (0, 0.5 / 16.0, 9.0, 0.5 / 16.0)
    );
}

#[test]
fn statistics_histogram_and_density() {
    let tmp = tempfile::tempdir().unwrap();
    let m = manifest(4, 2, RankRule::Max);
    let store = Store::create(tmp.path(), &m).unwrap();
    let mut agg = Aggregator::from_manifest(&m).unwrap();
    agg.add_image(record(0), &[(0, 2, 0.5), (1, 2, 2.0), (2, 2, 1e-6)], 16, 30)
        .unwrap();
    agg.add_image(record(4), &[(9, 2, 1500.0)], 16, 50).unwrap();
    agg.add_image(record(6), &[(9, 1, 0.01)], 16, 20).unwrap();
    agg.finish(&store).unwrap();
    let s = store.feature_stats(2).unwrap().unwrap();
    assert_eq!(
        (s.fired_tokens, s.fired_images, s.sum, s.max),
        (3, 2, 1502.5, 1500.0)
    );
    assert_eq!(s.hist[hist_bin(0.5)], 1);
    assert_eq!(s.hist[hist_bin(2.0)], 1);
    assert_eq!(s.hist[HIST_LEN - 1], 1);
    assert_eq!(s.hist.iter().sum::<u32>(), 3);
    let p = store.progress().unwrap();
    assert_eq!(
        p,
        Progress {
            images: 3,
            tokens: 100,
            next_image: 7,
            complete: true,
            // Images without geometry: 16 base tokens each, the rest high-resolution.
            scored_by_position: Some([48, 52, 0, 0]),
        }
    );
    let tallies = s.by_position.unwrap().0;
    assert_eq!(tallies.map(|t| t.tokens), [3, 0, 0, 0]);
    assert_eq!(s.density(p.tokens), 0.03);
    assert!(store.feature_stats(0).unwrap().is_none());
    let feats: Vec<u32> = store.features().map(|r| r.unwrap().0).collect();
    assert_eq!(feats, vec![1, 2]);
    assert_eq!(
        store.images().map(|r| r.unwrap().index).collect::<Vec<_>>(),
        vec![0, 4, 6]
    );
}

#[test]
fn filter_limits_what_is_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let mut m = manifest(40, 4, RankRule::Max);
    m.features = FeatureFilter::list(vec![1, 5, 7]);
    let idx: Vec<u32> = (0..12).collect();
    let store = build(tmp.path(), &m, 3, &idx, 5);
    let feats: Vec<u32> = store.features().map(|r| r.unwrap().0).collect();
    assert!(
        !feats.is_empty() && feats.iter().all(|f| [1, 5, 7].contains(f)),
        "{feats:?}"
    );
    for f in listed_features(&store) {
        assert!([1, 5, 7].contains(&f));
    }
    for img in store.images() {
        assert!(
            img.unwrap()
                .top_features
                .iter()
                .all(|(f, _)| [1, 5, 7].contains(f))
        );
    }
    // Densities still count every scored token.
    let total: u64 = idx.iter().map(|&i| synth(3, i, 40).scored as u64).sum();
    assert_eq!(store.progress().unwrap().tokens, total);
}

#[test]
fn resume_after_lost_batch_equals_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let m = manifest(40, 5, RankRule::MeanBase);
    let idx: Vec<u32> = (0..60).map(|i| i * 2 + 1).collect();
    let whole = build(&tmp.path().join("whole"), &m, 9, &idx, 7);
    let dir = tmp.path().join("crashed");
    {
        let store = Store::create(&dir, &m).unwrap();
        let mut agg = Aggregator::from_manifest(&m).unwrap();
        feed(&mut agg, &store, 9, &idx[..25], 4); // commits after 24; image 25 is lost
        assert_eq!(agg.pending_images(), 1);
    }
    {
        let store = Store::open(&dir).unwrap();
        let mut agg = Aggregator::resume(&store).unwrap();
        let next = agg.progress().next_image;
        assert_eq!(next, idx[23] + 1);
        let rest: Vec<u32> = idx.iter().copied().filter(|&i| i >= next).collect();
        feed(&mut agg, &store, 9, &rest[..10], 3); // lost again after the last commit
    }
    let store = Store::open_or_create(&dir, &m).unwrap();
    let mut agg = Aggregator::resume(&store).unwrap();
    let next = agg.progress().next_image;
    let rest: Vec<u32> = idx.iter().copied().filter(|&i| i >= next).collect();
    feed(&mut agg, &store, 9, &rest, 5);
    agg.finish(&store).unwrap();
    let (a, b) = (dump(&whole), dump(&store));
    assert!(a.len() > 100);
    assert!(a == b, "resumed store differs from the uninterrupted one");
}

/// Child process of `killed_repeatedly_equals_uninterrupted_run`; inert without its variables.
#[test]
#[ignore = "run as a child process by killed_repeatedly_equals_uninterrupted_run"]
fn crash_child() {
    let Ok(dir) = std::env::var("GLINT_STORE_CRASH_DIR") else {
        return;
    };
    let n: u32 = std::env::var("GLINT_STORE_CRASH_N")
        .unwrap()
        .parse()
        .unwrap();
    let m = manifest(40, 5, RankRule::Max);
    let store = Store::open_or_create(std::path::Path::new(&dir), &m).unwrap();
    let mut agg = Aggregator::resume(&store).unwrap();
    let next = agg.progress().next_image;
    let rest: Vec<u32> = (next..n).collect();
    feed(&mut agg, &store, 5, &rest, 2);
    agg.finish(&store).unwrap();
}

#[test]
fn killed_repeatedly_equals_uninterrupted_run() {
    let n = 4000;
    let tmp = tempfile::tempdir().unwrap();
    let m = manifest(40, 5, RankRule::Max);
    let idx: Vec<u32> = (0..n).collect();
    let whole = build(&tmp.path().join("whole"), &m, 5, &idx, 2);
    let dir = tmp.path().join("killed");
    let exe = std::env::current_exe().unwrap();
    let mut rng = SeededRng::new(11);
    let (mut kills_midway, mut last_next) = (0, 0);
    let spawn = || {
        Command::new(&exe)
            .args([
                "store::aggregate::tests::crash_child",
                "--exact",
                "--ignored",
                "--test-threads=1",
            ])
            .env("GLINT_STORE_CRASH_DIR", &dir)
            .env("GLINT_STORE_CRASH_N", n.to_string())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    // Kill until three kills have landed between commits (slow machines may need more tries).
    for _ in 0..15 {
        let mut child = spawn();
        std::thread::sleep(Duration::from_millis(40 + rng.below(200)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let Ok(s) = Store::open(&dir) else { continue };
        let p = s.progress().unwrap();
        if p.complete {
            break;
        }
        kills_midway += usize::from(p.next_image > last_next);
        last_next = p.next_image;
        if kills_midway == 3 {
            break;
        }
    }
    assert!(spawn().wait().unwrap().success());
    assert!(
        kills_midway >= 2,
        "only {kills_midway} kills landed mid-run; recovery was not exercised"
    );
    let store = Store::open(&dir).unwrap();
    assert!(store.progress().unwrap().complete);
    assert!(
        dump(&whole) == dump(&store),
        "killed-and-resumed store differs"
    );
}

/// Example entries per block in the store's example records.
fn stored_per_block(store: &Store) -> Vec<u32> {
    let blocks = super::super::examples::num_blocks(store.manifest().num_latents);
    let mut out = vec![0; blocks];
    for kv in store.scan_raw(super::super::records::PREFIX_EXAMPLES) {
        let (k, v) = kv.unwrap();
        let block = key_id(super::super::records::PREFIX_EXAMPLES, &k).unwrap();
        let image = u32::from_be_bytes(k[k.len() - 4..].try_into().unwrap());
        out[block as usize] += super::super::examples::record_entries(&v, image)
            .unwrap()
            .len() as u32;
    }
    out
}

#[test]
fn compaction_drops_evicted_examples_and_keeps_the_store_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let m = manifest(200, 2, RankRule::Max);
    let idx: Vec<u32> = (0..90).collect();
    let store = Store::create(&tmp.path().join("a"), &m).unwrap();
    let mut agg = Aggregator::from_manifest(&m).unwrap();
    agg.compact_slack = 0;
    let (mut entered, mut most_stored) = (0usize, 0u32);
    for chunk in idx.chunks(3) {
        for &i in chunk {
            let s = synth(8, i, 200);
            agg.add_image(s.record, &s.acts, s.base, s.scored).unwrap();
        }
        entered += agg.new_examples.len();
        agg.commit(&store).unwrap();
        // The counts the store keeps are the entries its records hold.
        let actual = stored_per_block(&store);
        assert_eq!(actual, agg.stored);
        most_stored = most_stored.max(actual.iter().sum());
    }
    let listed: usize = (0..200).map(|f| agg.listed_images(f).count()).sum();
    assert!(
        (most_stored as usize) < entered && most_stored as usize <= 2 * listed + 3 * 2 * 64,
        "compaction kept {most_stored} of {entered} entered examples for {listed} listed"
    );
    agg.finish(&store).unwrap();
    let stored = stored_per_block(&store);
    assert_eq!(stored, agg.stored);
    assert!(
        stored.iter().sum::<u32>() as usize <= 2 * listed + 3 * 2 * 64,
        "the finished store keeps {stored:?} examples for {listed} listed"
    );
    for f in 0..200 {
        assert_eq!(store.top_examples(f).unwrap().len(), agg.top_list(f).len());
    }
    // Another commit cadence, without compaction, answers the same.
    let other = build(&tmp.path().join("b"), &m, 8, &idx, 7);
    assert!(
        dump(&store) == dump(&other),
        "store depends on its compaction history"
    );
}

#[test]
fn a_commit_is_written_only_onto_the_store_it_was_prepared_against() {
    let tmp = tempfile::tempdir().unwrap();
    let m = manifest(8, 2, RankRule::Max);
    let store = Store::create(tmp.path(), &m).unwrap();
    let mut a = Aggregator::from_manifest(&m).unwrap();
    a.add_image(record(0), &[(0, 1, 1.0)], 16, 30).unwrap();
    let stale = a.prepare_commit(&store).unwrap();
    assert_eq!(
        stale.keys(),
        7,
        "stats, top list, range sample, image, counts, progress, state pointer"
    );
    let mut b = Aggregator::from_manifest(&m).unwrap();
    b.add_image(record(5), &[(0, 1, 2.0)], 16, 30).unwrap();
    b.commit(&store).unwrap();
    let msg = format!("{:#}", stale.write(&store).unwrap_err());
    assert!(msg.contains("not at the commit"), "{msg}");
    assert_eq!(store.top_list(1).unwrap(), vec![(2.0, 5)]);
}

#[test]
fn bad_input_is_refused() {
    let mut agg = Aggregator::new(8, 2, RankRule::Max, FeatureFilter::All).unwrap();
    agg.add_image(record(3), &[(0, 1, 1.0)], 16, 30).unwrap();
    let msg = agg
        .add_image(record(2), &[], 16, 30)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("increasing index order"), "{msg}");
    let msg = agg
        .add_image(record(4), &[(0, 8, 1.0)], 16, 30)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("feature 8"), "{msg}");
    let msg = agg
        .add_image(record(4), &[(0, 1, f32::NAN)], 16, 30)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("NaN"), "{msg}");
    let msg = agg
        .add_image(record(4), &[(2, 1, 1.0), (2, 1, 2.0)], 16, 30)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("twice"), "{msg}");
    assert!(Aggregator::new(8, 0, RankRule::Max, FeatureFilter::All).is_err());
    assert!(Aggregator::new(8, 2, RankRule::Max, FeatureFilter::Range(4, 9)).is_err());
    // An aggregator configured differently from the store cannot commit to it.
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::create(tmp.path(), &manifest(8, 3, RankRule::Max)).unwrap();
    assert!(
        agg.commit(&store)
            .unwrap_err()
            .to_string()
            .contains("top_n")
    );
    let mut done = Aggregator::from_manifest(store.manifest()).unwrap();
    done.finish(&store).unwrap();
    assert!(
        done.add_image(record(0), &[], 16, 30)
            .unwrap_err()
            .to_string()
            .contains("complete")
    );
}

#[test]
fn memory_bound_matches_the_documented_formula() {
    let (l, n) = (131_072, 50);
    let bound = Aggregator::memory_bound(l, n, 0);
    assert!(bound <= (l * (8 * n + 542)) as u64, "{bound}");
    assert!(bound < 124_000_000, "{bound}");
    let s = 40;
    let bound = Aggregator::memory_bound(l, n, s);
    assert!(bound <= (l * (8 * (n + s) + 566)) as u64, "{bound}");
    assert!(bound < 169_000_000, "{bound}");
    // A full list keeps its exact allocation.
    let mut agg = Aggregator::new(4, 3, RankRule::Max, FeatureFilter::All).unwrap();
    for i in 0..10 {
        agg.add_image(record(i), &[(0, 2, i as f32 + 1.0)], 16, 30)
            .unwrap();
    }
    assert_eq!(agg.heaps[2].capacity(), 4);
    assert_eq!(agg.top_list(2), &[(10.0, 9), (9.0, 8), (8.0, 7)]);
}

/// The straightforward fold (one comparison sort of every activation) that [`Aggregator::add_image`]
/// must match exactly.
fn reference_add_image(
    agg: &mut Aggregator,
    mut image: ImageRecord,
    acts: &[(u16, u32, f32)],
    base_tokens: usize,
    n_scored_tokens: usize,
) -> Result<()> {
    let index = image.index;
    if agg.progress.complete {
        bail!("the store is marked complete; image {index} cannot be added");
    }
    if index < agg.progress.next_image {
        bail!(
            "image {index} arrived after image {}; images must come in increasing index order",
            agg.progress.next_image - 1
        );
    }
    let mut kept: Vec<(u32, u16, f32)> = Vec::new();
    for &(token, f, v) in acts {
        if f as usize >= agg.num_latents {
            bail!(
                "image {index}: feature {f} is past the SAE's {} latents",
                agg.num_latents
            );
        }
        if !v.is_finite() {
            bail!("image {index}: feature {f} at token {token} has activation {v}");
        }
        if v > ACTIVE_MIN && agg.filter.contains(f) {
            kept.push((f, token, v));
        }
    }
    kept.sort_unstable_by_key(|&(f, t, _)| (f, t));
    if let Some(w) = kept
        .windows(2)
        .find(|w| (w[0].0, w[0].1) == (w[1].0, w[1].1))
    {
        bail!(
            "image {index}: feature {} appears twice at token {}",
            w[0].0,
            w[0].1
        );
    }
    let mut strongest: Vec<(f32, u32)> = Vec::new();
    for group in kept.chunk_by(|a, b| a.0 == b.0) {
        let f = group[0].0;
        let max = group.iter().fold(0f32, |m, &(_, _, v)| m.max(v));
        let base_sum: f64 = group
            .iter()
            .filter(|&&(_, t, _)| usize::from(t) < base_tokens)
            .map(|&(_, _, v)| f64::from(v))
            .sum();
        let mean_base = if base_tokens == 0 {
            0.0
        } else {
            (base_sum / base_tokens as f64) as f32
        };
        let score = match agg.rank {
            RankRule::Max => max,
            RankRule::MeanBase => mean_base,
        };
        // The test records have no geometry: the base view, then high-resolution tokens.
        let slot = |t: u16| usize::from(usize::from(t) >= base_tokens);
        agg.stats[f as usize]
            .get_or_insert_with(FeatureStats::default)
            .add_image(group.iter().map(|&(_, t, v)| (slot(t), v)));
        agg.mark(f, DIRTY_STATS);
        strongest.push((max, f));
        let top = offer(&mut agg.heaps[f as usize], agg.top_n, score, index);
        let sample = offer_sample(
            &mut agg.samples[f as usize],
            agg.range_sample,
            f,
            score,
            index,
        );
        if top.is_some() {
            agg.mark(f, DIRTY_HEAP);
        }
        if sample.is_some() {
            agg.mark(f, DIRTY_RANGE);
        }
        if top.is_some() || sample.is_some() {
            let tokens = group
                .iter()
                .map(|&(_, t, v)| (t, f16::from_f32(v)))
                .collect();
            let example = Example {
                image: index,
                score,
                max,
                mean_base,
                tokens,
            };
            agg.new_examples.insert((f, index), example);
        }
        for old in [top, sample].into_iter().flatten().flatten() {
            let listed = |l: &[(f32, u32)]| l.iter().any(|&(_, i)| i == old);
            if !listed(&agg.heaps[f as usize]) && !listed(&agg.samples[f as usize]) {
                agg.new_examples.remove(&(f, old));
            }
        }
    }
    strongest.sort_unstable_by(|a, b| rank_order(*a, *b));
    strongest.truncate(IMAGE_TOP_FEATURES);
    image.top_features = strongest.into_iter().map(|(m, f)| (f, m)).collect();
    agg.new_images.push(image);
    let by_kind = agg.progress.scored_by_position.as_mut().unwrap();
    let base = base_tokens.min(n_scored_tokens);
    by_kind[0] += base as u64;
    by_kind[1] += (n_scored_tokens - base) as u64;
    agg.progress.images += 1;
    agg.progress.tokens += n_scored_tokens as u64;
    agg.progress.next_image = index + 1;
    Ok(())
}

/// Every piece of in-memory state that add_image touches.
fn assert_same_state(a: &Aggregator, b: &Aggregator, what: &str) {
    assert!(a.heaps == b.heaps, "{what}: top-N lists differ");
    assert!(a.samples == b.samples, "{what}: range samples differ");
    assert!(a.stats == b.stats, "{what}: statistics differ");
    assert!(a.dirty == b.dirty, "{what}: dirty marks differ");
    assert_eq!(a.dirty_list, b.dirty_list, "{what}: dirty order differs");
    assert!(a.new_examples == b.new_examples, "{what}: examples differ");
    assert_eq!(a.new_images, b.new_images, "{what}: image records differ");
    assert_eq!(a.progress, b.progress, "{what}: progress differs");
}

/// `tokens` x `k` activations over `num_latents` latents, a few hot; token-ordered or shuffled.
fn random_image(
    rng: &mut SeededRng,
    tokens: u16,
    k: usize,
    num_latents: u32,
    shuffled: bool,
) -> Vec<(u16, u32, f32)> {
    let hot: Vec<u32> = (0..8)
        .map(|_| rng.below(u64::from(num_latents)) as u32)
        .collect();
    let mut acts = Vec::with_capacity(usize::from(tokens) * k);
    let mut feats: Vec<u32> = Vec::with_capacity(k);
    for t in 0..tokens {
        feats.clear();
        while feats.len() < k {
            let f = if rng.uniform() < 0.2 {
                hot[rng.below(8) as usize]
            } else {
                rng.below(u64::from(num_latents)) as u32
            };
            if !feats.contains(&f) {
                feats.push(f);
            }
        }
        for &f in &feats {
            let v = match rng.below(8) {
                0 => 1e-6,
                1 => rng.range_f64(0.0005, 50.0) as f32,
                _ => (1 + rng.below(6)) as f32 * 0.5,
            };
            acts.push((t, f, v));
        }
    }
    if shuffled {
        rng.shuffle(&mut acts);
    }
    acts
}

#[test]
fn bucketed_fold_equals_reference_fold() {
    let (latents, tokens, k) = (4096u32, 300u16, 16);
    for (case, (rank, filter, threads)) in [
        (RankRule::Max, FeatureFilter::All, 1),
        (RankRule::MeanBase, FeatureFilter::All, 3),
        (RankRule::Max, FeatureFilter::Range(100, 3000), 4),
    ]
    .into_iter()
    .enumerate()
    {
        let tmp = tempfile::tempdir().unwrap();
        let mut m = manifest(latents as usize, 3, rank);
        m.features = filter;
        let (store_a, store_b) = (
            Store::create(&tmp.path().join("a"), &m).unwrap(),
            Store::create(&tmp.path().join("b"), &m).unwrap(),
        );
        let mut a = Aggregator::from_manifest(&m).unwrap();
        let mut b = Aggregator::from_manifest(&m).unwrap();
        // Small thresholds so the threaded split runs on these small images.
        (a.buckets.threads, a.buckets.min_per_thread) = (threads, 500);
        let mut rng = SeededRng::for_name(17, &format!("case{case}"));
        for i in 0..14u32 {
            let index = i * 3 + 1;
            let acts = random_image(&mut rng, tokens, k, latents, i % 2 == 1);
            a.add_image(record(index), &acts, 144, 280).unwrap();
            reference_add_image(&mut b, record(index), &acts, 144, 280).unwrap();
            assert_same_state(&a, &b, &format!("case {case} image {index}"));
            if i % 5 == 4 {
                a.commit(&store_a).unwrap();
                b.commit(&store_b).unwrap();
            }
        }
        assert!(a.new_examples.len() > 1000);
        // Bad input gives the same error and leaves the state alone.
        let mut bad = random_image(&mut rng, 50, 4, latents, true);
        bad.push((7, 200, 1.0));
        bad.push((3, 150, 2.0));
        bad.push((7, 200, 0.5));
        bad.push((3, 150, 0.5));
        let nan = [
            (1u16, 5u32, 1.0f32),
            (2, 5, f32::INFINITY),
            (0, latents, 1.0),
        ];
        let far = [(1u16, 5u32, 1.0f32), (0, latents, 1.0), (2, 5, f32::NAN)];
        for acts in [&bad[..], &nan[..], &far[..]] {
            let ea = a.add_image(record(100), acts, 144, 280).unwrap_err();
            let eb = reference_add_image(&mut b, record(100), acts, 144, 280).unwrap_err();
            assert_eq!(ea.to_string(), eb.to_string());
        }
        let late = reference_add_image(&mut b, record(2), &[], 144, 280).unwrap_err();
        assert_eq!(
            a.add_image(record(2), &[], 144, 280)
                .unwrap_err()
                .to_string(),
            late.to_string()
        );
        assert_same_state(&a, &b, &format!("case {case} after errors"));
        a.finish(&store_a).unwrap();
        b.finish(&store_b).unwrap();
        assert!(
            dump(&store_a) == dump(&store_b),
            "case {case}: stores differ"
        );
    }
}

/// Speed of add_image against the reference on the worst case of `glint --batch cache` (not a
/// timed test): `cargo test --release --lib -- --ignored --nocapture bench_aggregate`.
#[test]
#[ignore = "benchmark; run by hand with --release"]
fn bench_aggregate_add_image() {
    let (latents, tokens, k, images) = (131_072u32, 2880u16, 256, 6u32);
    let mut rng = SeededRng::new(5);
    let workload: Vec<Vec<(u16, u32, f32)>> = (0..images)
        .map(|_| random_image(&mut rng, tokens, k, latents, false))
        .collect();
    let mut times = Vec::new();
    let mut aggs = Vec::new();
    for reference in [true, false] {
        let mut agg =
            Aggregator::new(latents as usize, 50, RankRule::Max, FeatureFilter::All).unwrap();
        let t = Instant::now();
        for (i, acts) in workload.iter().enumerate() {
            if reference {
                reference_add_image(&mut agg, record(i as u32), acts, 576, 2880).unwrap();
            } else {
                agg.add_image(record(i as u32), acts, 576, 2880).unwrap();
            }
        }
        times.push(t.elapsed().as_secs_f64() / f64::from(images));
        aggs.push(agg);
    }
    assert_same_state(&aggs[0], &aggs[1], "benchmark");
    println!(
        "add_image, {tokens} tokens x top-{k} of {latents} latents, top_n 50, {} threads: \
         reference {:.1} ms/image, bucketed {:.1} ms/image, {:.2}x",
        aggs[1].buckets.threads,
        times[0] * 1e3,
        times[1] * 1e3,
        times[0] / times[1]
    );
}

/// Keys and time per commit on the worst case of `glint --batch cache` with a random SAE: every
/// one of 131072 features fires on every image, a few tokens each, so every image enters every
/// top-N list (not a timed test): `cargo test --lib -- --ignored --nocapture bench_commit`.
#[test]
#[ignore = "benchmark; run by hand"]
fn bench_commit_every_feature_fires() {
    let (latents, tokens, per_feature, images, every) = (131_072u32, 2880u64, 3, 48u32, 16);
    assert!(
        images <= 50,
        "the former layout's count assumes no evictions"
    );
    let tmp = tempfile::tempdir().unwrap();
    let m = manifest(latents as usize, 50, RankRule::Max);
    let store = Store::create(tmp.path(), &m).unwrap();
    let mut agg = Aggregator::from_manifest(&m).unwrap();
    let mut rng = SeededRng::new(23);
    let mut acts: Vec<(u16, u32, f32)> = Vec::with_capacity(latents as usize * per_feature);
    let mut add_s = 0.0;
    for i in 0..images {
        acts.clear();
        for f in 0..latents {
            let first = rng.below(tokens - per_feature as u64) as u16;
            for t in 0..per_feature as u16 {
                acts.push((first + t, f, rng.range_f64(0.01, 10.0) as f32));
            }
        }
        let t = Instant::now();
        agg.add_image(record(i), &acts, 576, tokens as usize)
            .unwrap();
        add_s += t.elapsed().as_secs_f64();
        if (i + 1) % every == 0 {
            // With at most top_n images nothing is evicted, so the former layout (a top-list key
            // and one key per entered example instead of one top record) wrote exactly this.
            let former = agg.dirty.iter().filter(|&&d| d != 0).count()
                + agg.new_examples.len()
                + agg.pending_images()
                + 1
                + agg.dirty.iter().filter(|&&d| d & DIRTY_HEAP != 0).count();
            let t = Instant::now();
            let commit = agg.prepare_commit(&store).unwrap();
            let prepare_s = t.elapsed().as_secs_f64();
            let keys = commit.keys();
            let t = Instant::now();
            commit.write(&store).unwrap();
            let write_s = t.elapsed().as_secs_f64();
            println!(
                "commit after image {i}: {keys} keys (former layout: {former}), \
                 prepare {prepare_s:.2} s, write {write_s:.2} s"
            );
        }
    }
    let t = Instant::now();
    let top = store.top_examples(latents - 1).unwrap();
    let read_s = t.elapsed().as_secs_f64();
    assert_eq!(top.len(), images.min(50) as usize);
    println!(
        "{images} images x {latents} latents x {per_feature} tokens, top_n 50, commit every \
         {every}: add_image {:.2} s/image, top_examples {:.1} ms",
        add_s / f64::from(images),
        read_s * 1e3
    );
}

#[test]
fn range_samples_hold_the_smallest_keys_of_the_firing_images_with_their_examples() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manifest {
        range_sample: 6,
        ..manifest(30, 2, RankRule::Max)
    };
    let idx: Vec<u32> = (0..70).collect();
    let store = build(&tmp.path().join("new"), &m, 5, &idx, 9);
    let mut checked = 0;
    for f in 0..30u32 {
        // Brute force: every image where f fired, with its max activation as the score.
        let mut fired: Vec<(f32, u32)> = Vec::new();
        for &i in &idx {
            let s = synth(5, i, 30);
            let max = s
                .acts
                .iter()
                .filter(|a| a.1 == f && a.2 > ACTIVE_MIN)
                .fold(0f32, |m, a| m.max(a.2));
            if max > 0.0 {
                fired.push((max, i));
            }
        }
        fired.sort_by_key(|&(_, i)| crate::store::sample_key(f, i));
        fired.truncate(6);
        assert_eq!(store.range_sample(f).unwrap(), fired, "feature {f}");
        let examples = store.range_examples(f).unwrap();
        assert_eq!(examples.len(), fired.len());
        for e in &examples {
            assert_eq!(store.example(f, e.image).unwrap().as_ref(), Some(e));
            assert_eq!(e.max, e.score);
        }
        assert!(examples.windows(2).all(|w| w[0].score >= w[1].score));
        let bands = store.range_bands(f).unwrap();
        assert_eq!(
            bands.iter().map(|b| b.examples.len()).sum::<usize>(),
            fired.len()
        );
        checked += usize::from(fired.len() == 6);
    }
    assert!(checked > 20, "{checked} features with a full sample");
    // A store made before the sample existed answers an empty one.
    let old = Manifest {
        range_sample: 0,
        ..m.clone()
    };
    let old = build(&tmp.path().join("old"), &old, 5, &idx, 9);
    assert!(old.range_sample(3).unwrap().is_empty());
    assert!(old.range_bands(3).unwrap().is_empty());
}

#[test]
fn firing_is_counted_by_kind_of_position_against_the_positions_scored() {
    use crate::model::anyres::TokenKind;
    use crate::store::position_slot;
    let tmp = tempfile::tempdir().unwrap();
    let m = manifest(12, 2, RankRule::Max);
    let idx: Vec<u32> = (0..25).collect();
    let store = build(&tmp.path().join("s"), &m, 4, &idx, 6);
    // Brute force over the synthetic images, token by token through their layouts.
    let mut want = vec![[0u64; 4]; 12];
    let mut scored = [0u64; 4];
    for &i in &idx {
        let s = synth(4, i, 12);
        let lay = s.record.layout.clone().unwrap();
        let kind = |t: u16| lay.tokens().get(usize::from(t)).map(|g| g.kind);
        for g in lay.tokens().iter().filter(|g| g.kind != TokenKind::Newline) {
            scored[position_slot(Some(g.kind))] += 1;
        }
        for &(t, f, v) in &s.acts {
            if v > ACTIVE_MIN {
                want[f as usize][position_slot(kind(t))] += 1;
            }
        }
    }
    assert_eq!(store.progress().unwrap().scored_by_position, Some(scored));
    assert!(scored[0] > 0 && scored[1] > 0 && scored[2] == 0 && scored[3] == 0);
    for f in 0..12u32 {
        let Some(s) = store.feature_stats(f).unwrap() else {
            assert_eq!(want[f as usize], [0; 4]);
            continue;
        };
        let t = s.by_position.unwrap();
        assert_eq!(t.0.map(|t| t.tokens), want[f as usize], "feature {f}");
        assert_eq!(t.0.iter().map(|t| t.sum_units).sum::<u128>(), s.sum_units);
        let rows = t.table(&scored);
        assert_eq!(
            rows[0].density,
            Some(want[f as usize][0] as f64 / scored[0] as f64)
        );
        assert_eq!(rows[3].density, None, "text was not scored");
    }
}
