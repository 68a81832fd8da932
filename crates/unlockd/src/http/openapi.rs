//! The OpenAPI 3.1 document, generated from the handlers' annotations and the wire types.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{
    actions, admin, contacts, credits, events, exhibitors, integrators, ops, personnel, progress,
    webhooks,
};

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
        components.add_security_scheme(
            "adminToken",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("the operator token (--admin-token / UNLOCKD_ADMIN_TOKEN)")
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
        progress::email_events,
        progress::phone_events,
        webhooks::create,
        webhooks::list,
        webhooks::remove,
        webhooks::deliveries,
        webhooks::redeliver,
        webhooks::rotate_secret,
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
        integrators::list_email_tasks,
        integrators::list_phone_tasks,
        integrators::usage,
        admin::status,
        admin::list_accounts,
        admin::create_account,
        admin::list_keys,
        admin::create_key,
        admin::revoke_key,
        admin::grant,
        admin::verify_ledger,
        admin::queue,
        admin::account_usage,
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
        (name = "Webhooks", description = "Signed deliveries of task and credit events [extension]"),
        (name = "Operator", description = "Operator API behind the operator token (extension)"),
    )
)]
struct ApiDoc;

/// The document as served: generated from the annotations, with the handlers' limits
/// written in (JSON, since some of them have no place in utoipa's typed model).
pub fn document() -> serde_json::Value {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    let mut value = serde_json::to_value(&doc).unwrap_or_default();
    declare_limits(&mut value);
    mark_extensions(&mut value);
    admin::declare_body_schemas(&mut value);
    value
}

/// Operations unlockd adds to the upstream contract, by path and method.
const EXTENSION_OPERATIONS: &[(&str, &str)] = &[
    ("/external/contacts/unlock-tasks", "get"),
    ("/external/contacts/unlock-phone-tasks", "get"),
    ("/external/usage", "get"),
    ("/external/contacts/unlock-tasks/{taskId}/events", "get"),
    (
        "/external/contacts/unlock-phone-tasks/{taskId}/events",
        "get",
    ),
    ("/external/webhooks", "post"),
    ("/external/webhooks", "get"),
    ("/external/webhooks/{id}", "delete"),
    ("/external/webhooks/{id}/deliveries", "get"),
    (
        "/external/webhooks/{id}/deliveries/{deliveryId}/redeliver",
        "post",
    ),
    ("/external/webhooks/{id}/rotate-secret", "post"),
];

/// Parameters unlockd adds to upstream operations, by path, method and name.
const EXTENSION_PARAMETERS: &[(&str, &str, &str)] = &[
    ("/external/contacts/unlock", "post", "Idempotency-Key"),
    ("/external/contacts/unlock-phone", "post", "Idempotency-Key"),
];

/// Schemas only extensions use.
const EXTENSION_SCHEMAS: &[&str] = &[
    "UnlockTaskListEntry",
    "UnlockTaskPage",
    "UsageGroupRow",
    "UsageReport",
    "CreateWebhookRequest",
    "WebhookEventName",
    "RotateSecretRequest",
    "WebhookEndpointBody",
    "WebhookEndpointList",
    "WebhookDeliveryBody",
    "WebhookDeliveryList",
];

/// Marks what unlockd adds to the upstream contract with `x-unlockd-extension: true`.
fn mark_extensions(doc: &mut serde_json::Value) {
    // Every operation of the operator API is an extension.
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (_, item) in paths
            .iter_mut()
            .filter(|(path, _)| path.starts_with("/admin/"))
        {
            if let Some(operations) = item.as_object_mut() {
                for operation in operations.values_mut().filter(|o| o.is_object()) {
                    operation["x-unlockd-extension"] = true.into();
                }
            }
        }
    }
    for (path, method) in EXTENSION_OPERATIONS {
        if let Some(operation) = doc["paths"][*path].get_mut(*method) {
            operation["x-unlockd-extension"] = true.into();
        }
    }
    for (path, method, name) in EXTENSION_PARAMETERS {
        let Some(parameters) = doc["paths"][*path][*method]["parameters"].as_array_mut() else {
            continue;
        };
        for parameter in parameters.iter_mut().filter(|p| p["name"] == *name) {
            parameter["x-unlockd-extension"] = true.into();
        }
    }
    for path in [
        "/external/contacts/unlock",
        "/external/contacts/unlock-phone",
    ] {
        let responses = &mut doc["paths"][path]["post"]["responses"];
        if let Some(reused) = responses.get_mut("422") {
            reused["x-unlockd-extension"] = true.into();
        }
        if let Some(header) = responses["201"]["headers"].get_mut("Idempotent-Replayed") {
            header["x-unlockd-extension"] = true.into();
        }
    }
    for name in EXTENSION_SCHEMAS {
        if let Some(schema) = doc["components"]["schemas"].get_mut(*name) {
            schema["x-unlockd-extension"] = true.into();
        }
    }
}

