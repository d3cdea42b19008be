//! Custom field definitions in PostgreSQL.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Jsonb, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, RunQueryDsl};
use nexus_domain::custom_field::{CustomFieldDefinition, FieldKey, FieldSpec, FieldType};
use nexus_domain::{CustomFieldId, EventActor, OrgId};
use nexus_ports::StoreError;
use nexus_ports::contacts::{CustomFieldRepository, DefinitionWriteError, FieldSet};
use uuid::Uuid;

use crate::audit;
use crate::error::from_diesel;
use crate::pool::{Db, PgConn, PgPool};
use crate::repo::{Flag, unique_violation};
use crate::schema::custom_field_definitions as defs;
use crate::schema::organizations;
use nexus_domain::audit::{AuditChange, field_changes};

/// What the audit log records of a definition (the fields a user writes).
fn audited(row: &DefinitionRow) -> serde_json::Value {
    serde_json::json!({
        "key": row.key, "label": row.label, "type": row.field_type, "required": row.required,
        "options": row.options,
    })
}

const KEY_UNIQUE: &str = "custom_field_definitions_org_key_key";

#[derive(Debug, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = defs, primary_key(organization_id, id), check_for_backend(diesel::pg::Pg))]
struct DefinitionRow {
    organization_id: Uuid,
    id: Uuid,
    key: String,
    label: String,
    field_type: String,
    required: bool,
    options: Vec<String>,
    version: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<&CustomFieldDefinition> for DefinitionRow {
    fn from(d: &CustomFieldDefinition) -> Self {
        Self {
            organization_id: d.organization_id.as_uuid(),
            id: d.id.as_uuid(),
            key: d.spec.key.as_str().to_owned(),
            label: d.spec.label.clone(),
            field_type: d.spec.field_type.as_str().to_owned(),
            required: d.spec.required,
            options: d.spec.options.clone(),
            version: d.version,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

impl TryFrom<DefinitionRow> for CustomFieldDefinition {
    type Error = StoreError;

    fn try_from(row: DefinitionRow) -> Result<Self, StoreError> {
        let corrupt =
            || StoreError::Other(anyhow::anyhow!("stored custom field {} is invalid", row.id));
        let field_type = FieldType::parse(&row.field_type).ok_or_else(corrupt)?;
        FieldKey::parse(&row.key).map_err(|_| corrupt())?;
        let spec = FieldSpec::new(&row.key, &row.label, field_type, row.required, &row.options)
            .map_err(|_| corrupt())?;
        Ok(Self {
            id: CustomFieldId::from_uuid(row.id),
            organization_id: OrgId::from_uuid(row.organization_id),
            spec,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(Clone)]
pub struct PgCustomFieldRepository {
    db: Db,
}

impl PgCustomFieldRepository {
    #[must_use]
    pub const fn new(pool: PgPool, acquire_timeout: Duration) -> Self {
        Self {
            db: Db::new(pool, acquire_timeout),
        }
    }

    async fn conn(&self) -> Result<PgConn, StoreError> {
        self.db.conn().await
    }
}

async fn values_exist(
    conn: &mut PgConn,
    org: OrgId,
    key: &str,
) -> Result<bool, diesel::result::Error> {
    let found: Flag = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM contacts WHERE organization_id = $1 AND custom_fields ? $2) AS flag",
    )
    .bind::<SqlUuid, _>(org.as_uuid())
    .bind::<Text, _>(key.to_owned())
    .get_result(conn)
    .await?;
    Ok(found.flag)
}

/// Why a write guarded by the definition's version touched no row: another version
/// (412), or no such definition in the organization (404).
async fn missed(
    conn: &mut PgConn,
    org: OrgId,
    id: Uuid,
) -> Result<DefinitionWriteError, diesel::result::Error> {
    let current: Option<i32> = defs::table
        .filter(defs::organization_id.eq(org.as_uuid()))
        .filter(defs::id.eq(id))
        .select(defs::version)
        .first(conn)
        .await
        .optional()?;
    Ok(current.map_or(DefinitionWriteError::NotFound, |current| {
        DefinitionWriteError::VersionMismatch { current }
    }))
}

#[derive(Debug)]
enum TxError {
    Write(DefinitionWriteError),
    Db(diesel::result::Error),
}

impl From<diesel::result::Error> for TxError {
    fn from(err: diesel::result::Error) -> Self {
        Self::Db(err)
    }
}

impl From<TxError> for DefinitionWriteError {
    fn from(err: TxError) -> Self {
        match err {
            TxError::Write(w) => w,
            TxError::Db(e) if unique_violation(&e) == Some(KEY_UNIQUE) => Self::DuplicateKey,
            TxError::Db(e) => Self::Store(from_diesel(e)),
        }
    }
}

impl CustomFieldRepository for PgCustomFieldRepository {
    async fn list(&self, org: OrgId) -> Result<Vec<CustomFieldDefinition>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<DefinitionRow> = defs::table
            .filter(defs::organization_id.eq(org.as_uuid()))
            .order((defs::created_at.asc(), defs::id.asc()))
            .select(DefinitionRow::as_select())
            .load(&mut conn)
            .await
            .map_err(from_diesel)?;
        rows.into_iter()
            .map(CustomFieldDefinition::try_from)
            .collect()
    }

    async fn field_set(&self, org: OrgId) -> Result<FieldSet, StoreError> {
        let mut conn = self.conn().await?;
        // One statement, so the generation and the definitions are one snapshot.
        let rows: Vec<(i64, Option<DefinitionRow>)> = organizations::table
            .left_join(defs::table.on(defs::organization_id.eq(organizations::id)))
            .filter(organizations::id.eq(org.as_uuid()))
            .order((defs::created_at.asc(), defs::id.asc()))
            .select((
                organizations::custom_fields_generation,
                Option::<DefinitionRow>::as_select(),
            ))
            .load(&mut conn)
            .await
            .map_err(from_diesel)?;
        let generation = rows.as_slice().first().map_or(0, |(g, _)| *g);
        let specs = rows
            .into_iter()
            .filter_map(|(_, row)| row)
            .map(|row| CustomFieldDefinition::try_from(row).map(|d| d.spec))
            .collect::<Result<_, _>>()?;
        Ok(FieldSet { generation, specs })
    }

    async fn get(
        &self,
        org: OrgId,
        id: CustomFieldId,
    ) -> Result<Option<CustomFieldDefinition>, StoreError> {
        let mut conn = self.conn().await?;
        let row: Option<DefinitionRow> = defs::table
            .filter(defs::organization_id.eq(org.as_uuid()))
            .filter(defs::id.eq(id.as_uuid()))
            .select(DefinitionRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(from_diesel)?;
        row.map(CustomFieldDefinition::try_from).transpose()
    }

    async fn insert(
        &self,
        org: OrgId,
        definition: &CustomFieldDefinition,
        limit: usize,
    ) -> Result<(), DefinitionWriteError> {
        let mut conn = self.conn().await?;
        let row = DefinitionRow {
            organization_id: org.as_uuid(),
            ..DefinitionRow::from(definition)
        };
        let change = AuditChange::new(
            "custom_field.created",
            "custom_field",
            Some(row.id.to_string()),
            &serde_json::json!({ "after": audited(&row) }),
        );
        let row = &row;
        conn.transaction(async move |conn| {
            diesel::insert_into(defs::table)
                .values(row)
                .execute(conn)
                .await?;
            // The insert's trigger has bumped the organization's generation, so concurrent
            // inserts of the organization queue up here and each counts the others'.
            let count: i64 = defs::table
                .filter(defs::organization_id.eq(org.as_uuid()))
                .count()
                .get_result(conn)
                .await?;
            if usize::try_from(count).unwrap_or(usize::MAX) > limit {
                return Err(TxError::Write(DefinitionWriteError::TooMany));
            }
            audit::record(conn, org, change).await?;
            Ok(())
        })
        .await
        .map_err(DefinitionWriteError::from)?;
        Ok(())
    }

    async fn update(
        &self,
        org: OrgId,
        definition: &CustomFieldDefinition,
        expected_version: i32,
    ) -> Result<(), DefinitionWriteError> {
        let mut conn = self.conn().await?;
        let row = DefinitionRow::from(definition);
        let id = definition.id.as_uuid();
        conn.transaction(async |conn| {
            let before: Option<DefinitionRow> = defs::table
                .filter(defs::organization_id.eq(org.as_uuid()))
                .filter(defs::id.eq(id))
                .select(DefinitionRow::as_select())
                .for_update()
                .first(conn)
                .await
                .optional()?;
            let updated = diesel::update(defs::table)
                .filter(defs::organization_id.eq(org.as_uuid()))
                .filter(defs::id.eq(id))
                .filter(defs::version.eq(expected_version))
                .set(&row)
                .execute(conn)
                .await?;
            if updated == 0 {
                return Err(TxError::Write(missed(conn, org, id).await?));
            }
            // The caller checked too, but only now, after the update moved the
            // generation (migration 000014), is every contact write validated under the
            // old type visible here.
            if let Some(before) = &before
                && before.field_type != row.field_type
                && values_exist(conn, org, &before.key).await?
            {
                return Err(TxError::Write(DefinitionWriteError::ValuesExist));
            }
            if let Some(before) = before {
                let change = AuditChange::new(
                    "custom_field.updated",
                    "custom_field",
                    Some(id.to_string()),
                    &field_changes(&audited(&before), &audited(&row)),
                );
                audit::record(conn, org, change).await?;
            }
            Ok(())
        })
        .await
        .map_err(DefinitionWriteError::from)
    }

    async fn values_exist(&self, org: OrgId, key: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        values_exist(&mut conn, org, key).await.map_err(from_diesel)
    }

    async fn delete(
        &self,
        org: OrgId,
        id: CustomFieldId,
        expected: Option<i32>,
        actor: &EventActor,
        now: DateTime<Utc>,
    ) -> Result<(), DefinitionWriteError> {
        let mut conn = self.conn().await?;
        let actor = serde_json::to_value(actor).unwrap_or(serde_json::Value::Null);
        conn.transaction(async |conn| {
            let mut delete = diesel::delete(defs::table)
                .filter(defs::organization_id.eq(org.as_uuid()))
                .filter(defs::id.eq(id.as_uuid()))
                .into_boxed();
            if let Some(expected) = expected {
                delete = delete.filter(defs::version.eq(expected));
            }
            let removed: Option<DefinitionRow> = delete
                .returning(DefinitionRow::as_returning())
                .get_result(conn)
                .await
                .optional()?;
            let Some(removed) = removed else {
                return Err(TxError::Write(missed(conn, org, id.as_uuid()).await?));
            };
            let key = &removed.key;
            let change = AuditChange::new(
                "custom_field.deleted",
                "custom_field",
                Some(id.as_uuid().to_string()),
                &serde_json::json!({ "before": audited(&removed) }),
            );
            audit::record(conn, org, change).await?;
            diesel::sql_query(
                "WITH old AS (
                     SELECT id, custom_fields AS before FROM contacts
                     WHERE organization_id = $1 AND custom_fields ? $2 FOR UPDATE
                 ), changed AS (
                     UPDATE contacts c SET custom_fields = c.custom_fields - $2, version = c.version + 1, updated_at = $3
                     FROM old WHERE c.organization_id = $1 AND c.id = old.id
                     RETURNING c.organization_id, c.deleted_at, contact_event_json(c) AS doc, old.before, c.custom_fields AS after
                 )
                 INSERT INTO events (id, organization_id, type, occurred_at, actor, payload)
                 SELECT nexus_uuid_v7(), organization_id, 'contact.updated', $3, $4,
                        jsonb_build_object('contact', doc, 'changes', jsonb_build_object('customFields',
                            jsonb_build_object('from', before, 'to', after)))
                 FROM changed",
            )
            .bind::<SqlUuid, _>(org.as_uuid())
            .bind::<Text, _>(key)
            .bind::<Timestamptz, _>(now)
            .bind::<Jsonb, _>(actor)
            .execute(conn)
            .await?;
            Ok(())
        })
        .await
        .map_err(DefinitionWriteError::from)
    }
}
