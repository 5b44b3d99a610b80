//! OCI images: a content-addressed blob store, registry pulls, `docker save` and OCI layout
//! archives, and layers unpacked once and shared by every container that uses them.
//!
//! Everything here treats image content as hostile: blobs are verified against their digest
//! before use, manifests and configs are size-limited and parsed strictly, and layer entries
//! that would land outside their root are refused.

pub mod archive;
pub mod artifact;
pub mod credentials;
pub mod digest;
pub mod download;
pub mod layers;
pub mod manifest;
pub mod pull;
pub mod store;
pub mod unpack;

pub use digest::Digest;
pub use store::BlobStore;
