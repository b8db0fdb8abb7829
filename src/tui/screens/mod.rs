//! The five screens, one folder each: `state` (what the screen holds), `update` (how actions and
//! results change it, as methods on [`crate::tui::App`]) and `ui` (how it is drawn).

pub mod attrib;
pub mod feature;
pub mod features;
pub mod image;
pub mod steer;
