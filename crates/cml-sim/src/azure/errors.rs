//! Resource Manager's error answers: `{"error": {"code", "message", "target"?}}` with the HTTP
//! status ARM uses for each code.

use serde_json::{json, Value};

/// One refusal, as ARM answers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArmError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub target: Option<String>,
}

impl ArmError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> ArmError {
        ArmError {
            status,
            code: code.into(),
            message: message.into(),
            target: None,
        }
    }

    pub fn target(mut self, t: &str) -> ArmError {
        self.target = Some(t.into());
        self
    }

    /// ARM's error body (`resource.CloudError` of the contract).
    pub fn body(&self) -> Value {
        let mut e = json!({"code": self.code, "message": self.message});
        if let Some(t) = &self.target {
            e["target"] = json!(t);
        }
        json!({ "error": e })
    }

    pub fn missing_api_version() -> ArmError {
        ArmError::new(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )
    }

    /// An `api-version` other than the pinned one, for a provider's resource type.
    pub fn no_registered_provider(
        version: &str,
        rtype: &str,
        location: &str,
        supported: &str,
    ) -> ArmError {
        ArmError::new(
            400,
            "NoRegisteredProviderFound",
            format!(
                "No registered resource provider found for location '{location}' and API version '{version}' for type '{rtype}'. The supported api-versions are '{supported}'."
            ),
        )
    }

    pub fn invalid_api_version(version: &str, supported: &str) -> ArmError {
        ArmError::new(
            400,
            "InvalidApiVersionParameter",
            format!(
                "The api-version '{version}' is invalid. The supported versions are '{supported}'."
            ),
        )
    }

    pub fn missing_auth() -> ArmError {
        ArmError::new(
            401,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
        )
    }

    pub fn invalid_token() -> ArmError {
        ArmError::new(
            401,
            "InvalidAuthenticationToken",
            "The access token is invalid.",
        )
    }

    pub fn expired_token() -> ArmError {
        ArmError::new(
            401,
            "ExpiredAuthenticationToken",
            "The access token expiry UTC time is earlier than current UTC time.",
        )
    }

    pub fn authorization_failed(principal: &str, action: &str, scope: &str) -> ArmError {
        ArmError::new(
            403,
            "AuthorizationFailed",
            format!(
                "The client '{principal}' with object id '{principal}' does not have authorization to perform action '{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, please refresh your credentials."
            ),
        )
    }

    pub fn group_not_found(rg: &str) -> ArmError {
        ArmError::new(
            404,
            "ResourceGroupNotFound",
            format!("Resource group '{rg}' could not be found."),
        )
    }

    pub fn resource_not_found(rtype: &str, name: &str, rg: &str) -> ArmError {
        ArmError::new(
            404,
            "ResourceNotFound",
            format!(
                "The Resource '{rtype}/{name}' under resource group '{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
            ),
        )
    }

    /// A body ARM cannot deserialize (an unknown member, a wrong JSON type), in the words of
    /// its JSON reader.
    pub fn invalid_content(detail: &str) -> ArmError {
        ArmError::new(
            400,
            "InvalidRequestContent",
            format!("The request content was invalid and could not be deserialized: '{detail}'."),
        )
    }

    pub fn invalid_parameter(message: impl Into<String>, target: &str) -> ArmError {
        ArmError::new(400, "InvalidParameter", message).target(target)
    }

    /// A referenced network resource that does not exist (Microsoft.Network's wording).
    pub fn invalid_reference(referenced: &str, by: &str) -> ArmError {
        ArmError::new(
            400,
            "InvalidResourceReference",
            format!(
                "Resource {referenced} referenced by resource {by} was not found. Please make sure that the referenced resource exists, and that both resources are in the same region."
            ),
        )
    }
}
