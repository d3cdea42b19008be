//! The actix-web adapter: routes, extractors, problem+json and the OpenAPI document.
//! It calls application use cases only; it never sees diesel.

pub mod app_error;
pub mod auth;
pub mod concurrency;
pub mod cursor;
pub mod dto;
pub mod extract;
pub mod fallback;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod problem;
pub mod responses;
pub mod routes;
pub mod session_cookies;
pub mod upload;

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::from_fn;
use actix_web::{App, web};
use nexus_application::{
    AuthUseCases, ContactUseCases, EventUseCases, HealthUseCases, IdempotencyUseCases,
    ImportUseCases, SalesUseCases, TeamUseCases, WebhookUseCases,
};
use utoipa_actix_web::AppExt;
use utoipa_actix_web::service_config::ServiceConfig;
use utoipa_swagger_ui::SwaggerUi;

pub use metrics::Metrics;
pub use problem::{ApiError, Problem};

/// HTTP behaviour set by configuration.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest accepted request body, in bytes (413 above it).
    pub body_limit: usize,
    /// Send `Strict-Transport-Security` (only when served behind TLS).
    pub hsts: bool,
    /// Mark session cookies `Secure` (everywhere but local development over HTTP).
    pub secure_cookies: bool,
    /// How often an idle event stream sends a keep-alive comment.
    pub sse_heartbeat: std::time::Duration,
    /// How long an event stream lasts before the client must reconnect (and re-authenticate).
    pub sse_max_lifetime: std::time::Duration,
    /// How long a CSV upload may take to arrive (408 after).
    pub upload_deadline: std::time::Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            body_limit: 1024 * 1024,
            hsts: false,
            secure_cookies: true,
            sse_heartbeat: std::time::Duration::from_secs(15),
            sse_max_lifetime: std::time::Duration::from_secs(15 * 60),
            upload_deadline: std::time::Duration::from_secs(120),
        }
    }
}

/// The use cases behind the routes, one per area.
#[derive(Clone)]
pub struct Services {
    pub health: Arc<dyn HealthUseCases>,
    pub auth: Arc<dyn AuthUseCases>,
    pub team: Arc<dyn TeamUseCases>,
    pub contacts: Arc<dyn ContactUseCases>,
    pub idempotency: Arc<dyn IdempotencyUseCases>,
    pub imports: Arc<dyn ImportUseCases>,
    pub sales: Arc<dyn SalesUseCases>,
    pub webhooks: Arc<dyn WebhookUseCases>,
    pub events: Arc<dyn EventUseCases>,
}

/// Everything the handlers need, shared by all workers.
#[derive(Clone)]
pub struct AppState {
    pub services: Services,
    pub metrics: Arc<Metrics>,
    pub settings: HttpSettings,
    cursors: Arc<cursor::CursorCodec>,
    uploads: Arc<upload::UploadSlots>,
    spec: Arc<utoipa::openapi::OpenApi>,
    routes: Arc<fallback::RouteTable>,
    extra_routes: Option<fn(&mut web::ServiceConfig)>,
}

impl AppState {
    pub fn new(services: Services, metrics: Arc<Metrics>, settings: HttpSettings) -> Self {
        let spec = openapi::spec();
        let routes = fallback::RouteTable::from_spec(&spec);
        let uploads = Arc::new(upload::UploadSlots::new(settings.upload_deadline));
        Self {
            services,
            metrics,
            settings,
            cursors: Arc::new(cursor::CursorCodec::random()),
            uploads,
            spec: Arc::new(spec),
            routes: Arc::new(routes),
            extra_routes: None,
        }
    }

    /// Signs pagination cursors with a key derived from `secret`, so that every instance
    /// sharing it accepts the others' cursors (without it, a per-process random key).
    #[must_use]
    pub fn with_cursor_secret(mut self, secret: &[u8]) -> Self {
        self.cursors = Arc::new(cursor::CursorCodec::from_secret(secret));
        self
    }

