//! Requests no handler matched: 405 with `Allow` when the path exists under another
//! method (judged against the spec, which lists every route), else 404.

use actix_web::dev::ResourceDef;
use actix_web::http::Method;
use actix_web::{HttpRequest, web};
use utoipa::openapi::OpenApi;

use crate::problem::{ApiError, for_status};

/// Path templates and the methods each accepts.
pub struct RouteTable(Vec<(ResourceDef, Vec<String>)>);

impl RouteTable {
    #[must_use]
    pub fn from_spec(spec: &OpenApi) -> Self {
        const METHODS: [&str; 8] = [
            "get", "put", "post", "delete", "options", "head", "patch", "trace",
        ];
        let routes = spec
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let item = serde_json::to_value(item).unwrap_or_default();
                let methods = METHODS
                    .iter()
                    .filter(|m| item.get(**m).is_some())
                    .map(|m| m.to_ascii_uppercase())
                    .collect();
                (ResourceDef::new(path.as_str()), methods)
            })
            .collect();
        Self(routes)
    }

    fn allowed(&self, path: &str) -> Option<&[String]> {
        self.0
            .iter()
            .find(|(def, _)| def.is_match(path))
            .map(|(_, m)| m.as_slice())
    }
}

pub async fn not_matched(
    req: HttpRequest,
    table: web::Data<RouteTable>,
) -> Result<actix_web::HttpResponse, ApiError> {
    Err(decide(&req, &table))
}

fn decide(req: &HttpRequest, table: &RouteTable) -> ApiError {
    match table.allowed(req.path()) {
        Some(methods) if !methods.iter().any(|m| m == req.method().as_str()) => {
            let mut err = for_status(actix_web::http::StatusCode::METHOD_NOT_ALLOWED);
            err.detail = format!("{} is not allowed here.", req.method());
            let mut allow = methods.to_vec();
            if allow.iter().any(|m| m == Method::GET.as_str()) {
                allow.push("HEAD".into());
            }
            err.allow = Some(allow.join(", ").into());
            err
        }
        _ => ApiError::new(
            actix_web::http::StatusCode::NOT_FOUND,
            "not_found",
            format!("No route matches {}.", req.path()),
        ),
    }
}
