//! Process definitions, versioned per `processCode`: each save is a new version; running
//! instances keep the version they started with.

use super::{conflict_on_unique, on_pool, Store, StoreError};
use crate::engine::definition::Definition;
use crate::support::now_ms;

#[derive(Debug, Clone)]
pub struct StoredDefinition {
    pub process_code: String,
    pub version: i64,
    pub app_type: String,
    pub name: String,
    pub definition: Definition,
    pub created_at: i64,
}

impl Store {
    /// Saves `definition` as the next version of its process code.
    pub async fn put_definition(
        &self,
        corp_id: &str,
        app_type: &str,
        definition: &Definition,
    ) -> Result<StoredDefinition, StoreError> {
        let document =
            serde_json::to_string(definition).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let now = now_ms();
        let version: i64 = on_pool!(self, |pool| {
            let mut tx = crate::store::BeginWrite::begin_write(pool).await?;
            let current: Option<i64> = sqlx::query_scalar(
                "SELECT MAX(version) FROM process_definitions WHERE corp_id = $1 AND process_code = $2",
            )
            .bind(corp_id)
            .bind(&definition.process_code)
            .fetch_one(&mut *tx)
            .await?;
            let version = current.unwrap_or(0) + 1;
            sqlx::query(
                "INSERT INTO process_definitions (corp_id, process_code, version, app_type, name, document, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(corp_id)
            .bind(&definition.process_code)
            .bind(version)
            .bind(app_type)
            .bind(&definition.name)
            .bind(&document)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict_on_unique(e, "that version (saved concurrently; retry)"))?;
            tx.commit().await?;
            version
        });
        crate::support::settings_changed();
        Ok(StoredDefinition {
            process_code: definition.process_code.clone(),
            version,
            app_type: app_type.into(),
            name: definition.name.clone(),
            definition: definition.clone(),
            created_at: now,
        })
    }

    /// The latest version of a process and its application, without parsing the document.
    pub async fn latest_definition_version(
        &self,
        corp_id: &str,
        process_code: &str,
    ) -> Result<Option<(i64, String)>, StoreError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT version, app_type FROM process_definitions WHERE corp_id = $1 AND process_code = $2 \
                 ORDER BY version DESC LIMIT 1",
            )
            .bind(corp_id)
            .bind(process_code)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// One version, or the latest when `version` is `None`.
    pub async fn definition(
        &self,
        corp_id: &str,
        process_code: &str,
        version: Option<i64>,
    ) -> Result<Option<StoredDefinition>, StoreError> {
        Ok(self
            .definitions(corp_id, process_code, version, 1)
            .await?
            .pop())
    }

    /// Versions, newest first.
    pub async fn definitions(
        &self,
        corp_id: &str,
        process_code: &str,
        version: Option<i64>,
        limit: i64,
    ) -> Result<Vec<StoredDefinition>, StoreError> {
        let rows: Vec<(String, i64, String, String, String, i64)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT process_code, version, app_type, name, document, created_at FROM process_definitions \
                 WHERE corp_id = $1 AND process_code = $2 AND ($3 IS NULL OR version = $3) \
                 ORDER BY version DESC LIMIT $4",
            )
            .bind(corp_id)
            .bind(process_code)
            .bind(version)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(
                |(process_code, version, app_type, name, document, created_at)| {
                    Ok(StoredDefinition {
                        process_code,
                        version,
                        app_type,
                        name,
                        definition: serde_json::from_str(&document)
                            .map_err(|e| StoreError::Corrupt(format!("definition: {e}")))?,
                        created_at,
                    })
                },
            )
            .collect()
    }
}