    /// Mounts routes that are not part of the API (tests use it to exercise the
    /// middleware with handlers that panic or take bodies).
    #[must_use]
    pub fn with_extra_routes(mut self, routes: fn(&mut web::ServiceConfig)) -> Self {
        self.extra_routes = Some(routes);
        self
    }
}

/// Every documented route. The spec is generated from this same list.
pub fn api_routes(cfg: &mut ServiceConfig) {
    use routes::{
        activities, api_keys, audit_log, auth, contact_imports, contacts, contacts_export,
        contacts_trash, custom_fields, deals, events, health, members, organization, pipelines,
        tags, webhooks,
    };
    cfg.service(health::live)
        .service(health::ready)
        .service(health::metrics);
    cfg.service(
        utoipa_actix_web::scope("/api/v1")
            .service(
                utoipa_actix_web::scope("/auth")
                    .service(auth::register)
                    .service(auth::login)
                    .service(auth::refresh)
                    .service(auth::logout)
                    .service(auth::me)
                    .service(auth::switch_organization)
                    .service(auth::change_password)
                    .service(auth::forgot_password)
                    .service(auth::reset_password),
            )
            .service(
                utoipa_actix_web::scope("/organizations")
                    .service(organization::get_current)
                    .service(organization::update_current),
            )
            .service(
                utoipa_actix_web::scope("/members")
                    .service(members::list_members)
                    .service(members::update_member)
                    .service(members::remove_member),
            )
            .service(
                utoipa_actix_web::scope("/invitations")
                    .service(members::create_invitation)
                    .service(members::list_invitations)
                    .service(members::revoke_invitation)
                    .service(members::accept_invitation),
            )
            .service(
                utoipa_actix_web::scope("/api-keys")
                    .service(api_keys::create_api_key)
                    .service(api_keys::list_api_keys)
                    .service(api_keys::revoke_api_key),
            )
            .service(
                utoipa_actix_web::scope("/pipelines")
                    .service(pipelines::list_pipelines)
                    .service(pipelines::create_pipeline)
                    .service(pipelines::get_pipeline)
                    .service(pipelines::update_pipeline)
                    .service(pipelines::delete_pipeline)
                    .service(pipelines::board)
                    .service(pipelines::stage_deals),
            )
            .service(
                utoipa_actix_web::scope("/deals")
                    .service(deals::list_deals)
                    .service(deals::create_deal)
                    .service(deals::get_deal)
                    .service(deals::update_deal)
                    .service(deals::delete_deal)
                    .service(deals::move_deal)
                    .service(deals::deal_timeline),
            )
            .service(
                utoipa_actix_web::scope("/activities")
                    .service(activities::list_activities)
                    .service(activities::create_activity)
                    .service(activities::get_activity)
                    .service(activities::complete_activity)
                    .service(activities::reopen_activity)
                    .service(activities::delete_activity),
            )
            .service(
                // Each group its own scope: a request is matched against its group's
                // routes only (matching all 70 in turn was a fifth of a get's CPU).
                utoipa_actix_web::scope("/contacts")
                    // `/batch` before `/{id}`-shaped routes of other methods.
                    .service(contacts::batch_contacts)
                    .service(contacts::create_contact)
                    .service(contacts::list_contacts)
                    // Before `/{id}`, which would otherwise claim `/export` and `/deleted`.
                    .service(contacts_export::export_contacts)
                    .service(contacts_trash::list_deleted_contacts)
                    .service(contact_imports::import_contacts)
                    .service(contact_imports::get_contact_import)
                    .service(contacts::get_contact)
                    .service(contacts::update_contact)
                    .service(contacts::delete_contact)
                    .service(contacts::restore_contact)
                    .service(contacts::contact_timeline),
            )
            .service(
                utoipa_actix_web::scope("/custom-fields")
                    .service(custom_fields::list_custom_fields)
                    .service(custom_fields::create_custom_field)
                    .service(custom_fields::get_custom_field)
                    .service(custom_fields::update_custom_field)
                    .service(custom_fields::delete_custom_field),
            )
            .service(
                utoipa_actix_web::scope("/tags")
                    .service(tags::list_tags)
                    .service(tags::rename_tag)
                    .service(tags::delete_tag),
            )
            .service(
                utoipa_actix_web::scope("/webhooks")
                    .service(webhooks::create_webhook)
                    .service(webhooks::list_webhooks)
                    .service(webhooks::get_webhook)
                    .service(webhooks::update_webhook)
                    .service(webhooks::delete_webhook)
                    .service(webhooks::rotate_webhook_secret)
                    .service(webhooks::list_webhook_deliveries)
                    .service(webhooks::get_webhook_delivery)
                    .service(webhooks::redeliver_webhook_delivery)
                    .service(webhooks::test_webhook),
            )
            .service(
                utoipa_actix_web::scope("/events")
                    // `/stream` before any `/{..}`-shaped route.
                    .service(events::stream_events)
                    .service(events::list_events),
            )
            .service(utoipa_actix_web::scope("/audit-log").service(audit_log::list_audit_log)),
    );
}

