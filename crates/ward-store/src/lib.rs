//! Ward's durable state in one SQLite file; the only crate that contains SQL.
//!
//! Every multi-row change is one transaction, so a `kill -9` at any moment
//! leaves either all of a change or none of it.

mod access;
mod error;
mod schema;
mod store;

pub use access::audit_hash;
pub use error::StoreError;
pub use schema::SCHEMA_VERSION;
pub use store::Store;
pub use ward_core::records::{
    ApiKeyRecord, AuditRecord, AuditVerification, EventRecord, GrantRecord, ImageRecord,
    InstanceRecord, ModelRecord, NewAuditEntry, NewEvent, QuotaRecord, RevisionRecord,
    SecretRecord, UserRecord, WorkloadRecord,
};
