//! The one error type of the store.

use std::path::PathBuf;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or configured.
    #[error("open database {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// The database was written by a newer ward than this one.
    #[error(
        "database {} has schema version {found} but this ward knows up to {known}: upgrade ward",
        path.display()
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    /// The version is one no ward ever wrote (negative): not a ward database.
    #[error("database {} has unknown schema version {found}", path.display())]
    SchemaUnknown { path: PathBuf, found: i64 },
    /// Applying a migration failed; the database stays at the previous version.
    #[error("migrate database {} to schema version {version}: {source}", path.display())]
    Migrate {
        path: PathBuf,
        version: i64,
        source: rusqlite::Error,
    },
    /// `PRAGMA integrity_check` or `PRAGMA foreign_key_check` found problems.
    #[error("database {} failed its integrity check: {details}", path.display())]
    Corrupt { path: PathBuf, details: String },
    /// A write broke a constraint (unknown project or workload, duplicate
    /// revision with a different spec, ...); nothing of it was written.
    #[error("{operation}: constraint violated: {details}")]
    Constraint { operation: String, details: String },
    /// The disk holding the database is full; nothing of the write was kept.
    #[error(
        "{operation}: the disk holding {} is full ({} left); free space there and retry",
        dir.display(),
        format_bytes(*available)
    )]
    DiskFull {
        operation: String,
        dir: PathBuf,
        /// Bytes left to unprivileged writers on that file system.
        available: u64,
    },
    /// Any other SQLite failure while running `operation`.
    #[error("{operation}: {source}")]
    Sqlite {
        operation: String,
        source: rusqlite::Error,
    },
}

impl StoreError {
    /// Whether SQLite gave up for lack of disk space.
    pub(crate) fn is_sqlite_full(&self) -> bool {
        matches!(self, StoreError::Sqlite { source, .. }
            if source.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull))
    }

    /// Classifies a SQLite error raised while running `operation`.
    pub(crate) fn from_sqlite(operation: String, source: rusqlite::Error) -> StoreError {
        match source.sqlite_error_code() {
            Some(rusqlite::ErrorCode::ConstraintViolation) => StoreError::Constraint {
                operation,
                details: source.to_string(),
            },
            _ => StoreError::Sqlite { operation, source },
        }
    }
}

/// `bytes` in the largest binary unit that keeps a number of at least 1.
fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
