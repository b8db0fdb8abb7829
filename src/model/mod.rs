//! LLaVA-NeXT in candle: configuration, image geometry, vision tower, Llama with a layer tap.

pub mod anyres;
pub mod config;
pub mod device;
pub mod kv_cache;
mod linear;
pub mod llama;
pub mod llava_next;
pub mod load;
pub mod preprocess;
pub mod random;
pub mod tap;
pub mod tokenizer;
pub mod vision;
