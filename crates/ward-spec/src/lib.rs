//! Workload specs: parse YAML/JSON documents, validate them and normalise them (pure, no IO).
//!
//! Raw input goes through [`parse_documents`] or [`parse_value`] and comes out as a
//! [`WorkloadSpec`], which cannot hold an invalid state. [`WorkloadSpec::to_normalized_json`]
//! renders the normalised form that `ward inspect -o json` and the API return; parsing that
//! form again yields the same spec.

mod error;
mod model;
mod normalize;
mod parse;
pub mod units;

pub use error::SpecError;
pub use model::*;
pub use normalize::{diff_normalized, FieldChange};
pub use parse::{parse_documents, parse_value};
pub use units::validate_name;
