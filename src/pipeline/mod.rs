//! Jobs shared by the command line and the TUI.

pub mod attribute;
pub mod bench;
pub mod cache;
pub mod dataset;
pub mod generate;
pub mod probe;
pub mod session;
pub mod steer;
pub mod train;
