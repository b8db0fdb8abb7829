//! The model actor: a dedicated OS thread that owns the device, the model and the SAE.
//!
//! [`ModelHandle`] is the only way in; jobs and results are plain data ([`messages`]).
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod actor;
pub mod messages;
pub mod session;
pub mod steer;

pub use actor::{Control, Engine, ModelHandle};
pub use messages::{
    ActorStatus, Analysis, AttribRequest, Job, Lane, ModelError, Side, SteerEvent, SteerRequest,
    SteerSpec,
};
pub use session::{SessionEngine, probe_image_acts};
