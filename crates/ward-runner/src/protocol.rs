//! The runner's socket protocol, shared with the daemon: see [`ward_model::runner`].

pub use ward_model::runner::Request;
