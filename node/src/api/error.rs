//! PE's error body, `{kind, msg, details}`, with the status code each kind travels with.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub msg: String,
    pub details: Value,
}

pub const VALIDATION_ERROR: &str = "puppetlabs.validators/validation-error";

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, msg: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            msg: msg.into(),
            details: json!({}),
        }
    }

    pub fn with_details(mut self, details: Value) -> ApiError {
        self.details = details;
        self
    }

    pub fn validation(msg: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, VALIDATION_ERROR, msg)
    }

    pub fn unknown_job(id: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "puppetlabs.orchestrator/unknown-job",
            format!("No job exists with id {id}"),
        )
    }

    pub fn unknown_environment(env: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "puppetlabs.orchestrator/unknown-environment",
            format!("Unknown environment {env}"),
        )
    }

    pub fn empty_target(msg: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "puppetlabs.orchestrator/empty-target",
            msg,
        )
    }

    pub fn dependency_cycle(msg: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "puppetlabs.orchestrator/dependency-cycle",
            msg,
        )
    }

    pub fn query_error(msg: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "puppetlabs.orchestrator/query-error",
            msg,
        )
    }

    pub fn kind(status: StatusCode, kind: &'static str, msg: impl Into<String>) -> ApiError {
        ApiError::new(status, kind, msg)
    }

    pub fn not_found(path: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "puppetlabs.orchestrator/not-found",
            format!("No route for {path}"),
        )
    }

    /// The cluster could not commit or confirm a read in time: retry, possibly elsewhere.
    pub fn unavailable(msg: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "puppetlabs.orchestrator/unavailable",
            msg,
        )
    }

    pub fn internal(msg: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "puppetlabs.orchestrator/unknown-error",
            msg,
        )
    }
}

impl From<crate::consensus::ConsensusError> for ApiError {
    fn from(error: crate::consensus::ConsensusError) -> ApiError {
        match error {
            crate::consensus::ConsensusError::Unavailable { .. } => {
                ApiError::unavailable(error.to_string())
            }
            crate::consensus::ConsensusError::Refused(msg) => ApiError::validation(msg),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"kind": self.kind, "msg": self.msg, "details": self.details});
        (self.status, Json(body)).into_response()
    }
}
