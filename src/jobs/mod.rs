//! Jobs: each takes typed options, runs against a [`crate::session::Session`] or a store, and
//! returns a summary; the CLI prints it, the workbench shows it.

pub mod attribute;
pub mod bench;
pub mod cache;
pub mod pages;
pub mod probe;
pub mod steer;
pub mod train;
