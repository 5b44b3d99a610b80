//! The typed HTTP client for Ward's native API, shared by the CLI, the MCP bridge and tests.
//!
//! [`wire`] holds the JSON bodies exactly as they cross the network; the daemon's API layer
//! builds them from its domain types and this crate parses them.

mod client;
mod error;
pub mod wire;

pub use client::{Client, ExecOptions, LogOptions, WebSocket};
pub use error::ClientError;
