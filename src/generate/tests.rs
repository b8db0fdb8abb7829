//! Generation on the sample world: streaming, end tokens, cancellation, steering effects.

use std::collections::BTreeSet;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;
use crate::model::tap::TapSite;
use crate::sae::intervene::{Mode, Phase, TokenScope};
use crate::sae::{SparseCodes, topk_rows};

fn session() -> Session {
    Session::open(&crate::session::ModelSpec::default(), None).unwrap()
}

fn opts(n: usize) -> GenerateOptions {
    GenerateOptions {
        max_new_tokens: n,
        sampling: Sampling::Greedy,
        stop_ids: Some(vec![]),
    }
}

fn run(
    s: &Session,
    p: &PreparedPrompt,
    iv: Option<&Intervention>,
    o: &GenerateOptions,
) -> Generation {
    generate(s, p, iv, o, &CancelToken::never(), &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap()
}

#[test]
fn greedy_generation_streams_every_token_and_is_repeatable() {
    let s = session();
    let p = PreparedPrompt::new(&s, "Tell me a story about Alice and Bob.", None).unwrap();
    let mut events = Vec::new();
    let g = generate(&s, &p, None, &opts(8), &CancelToken::never(), &mut |e| {
        events.push(e);
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(
        (g.ids.len(), g.stop, g.decode_steps),
        (8, StopReason::MaxTokens, 7)
    );
    assert!(matches!(events[0], TokenEvent::Prefilled { .. }));
    let mut text = String::new();
    for e in &events[1..] {
        match e {
            TokenEvent::Token { text: t, .. } | TokenEvent::Finished { tail: t, .. } => {
                text.push_str(t)
            }
            TokenEvent::Prefilled { .. } => panic!("a second prefill event"),
        }
    }
    assert_eq!(text, g.text);
    assert_eq!(events.len(), 8 + 2);
    // The second run reuses the kept prefill and must agree token for token.
    assert_eq!(run(&s, &p, None, &opts(8)).ids, g.ids);
}

#[test]
fn end_tokens_stop_the_run() {
    let s = session();
    let p = PreparedPrompt::new(&s, "Hi", None).unwrap();
    let first = run(&s, &p, None, &opts(1)).ids[0];
    let o = GenerateOptions {
        stop_ids: Some(vec![first]),
        ..opts(8)
    };
    let g = run(&s, &p, None, &o);
    assert_eq!((g.ids.len(), g.stop), (0, StopReason::EndToken));
}

#[test]
fn cancellation_stops_within_one_step() {
    let s = session();
    let p = PreparedPrompt::new(&s, "Count to ten.", None).unwrap();
    let counter = Arc::new(AtomicU64::new(0));
    let token = CancelToken::new(counter.clone());
    let g = generate(&s, &p, None, &opts(50), &token, &mut |e| {
        if let TokenEvent::Token { index: 2, .. } = e {
            counter.fetch_add(1, Ordering::SeqCst);
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    // Cancelled while token 2 was streamed: no further forward ran.
    assert_eq!(
        (g.ids.len(), g.decode_steps, g.stop),
        (3, 2, StopReason::Cancelled)
    );
    let g = generate(&s, &p, None, &opts(50), &token, &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(
        (g.ids.len(), g.stop),
        (0, StopReason::Cancelled),
        "a token made before the bump stays cancelled"
    );
    let g = generate(
        &s,
        &p,
        None,
        &opts(50),
        &CancelToken::new(counter),
        &mut |e| match e {
            TokenEvent::Token { index: 1, .. } => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        },
    )
    .unwrap();
    assert_eq!((g.ids.len(), g.stop), (2, StopReason::Stopped));
    let g = generate(&s, &p, None, &opts(50), &|| true, &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(
        (g.ids.len(), g.stop),
        (0, StopReason::Cancelled),
        "any Fn() -> bool can cancel"
    );
}

/// Records which features fire (after top-k) at every tap call, changing nothing.
struct Recorder<'a>(&'a crate::sae::Sae, BTreeSet<u32>);

impl TapEdit for Recorder<'_> {
    fn edit(&mut self, residual: &Tensor, _: &TapSite) -> candle_core::Result<Option<Tensor>> {
        let rows = residual.squeeze(0)?;
        let codes = self
            .0
            .encode(&rows)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        for (v, i) in codes
            .values
            .flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .zip(codes.indices.flatten_all()?.to_vec1::<u32>()?)
        {
            if *v > 0.0 {
                self.1.insert(i);
            }
        }
        Ok(None)
    }
}

#[test]
fn clamping_a_silent_feature_to_its_own_value_changes_nothing() {
    let s = session();
    let p = PreparedPrompt::new(&s, "Describe the picture.", None).unwrap();
    let mut rec = Recorder(&s.sae, BTreeSet::new());
    let cancel = CancelToken::never();
    let plain = generate_with_edit(&s, &p, Some(&mut rec), true, &opts(8), &cancel, &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    let silent = (0..s.sae.num_latents() as u32)
        .find(|f| !rec.1.contains(f))
        .expect("some feature never fires");
    let iv = Steering::new(Mode::Clamp, &[(silent, 0.0)])
        .resolve(&mut |_| Ok(None))
        .unwrap();
    let g = run(&s, &p, Some(&iv), &opts(8));
    assert_eq!(g.ids, plain.ids);
    assert!(
        g.warnings.iter().any(|w| w.contains("changed nothing")),
        "{:?}",
        g.warnings
    );
}

#[test]
fn a_large_steer_changes_the_output_stably_for_a_seed() {
    let s = session();
    let image = crate::sample::sample_root().join("shapes/images/shape-0000.png");
    let p = PreparedPrompt::new(&s, "What is in the image?", Some(&image)).unwrap();
    assert!(p.image_positions() > 0);
    let o = GenerateOptions {
        sampling: Sampling::new(0.8, 0.9, 11).unwrap(),
        ..opts(8)
    };
    let default = run(&s, &p, None, &o);
    let mut st = Steering::new(Mode::Clamp, &[(3, 400.0)]);
    st.scope.tokens = TokenScope::Image;
    st.scope.phase = Phase::Prefill;
    let iv = st.resolve(&mut |_| Ok(None)).unwrap();
    let a = run(&s, &p, Some(&iv), &o);
    let b = run(&s, &p, Some(&iv), &o);
    assert_ne!(
        a.ids, default.ids,
        "a 400-unit clamp on every image token should move the output"
    );
    assert_eq!(a.ids, b.ids, "fixed seed, fixed steering: same tokens");
    let e = a.edits.unwrap();
    assert_eq!(e.in_scope as usize, p.image_positions());
    assert!(a.warnings.is_empty(), "{:?}", a.warnings);
    assert_eq!(
        run(&s, &p, None, &o).ids,
        default.ids,
        "the kept prefill is not altered by a steered run"
    );
}

#[test]
fn an_image_scope_without_an_image_warns() {
    let s = session();
    let p = PreparedPrompt::new(&s, "No picture here.", None).unwrap();
    let mut st = Steering::new(Mode::Add, &[(0, 5.0)]);
    st.scope.tokens = TokenScope::Image;
    let g = run(
        &s,
        &p,
        Some(&st.resolve(&mut |_| Ok(None)).unwrap()),
        &opts(3),
    );
    assert!(
        g.warnings[0].contains("touched no position"),
        "{:?}",
        g.warnings
    );
}

/// The original's hook with tensor ops: `lat[:, f] = K` when T != 1, top-k, decode, replace.
struct OriginalHook<'a>(&'a crate::sae::Sae, usize, f32);

impl TapEdit for OriginalHook<'_> {
    fn edit(&mut self, residual: &Tensor, _: &TapSite) -> candle_core::Result<Option<Tensor>> {
        let (_, t, d) = residual.dims3()?;
        let mut lat = self.0.pre_acts(&residual.squeeze(0)?)?;
        if t != 1 {
            let n = lat.dim(1)?;
            let col = Tensor::full(self.2, (t, 1), lat.device())?;
            lat = Tensor::cat(
                &[
                    lat.narrow(1, 0, self.1)?,
                    col,
                    lat.narrow(1, self.1 + 1, n - self.1 - 1)?,
                ],
                1,
            )?;
        }
        let (values, indices) =
            topk_rows(&lat, self.0.k()).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        Ok(Some(
            self.0
                .decode(&SparseCodes { values, indices })?
                .reshape((1, t, d))?,
        ))
    }
}

#[test]
fn replace_scoped_to_prefill_reproduces_the_original_generation() {
    let s = session();
    let p = PreparedPrompt::new(&s, "Tell me a story about Alice and Bob.", None).unwrap();
    let mut hook = OriginalHook(&s.sae, 7, 50.0);
    let cancel = CancelToken::never();
    let want = generate_with_edit(
        &s,
        &p,
        Some(&mut hook),
        true,
        &opts(8),
        &cancel,
        &mut |_| ControlFlow::Continue(()),
    )
    .unwrap();
    let iv = Steering::new(Mode::Replace, &[(7, 50.0)])
        .resolve(&mut |_| Ok(None))
        .unwrap();
    assert_eq!(iv.scope.phase, Phase::Prefill);
    let got = run(&s, &p, Some(&iv), &opts(8));
    assert_eq!(got.ids, want.ids);
    assert_ne!(
        got.ids,
        run(&s, &p, None, &opts(8)).ids,
        "the original's replace is not the unhooked model"
    );
}

#[test]
fn strengths_in_max_units_use_the_cached_max() {
    let mut st = Steering::new(Mode::Clamp, &[(4, 2.0), (9, 0.5)]);
    st.unit = StrengthUnit::Max;
    let iv = st
        .resolve(&mut |f| Ok((f == 4 || f == 9).then_some(f as f32)))
        .unwrap();
    assert_eq!(iv.edits, vec![(4, 8.0), (9, 4.5)]);
    let err = st.resolve(&mut |_| Ok(None)).unwrap_err().to_string();
    assert!(
        err.contains("feature 4") && err.contains("raw units"),
        "{err}"
    );
    assert!(
        st.describe()
            .starts_with("clamp f4=2×max f9=0.5×max (phase both")
    );
    let json = serde_json::to_string(&st).unwrap();
    assert_eq!(serde_json::from_str::<Steering>(&json).unwrap(), st);
}