/// Limits on one query or path parameter, as the handlers enforce them.
enum Limit {
    /// An integer in `min..=max`; an empty value is refused like any non-number.
    Int(u64, u64),
    /// Optional text of at most this many characters (blank counts as absent).
    Text(u64),
    /// Required text: 1 to this many characters, not blank.
    RequiredText(u64),
    /// `YYYY-MM-DD` (a real day), or empty for absent.
    Date,
    /// A personnel id: 1-64 characters, no white space or control characters.
    PersonnelId,
    /// One of these values, or empty for absent.
    OneOf(&'static [&'static str]),
    /// A repeatable parameter: at most this many values of at most this many characters.
    List(u64, u64),
    /// An RFC 3339 time or a `YYYY-MM-DD` date, or empty for absent.
    Instant,
    /// Text of `min..=max` characters matching a regular expression.
    Pattern(u64, u64, &'static str),
}

const PAGE_MAX: u64 = 1_000_000;

/// Every limit the server enforces on a parameter, by path and parameter name.
const PARAMETER_LIMITS: &[(&str, &str, Limit)] = &[
    // Printable ASCII, no white space at either end (HTTP trims it).
    (
        "/external/contacts/unlock",
        "Idempotency-Key",
        Limit::Pattern(1, 255, "^[!-~]([ -~]*[!-~])?$"),
    ),
    (
        "/external/contacts/unlock-phone",
        "Idempotency-Key",
        Limit::Pattern(1, 255, "^[!-~]([ -~]*[!-~])?$"),
    ),
    (
        "/external/contacts/unlock-tasks/{taskId}/events",
        "Last-Event-ID",
        Limit::Int(0, 4_294_967_295),
    ),
    (
        "/external/contacts/unlock-phone-tasks/{taskId}/events",
        "Last-Event-ID",
        Limit::Int(0, 4_294_967_295),
    ),
    (
        "/external/contacts/unlock-tasks/{taskId}/events",
        "taskId",
        Limit::RequiredText(64),
    ),
    (
        "/external/contacts/unlock-phone-tasks/{taskId}/events",
        "taskId",
        Limit::RequiredText(64),
    ),
    (
        "/external/webhooks/{id}/deliveries",
        "id",
        Limit::RequiredText(64),
    ),
    (
        "/external/webhooks/{id}/deliveries",
        "limit",
        Limit::Int(1, super::webhooks::MAX_DELIVERIES as u64),
    ),
    (
        "/external/contacts/search",
        "company_name",
        Limit::RequiredText(200),
    ),
    ("/external/contacts/search", "role", Limit::Text(200)),
    ("/external/contacts/search", "person_name", Limit::Text(200)),
    ("/external/contacts/search", "page", Limit::Int(1, PAGE_MAX)),
    ("/external/contacts/search", "pageSize", Limit::Int(1, 100)),
    (
        "/external/contacts/unlock-tasks/{taskId}",
        "taskId",
        Limit::RequiredText(64),
    ),
    (
        "/external/contacts/unlock-tasks/{taskId}",
        "wait",
        Limit::Int(0, 30),
    ),
    (
        "/external/contacts/unlock-phone-tasks/{taskId}",
        "taskId",
        Limit::RequiredText(64),
    ),
    (
        "/external/contacts/unlock-phone-tasks/{taskId}",
        "wait",
        Limit::Int(0, 30),
    ),
    ("/external/events/list", "keyword", Limit::Text(200)),
    ("/external/events/list", "country", Limit::Text(100)),
    ("/external/events/list", "city", Limit::Text(100)),
    ("/external/events/list", "date_start_from", Limit::Date),
    ("/external/events/list", "date_start_to", Limit::Date),
    ("/external/events/list", "page", Limit::Int(1, PAGE_MAX)),
    ("/external/events/list", "pageSize", Limit::Int(1, 100)),
    ("/external/events/{id}", "id", Limit::RequiredText(100)),
    (
        "/external/personnel/list",
        "event_id",
        Limit::RequiredText(100),
    ),
    ("/external/personnel/list", "page", Limit::Int(1, PAGE_MAX)),
    ("/external/personnel/list", "pageSize", Limit::Int(1, 50)),
    ("/external/personnel/list", "exhibitor_id", Limit::Text(64)),
    ("/external/personnel/list", "department", Limit::Text(100)),
    ("/external/personnel/list", "level", Limit::Text(50)),
    ("/external/personnel/list", "search_query", Limit::Text(200)),
    (
        "/external/personnel/list",
        "sourceType",
        Limit::OneOf(&crate::catalog::import::SOURCE_TYPES),
    ),
    (
        "/external/personnel/profile",
        "personnel_id",
        Limit::PersonnelId,
    ),
    (
        "/external/personnel/events",
        "personnel_id",
        Limit::PersonnelId,
    ),
    (
        "/external/personnel/events",
        "page",
        Limit::Int(1, PAGE_MAX),
    ),
    ("/external/personnel/events", "pageSize", Limit::Int(1, 100)),
    (
        "/external/exhibitors/list",
        "event_id",
        Limit::RequiredText(100),
    ),
    ("/external/exhibitors/list", "page", Limit::Int(1, PAGE_MAX)),
    ("/external/exhibitors/list", "pageSize", Limit::Int(1, 100)),
    ("/external/exhibitors/list", "keyword", Limit::Text(200)),
    ("/external/exhibitors/list", "country", Limit::Text(100)),
    (
        "/external/exhibitors/list",
        "department",
        Limit::List(20, 100),
    ),
    (
        "/external/exhibitors/list",
        "managementLevel",
        Limit::List(20, 100),
    ),
    (
        "/external/exhibitors/list",
        "jobTitle",
        Limit::List(20, 100),
    ),
    (
        "/external/exhibitors/list",
        "personnelLimit",
        Limit::Int(0, super::exhibitors::MAX_PERSONNEL_LIMIT as u64),
    ),
    // Exhibitor ids follow the personnel id rule (1-64 characters, no white space).
    (
        "/external/exhibitors/profile",
        "exhibitor_id",
        Limit::PersonnelId,
    ),
    (
        "/external/exhibitors/events",
        "exhibitor_id",
        Limit::PersonnelId,
    ),
    (
        "/external/exhibitors/events",
        "page",
        Limit::Int(1, PAGE_MAX),
    ),
    (
        "/external/exhibitors/events",
        "pageSize",
        Limit::Int(1, 100),
    ),
    (
        "/external/contacts/unlock-tasks",
        "status",
        Limit::OneOf(&super::integrators::TASK_STATUSES),
    ),
    (
        "/external/contacts/unlock-tasks",
        "call_source",
        Limit::OneOf(&super::integrators::CALL_SOURCES),
    ),
    (
        "/external/contacts/unlock-tasks",
        "created_after",
        Limit::Instant,
    ),
    (
        "/external/contacts/unlock-tasks",
        "created_before",
        Limit::Instant,
    ),
    (
        "/external/contacts/unlock-tasks",
        "page",
        Limit::Int(1, PAGE_MAX),
    ),
    (
        "/external/contacts/unlock-tasks",
        "pageSize",
        Limit::Int(1, 100),
    ),
    (
        "/external/contacts/unlock-phone-tasks",
        "status",
        Limit::OneOf(&super::integrators::TASK_STATUSES),
    ),
    (
        "/external/contacts/unlock-phone-tasks",
        "call_source",
        Limit::OneOf(&super::integrators::CALL_SOURCES),
    ),
    (
        "/external/contacts/unlock-phone-tasks",
        "created_after",
        Limit::Instant,
    ),
    (
        "/external/contacts/unlock-phone-tasks",
        "created_before",
        Limit::Instant,
    ),
    (
        "/external/contacts/unlock-phone-tasks",
        "page",
        Limit::Int(1, PAGE_MAX),
    ),
    (
        "/external/contacts/unlock-phone-tasks",
        "pageSize",
        Limit::Int(1, 100),
    ),
    ("/external/usage", "from", Limit::Instant),
    ("/external/usage", "to", Limit::Instant),
    (
        "/external/usage",
        "group_by",
        Limit::OneOf(&["day", "kind", "call_source"]),
    ),
    // Operator API path ids: 1-64 characters without white space, like personnel ids.
    (
        "/admin/api/accounts/{accountId}/keys",
        "accountId",
        Limit::PersonnelId,
    ),
    (
        "/admin/api/accounts/{accountId}/grants",
        "accountId",
        Limit::PersonnelId,
    ),
    ("/admin/api/keys/{keyId}", "keyId", Limit::PersonnelId),
    (
        "/admin/api/accounts/{accountId}/usage",
        "accountId",
        Limit::PersonnelId,
    ),
    (
        "/admin/api/accounts/{accountId}/usage",
        "from",
        Limit::Instant,
    ),
    (
        "/admin/api/accounts/{accountId}/usage",
        "to",
        Limit::Instant,
    ),
    (
        "/admin/api/accounts/{accountId}/usage",
        "group_by",
        Limit::OneOf(&["day", "kind", "call_source"]),
    ),
];

