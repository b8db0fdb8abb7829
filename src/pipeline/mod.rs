//! Jobs shared by the command line and the TUI.

pub mod cache;
pub mod dataset;
pub mod probe;
pub mod session;
pub mod train;
