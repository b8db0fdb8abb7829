//! glint's integration tests, one binary: the command line end to end, the workbench's screens
//! and terminal session, and parity with the reference implementations' fixtures.

mod common;

mod cli_attribute;
mod cli_cache;
mod cli_export_pages;
mod cli_parquet;
mod cli_probe;
mod cli_score;
mod cli_steer;
mod clip_parity;
mod explain_server;
mod model_parity;
mod model_random;
mod tui_attrib;
mod tui_e2e;
mod tui_screens;
mod tui_steer;
mod tui_terminals;
