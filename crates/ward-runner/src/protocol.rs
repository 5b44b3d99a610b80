//! What goes over a runner's socket: one [`Request`] line per connection, then JSON lines —
//! for `info`, one [`ModelInfo`](crate::engine::ModelInfo); for `generate`, the
//! [`Event`](crate::engine::Event)s of that completion, the last a `done` or an `error`.

use serde::{Deserialize, Serialize};

use crate::engine::Generate;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// What the model is and how the runner runs it.
    Info,
    Generate(Generate),
}
