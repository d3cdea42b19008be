//! `/api/v1/contacts/imports`: CSV files accepted at once as jobs (202), worked through in
//! the background; the job shows its progress and every row's problems.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use nexus_application::ImportUseCases;
use nexus_domain::ImportId;
use nexus_ports::imports::{ImportJob, OnDuplicate};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Auth;
use crate::problem::ApiError;
use crate::responses::{
    BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, RequestTimeout, ServiceUnavailable,
    TooManyRequests, Unauthorized, Unprocessable, UnsupportedMediaType,
};

type Imports = web::Data<dyn ImportUseCases>;

/// A CSV import sent as a form.
#[derive(ToSchema)]
#[expect(
    dead_code,
    reason = "describes the multipart body for the OpenAPI document only"
)]
pub struct ImportForm {
    /// The CSV file, header first (at most 50 MB).
    #[schema(value_type = String, format = Binary, content_media_type = "text/csv")]
    file: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnDuplicateDto {
    /// Leave the existing contact as it is (the row counts as skipped).
    Skip,
    /// Merge the row's non-empty cells into the existing contact.
    Update,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportParams {
    /// What to do with a row whose email belongs to an existing contact (default `skip`).
    pub on_duplicate: Option<OnDuplicateDto>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImportStatusDto {
    Pending,
    Running,
    Completed,
    Failed,
}

/// One problem of one row. Rows are the file's CSV records, 1 being the first after the
/// header: a quoted cell spanning lines is one row, so a row number can be below its line
/// number.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImportRowError {
    pub row: i64,
    /// The field (`email`, `customFields.seats`, ...), empty for the whole row.
    pub field: String,
    pub message: String,
}

/// An import job and its progress.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportJobDto {
    pub id: Uuid,
    pub status: ImportStatusDto,
    pub on_duplicate: OnDuplicateDto,
    /// Data rows in the file, once the worker has read it.
    #[schema(required = true)]
    pub total_rows: Option<i64>,
    pub rows_processed: i64,
    pub created: i64,
    pub updated: i64,
    /// Duplicates left alone (`onDuplicate=skip`, also of a contact created while the job
    /// ran), updates that changed nothing, and blank or all-empty rows.
    pub skipped: i64,
    pub failed: i64,
    /// The first 1,000 row errors (the counters are exact).
    pub errors: Vec<ImportRowError>,
    /// Why a failed job stopped (e.g. an unreadable file).
    #[schema(required = true)]
    pub failure: Option<String>,
    pub created_at: DateTime<Utc>,
    #[schema(required = true)]
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<ImportJob> for ImportJobDto {
    fn from(j: ImportJob) -> Self {
        use nexus_ports::imports::ImportStatus as S;
        Self {
            id: j.id.as_uuid(),
            status: match j.status {
                S::Pending => ImportStatusDto::Pending,
                S::Running => ImportStatusDto::Running,
                S::Completed => ImportStatusDto::Completed,
                S::Failed => ImportStatusDto::Failed,
            },
            on_duplicate: match j.on_duplicate {
                OnDuplicate::Skip => OnDuplicateDto::Skip,
                OnDuplicate::Update => OnDuplicateDto::Update,
            },
            total_rows: j.total_rows,
            rows_processed: j.processed,
            created: j.created,
            updated: j.updated,
            skipped: j.skipped,
            failed: j.failed,
            errors: j
                .errors
                .into_iter()
                .map(|e| ImportRowError {
                    row: e.row,
                    field: e.field,
                    message: e.message,
                })
                .collect(),
            failure: j.failure,
            created_at: j.created_at,
            finished_at: j.finished_at,
        }
    }
}

/// Import contacts from a CSV file (UTF-8, up to 50 MB).
///
/// Send the file as the body (`text/csv` or `application/csv`), or as the one part named
/// `file` of a `multipart/form-data` body (any other part is refused with 422).
///
/// The header maps columns to fields by name or a common alias, ignoring case and
/// punctuation (`firstName`/`First Name`, `lastName`/`Surname`, `email`/`E-mail`,
/// `phone`/`Mobile`, `company`, `lifecycleStage`/`Stage`, `ownerId`, `tags` separated by
/// `;`, or by `,` in a cell without `;`), and to custom fields by `customFields.<key>`, key or label; other columns are
/// ignored. `firstName` and `lastName` columns are required, except with
/// `onDuplicate=update` and an `email` column (a file that updates contacts found by
/// email). Rows are validated like `createContact`, or like `updateContact` when their
/// email finds a contact to update; a bad row is reported in the job and never stops
/// the others. Contacts are deduplicated by email (`onDuplicate`).
#[utoipa::path(
    operation_id = "importContacts",
    tag = "contacts",
    params(ImportParams),
    request_body(description = "The CSV file, header first: as the body, or as the `file` part of a form.",
        content((String = "text/csv"), (String = "application/csv"), (inline(ImportForm) = "multipart/form-data"))),
    responses(
        (status = 202, description = "Accepted: the job runs in the background; poll `Location`.", body = ImportJobDto,
         headers(("Location" = String, description = "The job."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 408, response = RequestTimeout),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[post("/imports")]
pub async fn import_contacts(
    req: HttpRequest,
    auth: Auth,
    imports: Imports,
    params: web::Query<ImportParams>,
    slots: web::Data<crate::upload::UploadSlots>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    // Refused before the body is read (a reader must not make the server hold 50 MB), and
    // before its shape is judged: a role that may not import learns that first.
    crate::upload::authorize(&auth.0)?;
    let kind = crate::upload::kind(req.headers()).ok_or_else(crate::upload::unsupported)?;
    // Held until the job is stored: the file is in memory until then.
    let _slot = slots.take(&req, auth.0.org_id)?;
    let csv = slots
        .within_deadline(crate::upload::read_file(req.headers(), kind, body))
        .await?;
    let on_duplicate = match params.on_duplicate {
        Some(OnDuplicateDto::Update) => OnDuplicate::Update,
        _ => OnDuplicate::Skip,
    };
    let job = imports.start(auth.0, csv, on_duplicate).await?;
    Ok(HttpResponse::Accepted()
        .insert_header((
            header::LOCATION,
            format!("/api/v1/contacts/imports/{}", job.id),
        ))
        .json(ImportJobDto::from(job)))
}

/// An import job: status, counters and row errors.
#[utoipa::path(
    operation_id = "getContactImport",
    tag = "contacts",
    params(("id" = Uuid, Path, description = "Import job id.")),
    responses(
        (status = 200, description = "The job.", body = ImportJobDto),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[get("/imports/{id}")]
pub async fn get_contact_import(
    auth: Auth,
    imports: Imports,
    path: web::Path<Uuid>,
) -> Result<web::Json<ImportJobDto>, ApiError> {
    let job = imports
        .get(auth.0, ImportId::from_uuid(path.into_inner()))
        .await?;
    Ok(web::Json(job.into()))
}
