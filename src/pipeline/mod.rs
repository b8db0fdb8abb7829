//! Jobs shared by the command line and the TUI.

pub mod probe;
pub mod session;
