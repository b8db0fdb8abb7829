//! How well the sample model sees: greedy answers to held-out questions about generated shapes
//! images, scored per kind against the plan (colour, shape, count and presence answers by their
//! word, captions by whether they name every object).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use candle_core::{D, Tensor};
use serde::Serialize;

use super::qa::{QuestionKind, answer_word, names_every_object};
use super::train_model::{ExampleSource, end_of_turn};
use crate::model::anyres::ImageLayout;
use crate::model::kv_cache::KvCache;
use crate::model::llava_next::{ImageInput, LlavaNext};
use crate::model::tap::ForwardOptions;
use crate::model::tokenizer::PromptTokenizer;

/// Most tokens an answer may take (a three-object caption is about 20).
const MAX_ANSWER_TOKENS: usize = 40;

/// Right answers out of those asked, for one kind of question.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct KindScore {
    /// Questions asked.
    pub asked: usize,
    /// Answered right.
    pub right: usize,
}

impl KindScore {
    /// `right / asked` (0 when nothing was asked).
    pub fn accuracy(&self) -> f64 {
        self.right as f64 / self.asked.max(1) as f64
    }
}

/// Scores per kind of question.
pub type Scores = BTreeMap<QuestionKind, KindScore>;

/// The model's greedy answer to `question` about the image (one user turn, as the workbench
/// asks it).
pub fn greedy_answer(
    model: &LlavaNext,
    tok: &PromptTokenizer,
    image: (&Tensor, &ImageLayout),
    question: &str,
) -> Result<String> {
    let ids = tok.chat_prompt_ids(question, true)?;
    let images = [ImageInput {
        pixel_values: image.0,
        layout: image.1,
    }];
    let (embeds, _) = model.embed_sequence(&ids, &images)?;
    let mut cache = KvCache::new();
    let prompt_len = embeds.dim(1)?;
    let mut logits = model
        .forward(
            &embeds,
            0,
            Some(&mut cache),
            ForwardOptions::last_logits(None),
        )?
        .logits
        .context("the forward returned no logits")?;
    let stop = end_of_turn(tok)?;
    let mut answer = Vec::new();
    for offset in prompt_len..prompt_len + MAX_ANSWER_TOKENS {
        let next = logits
            .flatten_all()?
            .argmax(D::Minus1)?
            .to_scalar::<u32>()?;
        if next == stop || tok.eos_ids().contains(&next) {
            break;
        }
        answer.push(next);
        let step = model.embed_ids(&[next])?;
        logits = model
            .forward(
                &step,
                offset,
                Some(&mut cache),
                ForwardOptions::last_logits(None),
            )?
            .logits
            .context("the forward returned no logits")?;
    }
    tok.decode(&answer, true)
}

/// Ask `per_kind` questions of every kind about images from `source`, one at a time.
pub fn evaluate(
    model: &LlavaNext,
    tok: &PromptTokenizer,
    source: &mut ExampleSource,
    per_kind: usize,
) -> Result<Scores> {
    let mut scores: Scores = QuestionKind::ALL
        .iter()
        .map(|&k| (k, KindScore::default()))
        .collect();
    let done = |s: &Scores| s.values().all(|k| k.asked >= per_kind);
    while !done(&scores) {
        let (plan, qas) = source.next_conversation()?;
        let wanted: Vec<_> = qas
            .iter()
            .filter(|qa| scores[&qa.kind].asked < per_kind)
            .collect();
        if wanted.is_empty() {
            continue;
        }
        let (pixels, layout) = source.prepare(&plan)?;
        for qa in wanted {
            let said = greedy_answer(model, tok, (&pixels, &layout), &qa.question)?;
            let right = match qa.kind {
                QuestionKind::Caption => names_every_object(&plan, &said),
                _ => answer_word(&said) == Some(qa.answer.as_str()),
            };
            let score = scores.get_mut(&qa.kind).expect("every kind is scored");
            score.asked += 1;
            score.right += usize::from(right);
        }
    }
    Ok(scores)
}

/// One line per kind: "colour 37/40 (92.5%)".
pub fn format_scores(scores: &Scores) -> String {
    scores
        .iter()
        .map(|(kind, s)| {
            format!(
                "{kind} {}/{} ({:.1}%)",
                s.right,
                s.asked,
                100.0 * s.accuracy()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::checkpoint::sample_weights;
    use crate::sample::patch_probe::PatchProbe;
    use crate::sample::train_model::{
        TrainModelSpec, Trainable, optimizer, test_world, train_step,
    };

    #[test]
    fn every_kind_is_asked_as_often_as_requested_and_scores_read_as_fractions() {
        let (_dir, config, tok) = test_world(2);
        let model = Trainable::new(&config, &sample_weights(&config, 2).unwrap())
            .unwrap()
            .model()
            .unwrap();
        let mut source = ExampleSource::new(&config, 2, "test").unwrap();
        let scores = evaluate(&model, &tok, &mut source, 1).unwrap();
        assert_eq!(scores.len(), QuestionKind::ALL.len());
        assert!(scores.values().all(|s| s.asked == 1 && s.right <= 1));
        let line = format_scores(&scores);
        assert!(
            line.starts_with("caption ") && line.contains("presence "),
            "{line}"
        );
        let half = KindScore { asked: 4, right: 2 };
        assert_eq!(half.accuracy(), 0.5);
        assert_eq!(KindScore::default().accuracy(), 0.0);
    }

    /// Training and greedy answering see the same sequence: a model trained on one question
    /// about one image answers it.
    #[test]
    fn a_question_trained_on_is_answered_greedily() {
        let (_dir, config, tok) = test_world(3);
        let spec = TrainModelSpec {
            seed: 3,
            steps: 40,
            batch: 1,
            probe_weight: 0.0,
            ..TrainModelSpec::default()
        };
        let trainable = Trainable::new(&config, &sample_weights(&config, 3).unwrap()).unwrap();
        let probe = PatchProbe::new(config.text_config.hidden_size, 3).unwrap();
        let mut opt = optimizer(&trainable, &probe, &spec).unwrap();
        let mut source = ExampleSource::new(&config, 3, "test").unwrap();
        let (plan, qas) = source.next_conversation().unwrap();
        let qa = qas
            .into_iter()
            .find(|q| q.kind != QuestionKind::Caption)
            .unwrap();
        let ex = source
            .example(&plan, std::slice::from_ref(&qa), &tok)
            .unwrap();
        let before = {
            let (px, layout) = source.prepare(&plan).unwrap();
            greedy_answer(
                &trainable.model().unwrap(),
                &tok,
                (&px, &layout),
                &qa.question,
            )
            .unwrap()
        };
        for _ in 0..spec.steps {
            let batch = std::slice::from_ref(&ex);
            train_step(&trainable, &probe, &mut opt, batch, spec.probe_weight).unwrap();
        }
        let (px, layout) = source.prepare(&plan).unwrap();
        let model = trainable.model().unwrap();
        let said = greedy_answer(&model, &tok, (&px, &layout), &qa.question).unwrap();
        assert_eq!(
            said, qa.answer,
            "{:?} (before training: {before:?})",
            qa.question
        );
        assert_ne!(before, qa.answer);
    }
}