/// The actix application for one worker.
pub fn build_app(
    state: AppState,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let settings = state.settings.clone();
    let extra = state.extra_routes;
    let (app, _) = App::new()
        .app_data(web::Data::from(state.services.health.clone()))
        .app_data(web::Data::from(state.services.auth.clone()))
        .app_data(web::Data::from(state.services.team.clone()))
        .app_data(web::Data::from(state.services.contacts.clone()))
        .app_data(web::Data::from(state.services.sales.clone()))
        .app_data(web::Data::from(state.services.webhooks.clone()))
        .app_data(web::Data::from(state.services.idempotency.clone()))
        .app_data(web::Data::from(state.services.imports.clone()))
        .app_data(web::Data::from(state.services.events.clone()))
        .app_data(web::Data::new(routes::events::StreamSettings {
            heartbeat: settings.sse_heartbeat,
            max_lifetime: settings.sse_max_lifetime,
        }))
        .app_data(web::Data::from(state.cursors.clone()))
        .app_data(web::Data::from(state.uploads.clone()))
        // Per worker, as the contacts' connection pools are (`contacts_export`).
        .app_data(web::Data::new(
            routes::contacts_export::ExportSlots::per_worker(),
        ))
        .app_data(web::Data::new(settings.clone()))
        .app_data(web::Data::from(state.metrics.clone()))
        .app_data(web::Data::from(state.routes.clone()))
        .configure(|cfg| extract::configure(cfg, settings.body_limit))
        // Inside the idempotency middleware, so a panic is a 500 it sees and releases
        // the key for (outside, the key stayed "in flight" until it went stale).
        .wrap(from_fn(middleware::panic::middleware))
        .wrap(from_fn(middleware::idempotency::middleware))
        .wrap(from_fn(middleware::request_context::middleware))
        .wrap(from_fn(middleware::problem_fallback::middleware))
        .wrap(middleware::security_headers::default_headers(settings.hsts))
        .wrap(from_fn(middleware::request_id::middleware))
        // Before the `/api/v1` scope, which would otherwise claim `/api/v1/openapi.json`.
        .service(SwaggerUi::new("/docs/{_:.*}").url("/api/v1/openapi.json", (*state.spec).clone()))
        .into_utoipa_app()
        .configure(api_routes)
        .split_for_parts();
    app.route("/docs", web::get().to(docs_redirect))
        .configure(|cfg| {
            if let Some(extra) = extra {
                extra(cfg);
            }
        })
        .default_service(web::to(fallback::not_matched))
}

async fn docs_redirect() -> actix_web::HttpResponse {
    actix_web::HttpResponse::PermanentRedirect()
        .insert_header(("Location", "/docs/"))
        .finish()
}
