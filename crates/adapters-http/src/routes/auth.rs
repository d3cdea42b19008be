//! `/api/v1/auth/*`: registration, login, sessions and passwords.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use nexus_application::AuthUseCases;
use nexus_application::auth::RegisterCommand;
use nexus_domain::OrgId;

use crate::HttpSettings;
use crate::auth::{Auth, REFRESH_COOKIE, check_csrf, client_meta};
use crate::dto::auth::{
    ChangePasswordRequest, ForgotPasswordRequest, LoginRequest, MeResponse, RefreshRequest,
    RegisterRequest, ResetPasswordRequest, SwitchOrganizationRequest, TokenResponse,
};
use crate::middleware::idempotency;
use crate::problem::ApiError;
use crate::responses::{
    BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, ServiceUnavailable,
    TooManyRequests, Unauthorized, Unprocessable, UnsupportedMediaType,
};
use crate::session_cookies::{clear, grant, new_csrf_token};

type Service = web::Data<dyn AuthUseCases>;

/// Create an account, its organization (you become OWNER) and a session.
#[utoipa::path(
    operation_id = "register",
    tag = "auth",
    security(()),
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Account, organization and session created.", body = TokenResponse,
         headers(("Location" = String, description = "`/api/v1/auth/me`"))),
        (status = 400, response = BadRequest),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[post("/register")]
pub async fn register(
    req: HttpRequest,
    service: Service,
    settings: web::Data<HttpSettings>,
    body: web::Json<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let cmd = RegisterCommand {
        email: body.email,
        password: body.password,
        name: body.name,
        organization_name: body.organization_name,
    };
    let tokens = service.register(cmd, client_meta(&req)).await?;
    let mut builder = HttpResponse::Created();
    builder.insert_header(("Location", "/api/v1/auth/me"));
    Ok(grant(builder, tokens, &settings, new_csrf_token()))
}

/// Log in with email and password.
#[utoipa::path(
    operation_id = "login",
    tag = "auth",
    security(()),
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Session created.", body = TokenResponse),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[post("/login")]
pub async fn login(
    req: HttpRequest,
    service: Service,
    settings: web::Data<HttpSettings>,
    body: web::Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let tokens = service
        .login(body.email, body.password, client_meta(&req))
        .await?;
    Ok(grant(
        HttpResponse::Ok(),
        tokens,
        &settings,
        new_csrf_token(),
    ))
}

/// Exchange a refresh token for a new access token and a new refresh token. The
/// presented token is spent; presenting it again revokes the whole session.
#[utoipa::path(
    operation_id = "refreshSession",
    tag = "auth",
    security(()),
    request_body(content = RefreshRequest, description = "Omit the body to use the `nx_refresh` cookie (then `X-CSRF-Token` is required)."),
    responses(
        (status = 200, description = "Rotated.", body = TokenResponse),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[post("/refresh")]
pub async fn refresh(
    req: HttpRequest,
    service: Service,
    settings: web::Data<HttpSettings>,
    body: Option<web::Json<RefreshRequest>>,
) -> Result<HttpResponse, ApiError> {
    let presented = match body.and_then(|b| b.into_inner().refresh_token) {
        Some(token) => token,
        None => {
            let cookie = req.cookie(REFRESH_COOKIE).ok_or_else(|| {
                ApiError::unauthenticated(
                    "invalid_refresh_token",
                    "Send `refreshToken` or the nx_refresh cookie.",
                )
            })?;
            check_csrf(&req)?;
            cookie.value().to_owned()
        }
    };
    let tokens = service.refresh(presented).await?;
    Ok(grant(
        HttpResponse::Ok(),
        tokens,
        &settings,
        new_csrf_token(),
    ))
}

/// End this session: its refresh token and every access token of it stop working.
#[utoipa::path(
    operation_id = "logout",
    tag = "auth",
    responses(
        (status = 204, description = "Logged out; session cookies cleared."),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[post("/logout")]
pub async fn logout(
    auth: Auth,
    service: Service,
    settings: web::Data<HttpSettings>,
) -> Result<HttpResponse, ApiError> {
    service.logout(auth.0).await?;
    Ok(clear(HttpResponse::NoContent(), &settings))
}

/// The caller: user, current organization and role, and all memberships.
#[utoipa::path(
    operation_id = "getMe",
    tag = "auth",
    responses(
        (status = 200, description = "The caller.", body = MeResponse),
        (status = 401, response = Unauthorized),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[get("/me")]
pub async fn me(auth: Auth, service: Service) -> Result<web::Json<MeResponse>, ApiError> {
    Ok(web::Json(service.me(auth.0).await?.into()))
}

/// Act in another organization you belong to. Returns a new access token; the session
/// (and its refresh token) carries on in the new organization.
#[utoipa::path(
    operation_id = "switchOrganization",
    tag = "auth",
    request_body = SwitchOrganizationRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = idempotency::SHOWN_ONCE_RETRY)),
    responses(
        (status = 200, description = "Switched.", body = TokenResponse),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[post("/switch-organization")]
pub async fn switch_organization(
    auth: Auth,
    service: Service,
    settings: web::Data<HttpSettings>,
    body: web::Json<SwitchOrganizationRequest>,
) -> Result<HttpResponse, ApiError> {
    let tokens = service
        .switch_organization(auth.0, OrgId::from_uuid(body.organization_id))
        .await?;
    Ok(grant(
        HttpResponse::Ok(),
        tokens,
        &settings,
        new_csrf_token(),
    ))
}

/// Change your password; every other session of yours is revoked.
#[utoipa::path(
    operation_id = "changePassword",
    tag = "auth",
    request_body = ChangePasswordRequest,
    responses(
        (status = 204, description = "Changed."),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 422, response = Unprocessable),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[post("/change-password")]
pub async fn change_password(
    auth: Auth,
    service: Service,
    body: web::Json<ChangePasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    service
        .change_password(auth.0, body.current_password, body.new_password)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Ask for a password reset email. Always 202, whether or not the account exists, and
/// in the same time: the email is sent in the background.
#[utoipa::path(
    operation_id = "forgotPassword",
    tag = "auth",
    security(()),
    request_body = ForgotPasswordRequest,
    responses(
        (status = 202, description = "If the account exists, a reset token is on its way."),
        (status = 400, response = BadRequest),
        (status = 422, response = Unprocessable),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[post("/forgot-password")]
pub async fn forgot_password(
    req: HttpRequest,
    service: Service,
    body: web::Json<ForgotPasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    let email = service
        .request_password_reset(body.into_inner().email, client_meta(&req))
        .await?;
    let service = service.into_inner();
    tokio::spawn(async move {
        if let Err(err) = service.deliver_password_reset(email).await {
            tracing::error!(error = %err, "password reset delivery failed");
        }
    });
    Ok(HttpResponse::Accepted().finish())
}

/// Set a new password with a reset token; all sessions are revoked.
#[utoipa::path(
    operation_id = "resetPassword",
    tag = "auth",
    security(()),
    request_body = ResetPasswordRequest,
    responses(
        (status = 204, description = "Password set; log in again."),
        (status = 400, response = BadRequest),
        (status = 422, response = Unprocessable),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[post("/reset-password")]
pub async fn reset_password(
    service: Service,
    body: web::Json<ResetPasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    service
        .reset_password(body.token, body.new_password)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
