//! Docker Engine API types and rules shared by berthd (which serves them) and the berth CLI (which
//! sends and reads them): JSON shapes, filters, API version negotiation, query parsing.

pub mod container;
pub mod filters;
pub mod query;
pub mod types;
pub mod version;

pub use filters::Filters;
pub use query::Query;
pub use version::ApiVersion;

/// Docker's error body: `{"message": "..."}`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ErrorBody {
    pub message: String,
}
