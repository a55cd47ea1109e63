//! Compute Engine's error answers, in the two shapes Google uses:
//!
//! - an HTTP error (`4xx`/`5xx`) has Google's JSON error body
//!   `{"error": {"code", "message", "errors": [{"message", "domain", "reason"}], "status"?}}`
//!   (the v1 error format of Google's JSON APIs; `reason` is camelCase: `notFound`,
//!   `alreadyExists`, `invalid`, `forbidden`, `quotaExceeded`, `authError`, ...);
//! - a failed operation answers `200` with an `Operation` whose `error.errors[]` entries have an
//!   UPPER_CASE `code` (`ZONE_RESOURCE_POOL_EXHAUSTED`, `QUOTA_EXCEEDED`), a `message` and
//!   `errorDetails`, and whose `httpErrorStatusCode`/`httpErrorMessage` give the HTTP status
//!   the failure maps to (503 `SERVICE UNAVAILABLE`, 403 `FORBIDDEN`).

use serde_json::{json, Value};

/// An HTTP error answer of the Compute API.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub reason: &'static str,
    pub message: String,
    /// `error.status` (the canonical code name), sent by Google for authentication errors.
    pub canonical: Option<&'static str>,
    /// `domain` of the `errors[]` entry.
    pub domain: &'static str,
}

impl ApiError {
    fn new(status: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            reason,
            message: message.into(),
            canonical: None,
            domain: "global",
        }
    }

    pub fn not_found(resource: &str) -> ApiError {
        Self::new(
            404,
            "notFound",
            format!("The resource '{resource}' was not found"),
        )
    }

    pub fn already_exists(resource: &str) -> ApiError {
        Self::new(
            409,
            "alreadyExists",
            format!("The resource '{resource}' already exists"),
        )
    }

    pub fn not_ready(resource: &str) -> ApiError {
        Self::new(
            400,
            "resourceNotReady",
            format!("The resource '{resource}' is not ready"),
        )
    }

    /// `Invalid value for field 'FIELD': 'VALUE'. WHY`
    pub fn invalid_field(field: &str, value: &str, why: &str) -> ApiError {
        Self::new(
            400,
            "invalid",
            format!("Invalid value for field '{field}': '{value}'. {why}"),
        )
    }

    pub fn bad_request(reason: &'static str, message: impl Into<String>) -> ApiError {
        Self::new(400, reason, message)
    }

    /// A body or query the API front end cannot bind (unknown field, wrong JSON type).
    pub fn invalid_payload(message: impl Into<String>) -> ApiError {
        ApiError {
            canonical: Some("INVALID_ARGUMENT"),
            ..Self::new(400, "invalid", message)
        }
    }

    pub fn unauthenticated(missing: bool) -> ApiError {
        let (reason, message) = if missing {
            ("required", "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.")
        } else {
            ("authError", "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.")
        };
        ApiError {
            canonical: Some("UNAUTHENTICATED"),
            ..Self::new(401, reason, message)
        }
    }

    pub fn insufficient_scopes() -> ApiError {
        ApiError {
            canonical: Some("PERMISSION_DENIED"),
            ..Self::new(
                403,
                "insufficientPermissions",
                "Request had insufficient authentication scopes.",
            )
        }
    }

    /// IAM refused `permission` on `resource`.
    pub fn forbidden(permission: &str, resource: &str) -> ApiError {
        Self::new(
            403,
            "forbidden",
            format!("Required '{permission}' permission for '{resource}'"),
        )
    }

    pub fn quota_exceeded(message: impl Into<String>) -> ApiError {
        ApiError {
            domain: "usageLimits",
            ..Self::new(403, "quotaExceeded", message)
        }
    }

    /// Google's JSON error body.
    pub fn body(&self) -> Value {
        let mut e = json!({
            "code": self.status,
            "message": self.message,
            "errors": [{"message": self.message, "domain": self.domain, "reason": self.reason}],
        });
        if let Some(c) = self.canonical {
            e["status"] = json!(c);
        }
        json!({ "error": e })
    }
}

/// Why an operation failed: one `error.errors[]` entry plus the HTTP status it maps to.
#[derive(Clone, Debug, PartialEq)]
pub struct OpError {
    pub code: String,
    pub message: String,
    pub http_status: u16,
    pub http_message: &'static str,
    /// `errorDetails[]` entries (`errorInfo`, `help`, `localizedMessage`, `quotaInfo`).
    pub details: Vec<Value>,
}

impl OpError {
    /// A zone without capacity for the machine (the wording and details of Compute Engine's
    /// resource availability errors).
    pub fn zone_exhausted(project: &str, zone: &str, machine_type: &str) -> OpError {
        OpError {
            code: "ZONE_RESOURCE_POOL_EXHAUSTED".into(),
            message: format!("The zone 'projects/{project}/zones/{zone}' does not have enough resources available to fulfill the request.  Try a different zone, or try again later."),
            http_status: 503,
            http_message: "SERVICE UNAVAILABLE",
            details: vec![
                json!({"help": {"links": [{"description": "Troubleshooting documentation", "url": "https://cloud.google.com/compute/docs/resource-error"}]}}),
                json!({"localizedMessage": {"locale": "en-US", "message": format!("A {machine_type} VM instance is currently unavailable in the {zone} zone. Alternatively, you can try your request again with a different VM hardware configuration or at a later time. For more information, see the troubleshooting documentation.")}}),
                json!({"errorInfo": {"domain": "compute.googleapis.com", "reason": "resource_availability", "metadatas": {"vmType": machine_type, "zone": zone, "attachment": "", "zonesAvailable": ""}}}),
            ],
        }
    }

    /// A regional quota that the instance would exceed.
    pub fn quota_exceeded(metric: &str, limit: f64, region: &str) -> OpError {
        OpError {
            code: "QUOTA_EXCEEDED".into(),
            message: quota_message(metric, limit, region),
            http_status: 403,
            http_message: "FORBIDDEN",
            details: vec![json!({"quotaInfo": {
                "metricName": format!("compute.googleapis.com/{}", metric.to_ascii_lowercase()),
                "limitName": format!("{metric}-per-project-region"),
                "dimensions": {"region": region},
                "limit": limit,
            }})],
        }
    }

    /// The `error` object of the operation.
    pub fn body(&self) -> Value {
        json!({"errors": [{"code": self.code, "message": self.message, "errorDetails": self.details}]})
    }
}

/// `Quota 'CPUS' exceeded.  Limit: 8.0 in region us-east1.`
pub fn quota_message(metric: &str, limit: f64, region: &str) -> String {
    format!("Quota '{metric}' exceeded.  Limit: {limit:.1} in region {region}.")
}
