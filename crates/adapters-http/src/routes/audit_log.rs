//! `/api/v1/audit-log`: who changed what, when, from where (OWNER, ADMIN). Read-only:
//! there is no route to edit or delete an entry, and the table refuses both.

use actix_web::{get, web};
use nexus_application::EventUseCases;
use nexus_ports::audit::{AuditFilter, AuditKeyset};

use crate::auth::Auth;
use crate::cursor::{CursorCodec, CursorScope};
use crate::dto::common::{Page, take_page};
use crate::dto::events::{AuditEntryDto, AuditQuery};
use crate::problem::ApiError;
use crate::responses::{BadRequest, Forbidden, ServiceUnavailable, Unauthorized, Unprocessable};
use crate::routes::paging::limit_of;

type Events = web::Data<dyn EventUseCases>;
type Cursors = web::Data<CursorCodec>;

fn bounded(field: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if v.is_empty() || v.len() > 200 => {
            Err(ApiError::validation(vec![crate::problem::FieldError {
                field: field.into(),
                code: "invalid_length".into(),
                message: "1 to 200 characters.".into(),
            }]))
        }
        other => Ok(other),
    }
}

/// The organization's audit log, newest first: every change, who made it (a user, or an
/// API key and the user it acts for), from which address and user agent, and what changed
/// (field by field for updates). Secrets are never recorded.
#[utoipa::path(
    operation_id = "listAuditLog",
    tag = "audit-log",
    params(AuditQuery),
    responses(
        (status = 200, description = "One page, newest first.", body = Page<AuditEntryDto>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 422, response = Unprocessable),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[get("")]
pub async fn list_audit_log(
    auth: Auth,
    events: Events,
    cursors: Cursors,
    query: web::Query<AuditQuery>,
) -> Result<Page<AuditEntryDto>, ApiError> {
    let q = query.into_inner();
    let limit = limit_of(q.limit)?;
    if let (Some(from), Some(to)) = (q.from, q.to)
        && from >= to
    {
        return Err(ApiError::validation(vec![crate::problem::FieldError {
            field: "to".into(),
            code: "before_from".into(),
            message: "`to` must be after `from`.".into(),
        }]));
    }
    let filter = AuditFilter {
        actor: q.actor,
        entity_type: bounded("entityType", q.entity_type)?,
        entity_id: bounded("entityId", q.entity_id)?,
        action: bounded("action", q.action)?,
        from: q.from,
        to: q.to,
    };
    let scope = CursorScope {
        org: auth.0.org_id,
        list: "audit_log",
        sort: "-occurredAt".into(),
        filters: format!("{filter:?}"),
    };
    let before = cursors
        .decode_time(&scope, q.cursor.as_deref())?
        .map(|(occurred_at, id)| AuditKeyset { occurred_at, id });
    let mut rows = events.audit_log(auth.0, filter, before, limit + 1).await?;
    let more = take_page(&mut rows, limit);
    let next_cursor = more
        .then(|| rows.last())
        .flatten()
        .map(|last| cursors.encode_time(&scope, last.occurred_at, last.id));
    Ok(Page {
        data: rows.into_iter().map(AuditEntryDto::from).collect(),
        next_cursor,
        total: None,
    })
}
