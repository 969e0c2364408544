//! One OpenAPI document for the whole API: the three services' documents merged, with the
//! bearer scheme the gateway enforces.

use utoipa::OpenApi as _;
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};

/// The merged document.
pub fn merged() -> OpenApi {
    let mut doc = crate::users::ApiDoc::openapi();
    doc.merge(crate::products::ApiDoc::openapi());
    doc.merge(crate::orders::ApiDoc::openapi());
    doc.info.title = "cruncan services (through the gateway)".into();
    doc.info.description = Some("Users, products and orders; every route needs a bearer JWT.".into());
    let mut bearer = Http::new(HttpAuthScheme::Bearer);
    bearer.bearer_format = Some("JWT".into());
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme("bearer", SecurityScheme::Http(bearer));
    doc.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
    doc
}
