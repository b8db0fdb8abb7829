//! What the sample model is taught and tested on: a caption and short question/answer pairs for
//! a planned shapes image, read off its plan, so every answer is ground truth.
//!
//! The texts are fixed templates (no paraphrase), and objects are named left to right by the
//! centre of their box, so each image has exactly one right caption.

use std::fmt;

use super::shapes::{Colour, ImagePlan, PlannedObject, Shape, Texture};
use crate::util::rng::SeededRng;

/// The prompt that asks for a caption.
pub const CAPTION_PROMPT: &str = "Describe the picture.";

/// The kinds of question the sample world asks, each scored on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QuestionKind {
    /// "Describe the picture." → every object and the background.
    Caption,
    /// "What colour is the triangle?" (a shape the image holds once).
    Colour,
    /// "What shape is the red object?" (a colour the image holds once).
    Shape,
    /// "How many shapes?"
    Count,
    /// "Is there a star?" (asked of present and absent shapes alike).
    Presence,
}

impl QuestionKind {
    /// Every kind, in report order.
    pub const ALL: [QuestionKind; 5] = [
        QuestionKind::Caption,
        QuestionKind::Colour,
        QuestionKind::Shape,
        QuestionKind::Count,
        QuestionKind::Presence,
    ];

    /// Lower-case name, as reports print it.
    pub fn name(self) -> &'static str {
        match self {
            QuestionKind::Caption => "caption",
            QuestionKind::Colour => "colour",
            QuestionKind::Shape => "shape",
            QuestionKind::Count => "count",
            QuestionKind::Presence => "presence",
        }
    }
}

impl fmt::Display for QuestionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One question about an image and its one right answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QaPair {
    /// What is asked.
    pub kind: QuestionKind,
    /// The user's turn.
    pub question: String,
    /// The assistant's answer.
    pub answer: String,
}

/// How the caption names a background.
fn texture_words(texture: &Texture) -> &'static str {
    match texture {
        Texture::Gradient { .. } => "a shaded background",
        Texture::Stripes { .. } => "a striped background",
        Texture::Checks { .. } => "a checked background",
        Texture::Blotches { .. } => "a blotchy background",
    }
}

/// Number words up to the most objects an image holds.
fn count_word(n: usize) -> &'static str {
    match n {
        0 => "zero",
        1 => "one",
        2 => "two",
        3 => "three",
        4 => "four",
        _ => "many",
    }
}

/// The objects left to right by the centre of their box (top to bottom on ties).
fn left_to_right(plan: &ImagePlan) -> Vec<&PlannedObject> {
    let mut objects: Vec<&PlannedObject> = plan.objects.iter().collect();
    objects.sort_by_key(|o| (2 * o.x + o.side, 2 * o.y + o.side));
    objects
}

/// "a red circle and a blue square on a striped background".
pub fn caption(plan: &ImagePlan) -> String {
    let names: Vec<String> = left_to_right(plan)
        .iter()
        .map(|o| format!("a {}", o.label()))
        .collect();
    let objects = match names.as_slice() {
        [] => "nothing".to_string(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    };
    format!("{objects} on {}", texture_words(&plan.texture))
}

/// The caption and one question of every other kind that the image can answer, drawn with
/// `rng` (a shape or colour question needs a shape or colour the image holds exactly once).
pub fn questions(plan: &ImagePlan, rng: &mut SeededRng) -> Vec<QaPair> {
    let mut out = vec![QaPair {
        kind: QuestionKind::Caption,
        question: CAPTION_PROMPT.to_string(),
        answer: caption(plan),
    }];
    if let Some(o) = pick(&held_once(plan, |o| o.shape), rng) {
        out.push(QaPair {
            kind: QuestionKind::Colour,
            question: format!("What colour is the {}?", o.shape.name()),
            answer: o.colour.name().to_string(),
        });
    }
    if let Some(o) = pick(&held_once(plan, |o| o.colour), rng) {
        out.push(QaPair {
            kind: QuestionKind::Shape,
            question: format!("What shape is the {} object?", o.colour.name()),
            answer: o.shape.name().to_string(),
        });
    }
    out.push(QaPair {
        kind: QuestionKind::Count,
        question: "How many shapes?".to_string(),
        answer: count_word(plan.objects.len()).to_string(),
    });
    // Half the presence questions name a shape that is there, half one that is not.
    let present: Vec<Shape> = plan.objects.iter().map(|o| o.shape).collect();
    let absent: Vec<Shape> = Shape::ALL
        .into_iter()
        .filter(|s| !present.contains(s))
        .collect();
    let ask_present = rng.below(2) == 0 || absent.is_empty();
    let (shape, answer) = if ask_present {
        (pick(&present, rng), "yes")
    } else {
        (pick(&absent, rng), "no")
    };
    if let Some(shape) = shape {
        out.push(QaPair {
            kind: QuestionKind::Presence,
            question: format!("Is there a {}?", shape.name()),
            answer: answer.to_string(),
        });
    }
    out
}

/// Whether `text` names every object of `plan` by colour and shape ("red circle").
pub fn names_every_object(plan: &ImagePlan, text: &str) -> bool {
    plan.objects.iter().all(|o| text.contains(&o.label()))
}

/// The first colour, shape, count or yes/no word of an answer, for scoring answers that carry
/// extra words.
pub fn answer_word(text: &str) -> Option<&'static str> {
    let known = || {
        Colour::ALL
            .iter()
            .map(|c| c.name())
            .chain(Shape::ALL.iter().map(|s| s.name()))
            .chain(["zero", "one", "two", "three", "four", "yes", "no"])
    };
    text.split(|c: char| !c.is_ascii_alphabetic())
        .find_map(|word| known().find(|k| k.eq_ignore_ascii_case(word)))
}

