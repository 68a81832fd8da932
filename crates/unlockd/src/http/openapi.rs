//! The OpenAPI 3.1 document, generated from the handlers' annotations and the wire types.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{actions, contacts, credits, events, exhibitors, ops, personnel};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearerAuth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("sk_<16 hex>_<64 hex> (uak_ accepted)")
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "unlockd",
        description = "Metered contact unlock, compatible with the contact-unlock part of the Lensmor external API. \
            Every error is {code, message, errorKey, traceId}; every response carries X-Request-ID; \
            authenticated responses carry X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset, \
            and 429 answers carry Retry-After."
    ),
    paths(
        contacts::create_email,
        contacts::get_email_task,
        contacts::create_phone,
        contacts::get_phone_task,
        personnel::search,
        personnel::list,
        personnel::profile,
        events::list,
        events::detail,
        exhibitors::list,
        exhibitors::profile,
        exhibitors::exhibitor_events,
        exhibitors::personnel_events,
        credits::balance,
        actions::precheck,
        ops::healthz,
        ops::readyz,
        ops::openapi,
        ops::metrics,
    ),
    components(schemas(unlockd_api::ApiError)),
    modifiers(&BearerAuth),
    tags(
        (name = "Contacts", description = "Unlock emails and phones in asynchronous tasks; contact search"),
        (name = "Personnel", description = "An event's people and profiles"),
        (name = "Events", description = "The event catalog"),
        (name = "Exhibitors", description = "An event's exhibitors, their profiles and events"),
        (name = "Credits", description = "Balances"),
        (name = "Actions", description = "Prechecks"),
        (name = "Operations", description = "Health, readiness, this document"),
    )
)]
struct ApiDoc;

pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}
