//! Schema migrations, tracked with `PRAGMA user_version`.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use crate::StoreError;

/// Migration `i` takes the schema from version `i` to `i + 1`. Append only;
/// never edit a script that has shipped. A script that must rebuild a table
/// referenced by foreign keys needs `foreign_keys=OFF` around it, which cannot
/// change inside a transaction: add that step here when it is first needed.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_initial.sql"),
    include_str!("migrations/0002_images.sql"),
    include_str!("migrations/0003_access.sql"),
    include_str!("migrations/0004_secrets.sql"),
    include_str!("migrations/0005_quotas.sql"),
    include_str!("migrations/0006_users.sql"),
    include_str!("migrations/0007_event_index.sql"),
    include_str!("migrations/0008_models.sql"),
];

/// The schema version this code writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to [`SCHEMA_VERSION`], one transaction per step.
///
/// Each step takes the write lock before reading the version, so two
/// processes opening a fresh file at once do not both apply it.
pub(crate) fn migrate(connection: &mut Connection, path: &Path) -> Result<(), StoreError> {
    loop {
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|source| open_error(path, source))?;
        let version: i64 = transaction
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(|source| open_error(path, source))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                path: path.to_path_buf(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        if version == SCHEMA_VERSION {
            return Ok(());
        }
        let Some(script) = usize::try_from(version)
            .ok()
            .and_then(|index| MIGRATIONS.get(index))
        else {
            return Err(StoreError::SchemaUnknown {
                path: path.to_path_buf(),
                found: version,
            });
        };
        let migrate_error = |source| StoreError::Migrate {
            path: path.to_path_buf(),
            version: version + 1,
            source,
        };
        transaction.execute_batch(script).map_err(migrate_error)?;
        transaction
            .pragma_update(None, "user_version", version + 1)
            .map_err(migrate_error)?;
        transaction.commit().map_err(migrate_error)?;
    }
}

fn open_error(path: &Path, source: rusqlite::Error) -> StoreError {
    StoreError::Open {
        path: path.to_path_buf(),
        source,
    }
}
