//! The vocabulary every caller of Ward's engine speaks — the HTTP API today, the planner, the
//! MCP server, the healer and the dashboard next — and the traits the engine implements for
//! them: what an operation is and who may call it ([`ops`], [`access`]), the one door each call
//! goes through ([`door`]), what the engine shows ([`view`], [`events`], [`session`]), how it
//! fails ([`error`]), and the services themselves ([`services`]).
//!
//! Nothing here touches the disk, the kernel or the network; the engine (`ward-supervisor`)
//! does, behind these traits.

pub mod access;
pub mod door;
pub mod error;
pub mod events;
pub mod inference;
pub mod ops;
pub mod records;
pub mod services;
pub mod session;
pub mod view;

pub use error::{Error, ErrorKind};
