//! Keys, typed lines and model answers of the attribution screen. Pure like the rest of
//! `update`: the attribution itself is an effect the runner carries out.

use super::{AttribDone, AttribInput, AttribJob};
use crate::engine::AttribRequest;
use crate::tui::app::{App, Effect, Prompt, Screen};
use crate::tui::keymap::Action;
use crate::tui::update::step;

impl App {
    /// Enter the attribution screen; the image defaults to the one open on the image screen.
    pub(crate) fn attrib_show(&mut self) -> Vec<Effect> {
        self.screen = Screen::Attrib;
        if self.attrib.image.is_none()
            && let Some(a) = &self.image.analysis
        {
            self.attrib.image = Some(a.image.display().to_string());
        }
        vec![]
    }

    /// Apply a keymap action on the attribution screen (Enter is routed to the feature screen
    /// by the caller).
    pub(crate) fn attrib_action(&mut self, a: Action) -> Vec<Effect> {
        let st = &mut self.attrib;
        let len = st.ranked.len();
        let page = self.size.1.saturating_sub(12).max(1) as isize;
        let ask = |input: AttribInput, text: &str| Some((Prompt::Attrib(input), text.to_string()));
        match a {
            Action::Up => st.sel = step(st.sel, len, -1),
            Action::Down => st.sel = step(st.sel, len, 1),
            Action::PageUp => st.sel = step(st.sel, len, -page),
            Action::PageDown => st.sel = step(st.sel, len, page),
            Action::First => st.sel = 0,
            Action::Last => st.sel = len.saturating_sub(1),
            Action::SortNext => {
                st.sort = st.sort.next();
                st.rerank();
            }
            Action::CycleSign => st.sign = st.sign.next(),
            Action::AttribImage => {
                self.prompt = ask(AttribInput::Image, st.image.as_deref().unwrap_or(""))
            }
            Action::AttribPrompt => self.prompt = ask(AttribInput::Prompt, &st.prompt),
            Action::AttribAnswer => self.prompt = ask(AttribInput::Answer, &st.answer),
            Action::AttribBaseline => self.prompt = ask(AttribInput::Baseline, &st.baseline),
            Action::AttribRun => return self.attrib_run(),
            _ => self.dirty = false,
        }
        vec![]
    }

    /// The latent selected on the attribution screen, for the jump to its feature screen.
    pub(crate) fn attrib_selected_latent(&mut self) -> Option<u32> {
        let id = self.attrib.selected().map(|l| l.latent);
        if id.is_none() {
            self.message = Some(("no latent selected: run an attribution (r)".into(), false));
        }
        id
    }

    /// A line typed on the attribution screen. Answer and baseline arrive untrimmed: a leading
    /// space is part of the token.
    pub(crate) fn attrib_input(&mut self, input: AttribInput, text: String) -> Vec<Effect> {
        let st = &mut self.attrib;
        match input {
            AttribInput::Image => st.image = (!text.is_empty()).then_some(text),
            AttribInput::Prompt => st.prompt = text,
            AttribInput::Answer => st.answer = text,
            AttribInput::Baseline => st.baseline = text,
        }
        vec![]
    }

    /// Send the typed request to the model actor.
    pub(crate) fn attrib_run(&mut self) -> Vec<Effect> {
        if let Some(why) = self.attrib.missing() {
            self.message = Some((why.into(), true));
            return vec![];
        }
        let st = &mut self.attrib;
        st.ticket += 1;
        st.pending = true;
        st.error = None;
        let request = AttribRequest {
            ticket: st.ticket,
            image: None,
            prompt: st.prompt.clone(),
            answer: st.answer.clone(),
            baseline: st.baseline.clone(),
        };
        vec![Effect::Attrib(AttribJob {
            request,
            image: st.image.clone(),
        })]
    }

    /// The model actor's answer; answers of older requests are dropped.
    pub(crate) fn on_attributed(&mut self, done: AttribDone) -> Vec<Effect> {
        let st = &mut self.attrib;
        if done.ticket != st.ticket {
            self.dirty = false;
            return vec![];
        }
        st.pending = false;
        match done.result {
            Ok(r) => {
                let n = r.latents.len();
                self.message = Some((
                    format!(
                        "{n} latents attributed · metric {:.3} ({} − {})",
                        r.patched_metric, r.answer.token, r.baseline.token
                    ),
                    false,
                ));
                st.result = Some(r);
                st.sel = 0;
                st.rerank();
                st.rgb = match done.rgb {
                    Some(Ok(rgb)) => Some(rgb),
                    Some(Err(e)) => {
                        self.message = Some((e, true));
                        None
                    }
                    None => None,
                };
            }
            Err(e) => {
                let text = e.to_string();
                st.error = Some(text.clone());
                self.message = Some((text, true));
            }
        }
        vec![]
    }
}
