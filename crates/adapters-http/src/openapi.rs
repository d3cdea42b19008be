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
    BadRequest, Conflict, Forbidden, InternalError, NotFound, PayloadTooLarge, PreconditionFailed,
    RequestTimeout, ServiceUnavailable, TooManyRequests, Unauthorized, Unprocessable,
    UnsupportedMediaType,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "NEXUS API",
        description = "Multi-tenant CRM API. Errors are RFC 9457 problem documents with a stable `code`; \
                       lists use keyset pagination (`limit`, `cursor` → `nextCursor`). Every response carries \
                       `X-Request-Id` (the caller's own when it sent a valid one), also in problem documents as `requestId`.",
        license(name = "Proprietary", identifier = "LicenseRef-Proprietary"),
        contact(name = "NEXUS API team")
    ),
    servers((url = "/", description = "This server")),
    components(
        schemas(Problem, FieldError, Money),
        responses(
            BadRequest, Unauthorized, Forbidden, NotFound, Conflict, PreconditionFailed, RequestTimeout,
            PayloadTooLarge, UnsupportedMediaType, Unprocessable, TooManyRequests, InternalError,
            ServiceUnavailable
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
    let (_, mut spec) = actix_web::App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(crate::api_routes)
        .split_for_parts();
    document_idempotency(&mut spec);
    document_internal_errors(&mut spec);
    close_variants(&mut spec, "BatchItem");
    spec
}

/// An internally tagged enum with `#[serde(deny_unknown_fields)]` refuses unknown fields in
/// every variant, but utoipa says so only for structs: each variant of the named schema
/// gets `additionalProperties: false`.
fn close_variants(spec: &mut OpenApiDoc, name: &str) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{AdditionalProperties, Schema};

    let schema = spec
        .components
        .as_mut()
        .and_then(|c| c.schemas.get_mut(name));
    if let Some(RefOr::T(Schema::OneOf(one_of))) = schema {
        for item in &mut one_of.items {
            if let RefOr::T(Schema::Object(object)) = item {
                object.additional_properties =
                    Some(Box::new(AdditionalProperties::FreeForm(false)));
            }
        }
    }
}

/// Any handler can fail unexpectedly (the panic middleware and every unmapped error
/// answer 500 `internal_error`), so every operation lists it.
fn document_internal_errors(spec: &mut OpenApiDoc) {
    use utoipa::openapi::{Ref, RefOr};

    for item in spec.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            op.responses
                .responses
                .entry("500".to_owned())
                .or_insert_with(|| RefOr::Ref(Ref::from_response_name("InternalError")));
        }
    }
}

/// How the document names the header the idempotency middleware sets on a replayed response
/// (`idempotency::REPLAYED`, which is lower-case for the wire).
const REPLAYED_DOC_NAME: &str = "Idempotent-Replayed";