/// The objects whose `key` (shape or colour) no other object of the image shares.
fn held_once<K: PartialEq>(
    plan: &ImagePlan,
    key: impl Fn(&PlannedObject) -> K,
) -> Vec<&PlannedObject> {
    let count = |k: &K| plan.objects.iter().filter(|p| key(p) == *k).count();
    plan.objects
        .iter()
        .filter(|o| count(&key(o)) == 1)
        .collect()
}

fn pick<T: Copy>(items: &[T], rng: &mut SeededRng) -> Option<T> {
    (!items.is_empty()).then(|| items[rng.below(items.len() as u64) as usize])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::shapes::{ShapesSpec, plan_shapes};

    fn object(colour: Colour, shape: Shape, x: u32) -> PlannedObject {
        PlannedObject {
            colour,
            shape,
            x,
            y: 10,
            side: 60,
        }
    }

    fn plan(objects: Vec<PlannedObject>) -> ImagePlan {
        ImagePlan {
            id: "t".into(),
            width: 336,
            height: 336,
            texture: Texture::Stripes {
                a: [1, 1, 1],
                b: [2, 2, 2],
                period: 8,
            },
            objects,
        }
    }

    #[test]
    fn captions_name_objects_left_to_right_and_the_background() {
        let p = plan(vec![
            object(Colour::Blue, Shape::Square, 200),
            object(Colour::Red, Shape::Circle, 10),
            object(Colour::Green, Shape::Star, 100),
        ]);
        assert_eq!(
            caption(&p),
            "a red circle, a green star and a blue square on a striped background"
        );
        let one = plan(vec![object(Colour::Cyan, Shape::Ring, 0)]);
        assert_eq!(caption(&one), "a cyan ring on a striped background");
    }

    #[test]
    fn every_answer_is_true_of_the_plan() {
        let plans = plan_shapes(&ShapesSpec {
            seed: 3,
            count: 200,
        })
        .unwrap();
        let mut rng = SeededRng::new(9);
        let mut seen = std::collections::BTreeMap::new();
        for p in &plans {
            for qa in questions(p, &mut rng) {
                *seen.entry((qa.kind, qa.answer.clone())).or_insert(0) += 1;
                let has = |f: &dyn Fn(&PlannedObject) -> bool| p.objects.iter().any(f);
                match qa.kind {
                    QuestionKind::Caption => assert!(names_every_object(p, &qa.answer)),
                    QuestionKind::Colour => {
                        assert!(has(&|o| qa.question.contains(o.shape.name())
                            && o.colour.name() == qa.answer))
                    }
                    QuestionKind::Shape => {
                        assert!(has(&|o| qa.question.contains(o.colour.name())
                            && o.shape.name() == qa.answer))
                    }
                    QuestionKind::Count => assert_eq!(qa.answer, count_word(p.objects.len())),
                    QuestionKind::Presence => {
                        let there = has(&|o| qa.question.contains(o.shape.name()));
                        assert_eq!(qa.answer, if there { "yes" } else { "no" });
                    }
                }
            }
        }
        // Both presence answers and every count are asked.
        for answer in ["yes", "no"] {
            assert!(seen.contains_key(&(QuestionKind::Presence, answer.to_string())));
        }
        for n in ["one", "two", "three"] {
            assert!(seen.contains_key(&(QuestionKind::Count, n.to_string())));
        }
    }

    #[test]
    fn answers_with_extra_words_are_read() {
        assert_eq!(answer_word("green"), Some("green"));
        assert_eq!(answer_word(" it is a red one"), Some("red"));
        assert_eq!(answer_word("No, none."), Some("no"));
        assert_eq!(answer_word("I know"), None);
        assert_eq!(answer_word("purple"), None);
    }
}