fn limit_schema(limit: &Limit) -> serde_json::Value {
    use serde_json::json;
    match limit {
        Limit::Int(min, max) => json!({"type": "integer", "minimum": min, "maximum": max}),
        Limit::Text(max) => json!({"type": "string", "maxLength": max}),
        Limit::Pattern(min, max, pattern) => {
            json!({"type": "string", "minLength": min, "maxLength": max, "pattern": pattern})
        }
        // Not blank: at least one character that is not white space.
        Limit::RequiredText(max) => {
            json!({"type": "string", "minLength": 1, "maxLength": max, "pattern": "\\S"})
        }
        Limit::Date => json!({"anyOf": [
            {"type": "string", "maxLength": 0},
            {"type": "string", "format": "date", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
        ]}),
        Limit::PersonnelId => json!({
            "type": "string",
            "minLength": 1,
            "maxLength": crate::domain::unlock::MAX_PERSONNEL_ID_CHARS,
            "pattern": "^[^\\s\\u0000-\\u001f\\u007f-\\u009f]+$",
        }),
        Limit::List(items, max) => json!({
            "type": "array",
            "maxItems": items,
            "items": {"type": "string", "maxLength": max},
        }),
        Limit::Instant => json!({"anyOf": [
            {"type": "string", "maxLength": 0},
            {"type": "string", "format": "date", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
            {"type": "string", "format": "date-time"},
        ]}),
        Limit::OneOf(values) => {
            let mut values: Vec<&str> = values.to_vec();
            values.push("");
            json!({"type": "string", "enum": values})
        }
    }
}

/// Writes the handlers' limits into the generated document, which only knows the types.
fn declare_limits(doc: &mut serde_json::Value) {
    use serde_json::json;
    for (path, name, limit) in PARAMETER_LIMITS {
        for method in ["get", "post", "delete"] {
            // Looked up without indexing, which would insert the missing keys as nulls.
            let parameters = doc
                .get_mut("paths")
                .and_then(|paths| paths.get_mut(*path))
                .and_then(|item| item.get_mut(method))
                .and_then(|operation| operation.get_mut("parameters"))
                .and_then(|parameters| parameters.as_array_mut());
            let Some(parameters) = parameters else {
                continue;
            };
            for parameter in parameters.iter_mut().filter(|p| p["name"] == *name) {
                parameter["schema"] = limit_schema(limit);
            }
        }
    }
    let schemas = &mut doc["components"]["schemas"];
    let event_id = json!({"type": "string", "minLength": 1, "maxLength": crate::domain::unlock::MAX_EVENT_ID_CHARS});
    let personnel_ids = |max: Option<usize>| {
        let mut ids = json!({"type": "array", "items": {"type": "string"}, "minItems": 1});
        if let Some(max) = max {
            ids["maxItems"] = json!(max);
        }
        ids
    };
    if let Some(unlock) = schemas.get_mut("UnlockRequest") {
        unlock["properties"]["event_id"] = event_id.clone();
        unlock["properties"]["personnel_ids"] =
            personnel_ids(Some(crate::domain::unlock::MAX_PERSONNEL_IDS));
    }
    if let Some(precheck) = schemas.get_mut("PrecheckRequest") {
        // The unlock actions need unlock params (over 100 ids is an answer, not an
        // error); the other upstream actions take any object.
        let unlock_actions = ["unlock_contact_emails", "unlock_contact_phones"];
        let other_actions: Vec<&str> = super::actions::ACTION_TYPES
            .iter()
            .copied()
            .filter(|a| !unlock_actions.contains(a))
            .collect();
        let mut unlock_variant = precheck.clone();
        unlock_variant["properties"]["action_type"] =
            json!({"type": "string", "enum": unlock_actions});
        unlock_variant["properties"]["params"] = json!({
            "type": "object",
            "required": ["event_id", "personnel_ids"],
            "properties": {"event_id": event_id, "personnel_ids": personnel_ids(None)},
        });
        unlock_variant["additionalProperties"] = json!(false);
        let mut other_variant = precheck.clone();
        other_variant["properties"]["action_type"] =
            json!({"type": "string", "enum": other_actions});
        other_variant["additionalProperties"] = json!(false);
        let description = precheck["description"].clone();
        *precheck = json!({
            "description": description,
            "oneOf": [unlock_variant, other_variant],
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limits_survive_into_the_document() {
        let served = document();
        let page_size = served["paths"]["/external/personnel/list"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "pageSize")
            .unwrap()["schema"]
            .clone();
        assert_eq!(page_size["minimum"], 1);
        assert_eq!(page_size["maximum"], 50);
    }
}
