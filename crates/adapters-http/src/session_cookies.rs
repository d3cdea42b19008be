//! Tokens travel both in the body and as cookies: `httpOnly` access and refresh cookies
//! for browsers, plus a readable CSRF cookie for the double-submit check.

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::{HttpResponse, HttpResponseBuilder};
use nexus_application::IssuedTokens;

use crate::HttpSettings;
use crate::auth::{ACCESS_COOKIE, CSRF_COOKIE, REFRESH_COOKIE};
use crate::dto::auth::TokenResponse;
use crate::middleware::idempotency::shown_once;

const REFRESH_PATH: &str = "/api/v1/auth";

fn cookie(
    name: &'static str,
    value: String,
    path: &'static str,
    max_age: i64,
    http_only: bool,
    secure: bool,
) -> Cookie<'static> {
    Cookie::build(name, value)
        .path(path)
        .http_only(http_only)
        .secure(secure)
        .same_site(SameSite::Lax)
        .max_age(CookieDuration::seconds(max_age))
        .finish()
}

/// The JSON body and the cookies of a token grant.
pub fn grant(
    mut builder: HttpResponseBuilder,
    tokens: IssuedTokens,
    settings: &HttpSettings,
    csrf: String,
) -> HttpResponse {
    let secure = settings.secure_cookies;
    let access_age = i64::try_from(tokens.expires_in.as_secs()).unwrap_or(900);
    builder.cookie(cookie(
        ACCESS_COOKIE,
        tokens.access_token.clone(),
        "/",
        access_age,
        true,
        secure,
    ));
    builder.cookie(cookie(CSRF_COOKIE, csrf, "/", 7 * 24 * 3600, false, secure));
    if let Some(refresh) = &tokens.refresh_token {
        builder.cookie(cookie(
            REFRESH_COOKIE,
            refresh.clone(),
            REFRESH_PATH,
            7 * 24 * 3600,
            true,
            secure,
        ));
    }
    shown_once(builder.json(TokenResponse {
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        token_type: "Bearer",
        expires_in: tokens.expires_in.as_secs(),
        organization_id: tokens.org_id.as_uuid(),
        role: tokens.role.into(),
    }))
}

/// Expires every session cookie.
pub fn clear(mut builder: HttpResponseBuilder, settings: &HttpSettings) -> HttpResponse {
    let secure = settings.secure_cookies;
    builder.cookie(cookie(ACCESS_COOKIE, String::new(), "/", 0, true, secure));
    builder.cookie(cookie(CSRF_COOKIE, String::new(), "/", 0, false, secure));
    builder.cookie(cookie(
        REFRESH_COOKIE,
        String::new(),
        REFRESH_PATH,
        0,
        true,
        secure,
    ));
    builder.finish()
}

/// A fresh CSRF token: random, unguessable, bound to nothing but the cookie it mirrors.
pub fn new_csrf_token() -> String {
    uuid::Uuid::new_v4().simple().to_string() + &uuid::Uuid::new_v4().simple().to_string()
}
