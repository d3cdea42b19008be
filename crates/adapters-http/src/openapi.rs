//! The OpenAPI 3.1 document: the shared parts declared here, every path collected from
//! the handlers registered in [`crate::api_routes`], so the spec and the router are one
//! list and cannot drift apart.

use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::AppExt;

use crate::dto::common::Money;
use crate::problem::{FieldError, Problem};
use crate::responses::{
    BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, PreconditionFailed,
    ServiceUnavailable, TooManyRequests, Unauthorized, Unprocessable, UnsupportedMediaType,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "NEXUS API",
        description = "Multi-tenant CRM API. Errors are RFC 9457 problem documents with a stable `code`; \
                       lists use keyset pagination (`limit`, `cursor` → `nextCursor`).",
        license(name = "Proprietary", identifier = "LicenseRef-Proprietary"),
        contact(name = "NEXUS API team")
    ),
    servers((url = "/", description = "This server")),
    components(
        schemas(Problem, FieldError, Money),
        responses(
            BadRequest, Unauthorized, Forbidden, NotFound, Conflict, PreconditionFailed, PayloadTooLarge,
            UnsupportedMediaType, Unprocessable, TooManyRequests, ServiceUnavailable
        )
    ),
    modifiers(&SecuritySchemes),
    security(("bearerAuth" = []), ("apiKeyAuth" = []), ("cookieAuth" = [])),
    tags(
        (name = "health", description = "Liveness, readiness and metrics (no token)."),
        (name = "auth", description = "Registration, login, sessions with rotating refresh tokens, passwords."),
        (name = "organizations", description = "The organization you act in."),
        (name = "members", description = "Team members and invitations."),
        (name = "api-keys", description = "Organization API keys for integrations (OWNER, ADMIN)."),
        (name = "pipelines", description = "Pipelines, their stages, and the board."),
        (name = "deals", description = "Deals: CRUD, filters, moves between stages, timelines."),
        (name = "activities", description = "Calls, emails, meetings, notes and tasks; system entries of deal changes."),
        (name = "contacts", description = "Contacts: CRUD with merge-patch and ETags, search, filters, keyset pages, soft delete, batches."),
        (name = "custom-fields", description = "Custom field definitions validated on every contact write (written by OWNER, ADMIN)."),
        (name = "tags", description = "Tags in use, with counts; rename (merging) and delete across contacts."),
        (name = "webhooks", description = "Signed, retried event deliveries to your URLs (Standard Webhooks), their log, redelivery and test pings (OWNER, ADMIN)."),
        (name = "events", description = "The organization's events: a pollable change feed and a Server-Sent Events stream."),
        (name = "audit-log", description = "Who changed what, when and from where (OWNER, ADMIN); read-only."),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearerAuth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "Access token from `POST /api/v1/auth/login` (15 minutes).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "apiKeyAuth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("nx_live_…")
                    .description(Some(
                        "Organization API key, sent as `Authorization: Bearer nx_live_…`.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "cookieAuth",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "nx_access",
                "Session cookie set by login; unsafe methods also need `X-CSRF-Token` equal to the `nx_csrf` cookie.",
            ))),
        );
    }
}

/// The full document, as generated from the code.
#[must_use]
pub fn spec() -> OpenApiDoc {
    let (_, spec) = actix_web::App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(crate::api_routes)
        .split_for_parts();
    spec
}

/// The document as committed: pretty JSON with a trailing newline.
///
/// # Errors
/// Serialization failures (a bug).
pub fn spec_json() -> Result<String, serde_json::Error> {
    let mut json = serde_json::to_string_pretty(&spec())?;
    json.push('\n');
    Ok(json)
}