/// The idempotency middleware serves every authenticated POST, present and future, so
/// the document says so on each: the header, the 400, 409, 413 and 422 it can answer,
/// and the `Idempotent-Replayed` header of a response it replays. A route
/// may declare the header itself to describe it better (secrets shown once); its schema
/// is made the same as everywhere else.
fn document_idempotency(spec: &mut OpenApiDoc) {
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::{Object, Ref, RefOr, Required, Type};

    use crate::middleware::idempotency;

    let replayed = HeaderBuilder::new()
        .schema(Some(
            Object::builder()
                .schema_type(Type::String)
                .enum_values(Some(["true"])),
        ))
        .description(Some(
            "`true` when this is the stored response of an earlier POST with the same `Idempotency-Key` \
             (nothing was run again); absent otherwise, and on every other method.",
        ))
        .build();
    for item in spec.paths.paths.values_mut() {
        let Some(post) = item.post.as_mut() else {
            continue;
        };
        // `security(())`: a public route, where a key has no caller to belong to.
        let public = post
            .security
            .as_ref()
            .is_some_and(|s| s.iter().all(|r| r == &Default::default()));
        if public {
            continue;
        }
        let params = post.parameters.get_or_insert_with(Vec::new);
        // A route's own declaration keeps its description; the rest is the same on all.
        let mut description = idempotency::RETRY_DOC.to_owned();
        params.retain(|p| match p {
            RefOr::T(p) if p.name == idempotency::HEADER_DOC_NAME => {
                if let Some(own) = &p.description {
                    description.clone_from(own);
                }
                false
            }
            _ => true,
        });
        params.push(RefOr::T(
            ParameterBuilder::new()
                .name(idempotency::HEADER_DOC_NAME)
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .schema(Some(Object::with_type(Type::String)))
                .description(Some(description))
                .build(),
        ));
        for (status, response) in &mut post.responses.responses {
            if let (true, RefOr::T(response)) = (status.starts_with('2'), response) {
                response
                    .headers
                    .insert(REPLAYED_DOC_NAME.to_owned(), RefOr::T(replayed.clone()));
            }
        }
        // The key's body is read whole before the route runs, under the body limit.
        for (status, response) in [
            ("400", "BadRequest"),
            ("409", "Conflict"),
            ("413", "PayloadTooLarge"),
            ("422", "Unprocessable"),
        ] {
            post.responses
                .responses
                .entry(status.to_owned())
                .or_insert_with(|| RefOr::Ref(Ref::from_response_name(response)));
        }
    }
    // A refusal is stored and replayed like a success (only 5xx and answers with
    // `Retry-After` are not): the shared error responses a POST's route can give say so.
    if let Some(components) = spec.components.as_mut() {
        for name in [
            "BadRequest",
            "Forbidden",
            "NotFound",
            "Conflict",
            "PreconditionFailed",
            "UnsupportedMediaType",
            "Unprocessable",
        ] {
            if let Some(RefOr::T(response)) = components.responses.get_mut(name) {
                response
                    .headers
                    .insert(REPLAYED_DOC_NAME.to_owned(), RefOr::T(replayed.clone()));
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use serde_json::Value;

    fn posts() -> Vec<(String, Value)> {
        let spec = serde_json::to_value(super::spec()).unwrap_or_default();
        let mut posts = Vec::new();
        for (path, item) in spec["paths"].as_object().into_iter().flatten() {
            if let Some(post) = item.get("post") {
                posts.push((path.clone(), post.clone()));
            }
        }
        posts
    }

    fn idempotency_header(op: &Value) -> Option<Value> {
        op["parameters"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == "Idempotency-Key")
            .cloned()
    }

    #[test]
    fn every_authenticated_post_declares_the_idempotency_key_and_its_errors() {
        let posts = posts();
        assert!(posts.len() > 20, "{}", posts.len());
        for (path, op) in &posts {
            let public = op["security"] == serde_json::json!([{}]);
            let header = idempotency_header(op);
            if public {
                assert!(
                    header.is_none(),
                    "{path}: a public route has no caller to key"
                );
                continue;
            }
            let header = header.unwrap_or_else(|| panic!("{path}: no Idempotency-Key"));
            assert_eq!(header["in"], "header", "{path}");
            assert_eq!(header["required"], false, "{path}");
            assert_eq!(header["schema"]["type"], "string", "{path}");
            for status in ["400", "409", "413", "422"] {
                assert!(op["responses"].get(status).is_some(), "{path}: no {status}");
            }
            let successes: Vec<_> = op["responses"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(status, _)| status.starts_with('2'))
                .collect();
            assert!(!successes.is_empty(), "{path}: no success");
            for (status, response) in successes {
                let replayed = &response["headers"][super::REPLAYED_DOC_NAME];
                assert_eq!(replayed["schema"]["type"], "string", "{path} {status}");
            }
        }
    }

    /// A stored refusal is replayed too, so the shared error responses of POSTs carry the
    /// header.
    #[test]
    fn replayable_refusals_declare_the_replayed_header() {
        let spec = serde_json::to_value(super::spec()).unwrap_or_default();
        for name in [
            "BadRequest",
            "Forbidden",
            "NotFound",
            "Conflict",
            "Unprocessable",
        ] {
            let header =
                &spec["components"]["responses"][name]["headers"][super::REPLAYED_DOC_NAME];
            assert_eq!(header["schema"]["type"], "string", "{name}");
        }
    }

    /// `total` is in the schema of the lists that count, and only there.
    #[test]
    fn only_the_lists_that_count_document_a_total() {
        let spec = serde_json::to_value(super::spec()).unwrap_or_default();
        let schemas = spec["components"]["schemas"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let pages: Vec<_> = schemas
            .iter()
            .filter(|(k, _)| k.contains("Page_"))
            .collect();
        assert!(pages.len() > 10, "{}", pages.len());
        for (name, schema) in pages {
            let has_total = schema["properties"].get("total").is_some();
            assert_eq!(has_total, name.starts_with("CountedPage_"), "{name}");
        }
        for (path, list) in [
            ("/api/v1/contacts", "CountedPage_ContactDto"),
            ("/api/v1/tags", "CountedPage_TagDto"),
            ("/api/v1/custom-fields", "CountedPage_CustomFieldDto"),
        ] {
            let op = &spec["paths"][path]["get"];
            let body = &op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"];
            assert_eq!(body, &format!("#/components/schemas/{list}"), "{path}");
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            assert!(params.iter().any(|p| p["name"] == "includeTotal"), "{path}");
        }
    }

    /// Every object schema a response body can hold, with where it was found.
    fn response_objects(spec: &Value) -> Vec<(String, Value)> {
        fn walk(
            spec: &Value,
            at: String,
            schema: &Value,
            seen: &mut Vec<String>,
            out: &mut Vec<(String, Value)>,
        ) {
            if let Some(target) = schema["$ref"].as_str() {
                if seen.iter().any(|s| s == target) {
                    return;
                }
                seen.push(target.to_owned());
                let name = target.rsplit('/').next().unwrap_or_default();
                walk(
                    spec,
                    name.to_owned(),
                    &spec["components"]["schemas"][name],
                    seen,
                    out,
                );
                return;
            }
            if let Some(props) = schema["properties"].as_object() {
                out.push((at.clone(), schema.clone()));
                for (name, prop) in props {
                    walk(spec, format!("{at}.{name}"), prop, seen, out);
                }
            }
            for key in ["items", "additionalProperties"] {
                if schema[key].is_object() {
                    walk(spec, format!("{at}[]"), &schema[key], seen, out);
                }
            }
            for key in ["oneOf", "anyOf", "allOf"] {
                for (i, item) in schema[key].as_array().into_iter().flatten().enumerate() {
                    walk(spec, format!("{at}/{key}{i}"), item, seen, out);
                }
            }
        }
        let mut out = Vec::new();
        let mut seen = Vec::new();
        let mut responses: Vec<Value> = spec["components"]["responses"]
            .as_object()
            .into_iter()
            .flat_map(|r| r.values().cloned())
            .collect();
        for item in spec["paths"]
            .as_object()
            .into_iter()
            .flat_map(|p| p.values())
        {
            for op in item.as_object().into_iter().flat_map(|o| o.values()) {
                responses.extend(
                    op["responses"]
                        .as_object()
                        .into_iter()
                        .flat_map(|r| r.values().cloned()),
                );
            }
        }
        for response in &responses {
            for media in response["content"]
                .as_object()
                .into_iter()
                .flat_map(|c| c.values())
            {
                walk(
                    spec,
                    "response".into(),
                    &media["schema"],
                    &mut seen,
                    &mut out,
                );
            }
        }
        out
    }

    fn nullable(schema: &Value) -> bool {
        schema["type"]
            .as_array()
            .is_some_and(|t| t.contains(&Value::from("null")))
            || schema["oneOf"]
                .as_array()
                .is_some_and(|o| o.iter().any(|s| s["type"] == "null"))
    }

    /// serde writes an `Option` field either always (`null` when `None`: required and
    /// nullable) or only when `Some` (`skip_serializing_if`: optional, never null). An
    /// optional nullable property of a response says neither.
    #[test]
    fn no_response_property_is_both_optional_and_nullable() {
        let spec = serde_json::to_value(super::spec()).unwrap_or_default();
        let objects = response_objects(&spec);
        assert!(objects.len() > 30, "{}", objects.len());
        let mut wrong = Vec::new();
        for (at, object) in &objects {
            let required: Vec<&str> = object["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            for (name, prop) in object["properties"].as_object().into_iter().flatten() {
                if nullable(prop) && !required.contains(&name.as_str()) {
                    wrong.push(format!("{at}.{name}"));
                }
            }
        }
        assert!(wrong.is_empty(), "optional and nullable: {wrong:?}");
    }

    /// What serde writes for `None` fields, against the schema of the same type.
    fn assert_schema_says_what_serde_writes(name: &str, written: &Value) {
        let spec = serde_json::to_value(super::spec()).unwrap_or_default();
        let schema = &spec["components"]["schemas"][name];
        let required = schema["required"].as_array().cloned().unwrap_or_default();
        for (field, prop) in schema["properties"].as_object().into_iter().flatten() {
            let is_required = required.contains(&Value::from(field.as_str()));
            match written.get(field) {
                Some(Value::Null) => assert!(is_required && nullable(prop), "{name}.{field}: null"),
                Some(_) => assert!(is_required, "{name}.{field}: always written"),
                None => assert!(!is_required && !nullable(prop), "{name}.{field}: absent"),
            }
        }
    }

    #[test]
    fn option_fields_are_documented_as_serde_writes_them() {
        use crate::dto::common::Page;
        use crate::dto::contacts::BatchItemResult;
        use crate::problem::Problem;

        let page: Page<crate::dto::contacts::TagDto> = Page {
            data: Vec::new(),
            next_cursor: None,
            total: None,
        };
        assert_schema_says_what_serde_writes(
            "Page_TagDto",
            &serde_json::to_value(page).unwrap_or_default(),
        );
        let result = BatchItemResult {
            index: 0,
            status: 204,
            data: None,
            error: None,
        };
        assert_schema_says_what_serde_writes(
            "BatchItemResult",
            &serde_json::to_value(result).unwrap_or_default(),
        );
        let problem = Problem {
            problem_type: "urn:nexus:problem:not_found".into(),
            title: "Not Found".into(),
            status: 404,
            detail: "gone".into(),
            code: "not_found".into(),
            errors: None,
            request_id: None,
        };
        assert_schema_says_what_serde_writes(
            "Problem",
            &serde_json::to_value(problem).unwrap_or_default(),
        );
    }

    #[test]
    fn every_operation_documents_the_internal_error() {
        let spec = serde_json::to_value(super::spec()).unwrap_or_default();
        let mut operations = 0;
        for (path, item) in spec["paths"].as_object().into_iter().flatten() {
            for (method, op) in item.as_object().into_iter().flatten() {
                operations += 1;
                assert_eq!(
                    op["responses"]["500"]["$ref"], "#/components/responses/InternalError",
                    "{method} {path}"
                );
            }
        }
        assert!(operations > 70, "{operations}");
    }

    #[test]
    fn the_replayed_header_is_the_one_the_middleware_sets() {
        assert!(
            super::REPLAYED_DOC_NAME.eq_ignore_ascii_case(crate::middleware::idempotency::REPLAYED)
        );
    }

    #[test]
    fn every_batch_item_variant_is_closed_as_serde_closes_it() {
        use crate::dto::contacts::BatchItem;

        let spec = serde_json::to_value(super::spec()).unwrap_or_default();
        let variants = spec["components"]["schemas"]["BatchItem"]["oneOf"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(variants.len(), 3);
        let id = "00000000-0000-0000-0000-000000000001";
        for (variant, extra) in variants.iter().zip([
            serde_json::json!({"op": "create", "data": {}, "extra": 1}),
            serde_json::json!({"op": "update", "id": id, "data": {}, "extra": 1}),
            serde_json::json!({"op": "delete", "id": id, "extra": 1}),
        ]) {
            assert_eq!(variant["additionalProperties"], false, "{variant}");
            assert!(
                serde_json::from_value::<BatchItem>(extra.clone()).is_err(),
                "{extra}"
            );
        }
    }

    #[test]
    fn routes_that_show_a_secret_once_say_a_retry_does_not_get_it() {
        let posts = posts();
        for id in [
            "createApiKey",
            "createWebhook",
            "rotateWebhookSecret",
            "switchOrganization",
        ] {
            let (_, op) = posts
                .iter()
                .find(|(_, op)| op["operationId"] == id)
                .unwrap_or_else(|| panic!("no {id}"));
            let header = idempotency_header(op).unwrap_or_default();
            let text = header["description"].as_str().unwrap_or_default();
            assert!(
                text.contains("idempotency_secret_not_replayed"),
                "{id}: {text}"
            );
        }
    }
}
