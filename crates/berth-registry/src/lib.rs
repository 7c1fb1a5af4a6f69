//! berth-registry: an OCI distribution (v1.1) registry server.
//!
//! Thin HTTP handlers ([`server`]) over a filesystem [`Storage`](storage::Storage) whose upload
//! sessions survive restarts; htpasswd and Docker token authentication ([`auth`]); TLS ([`tls`]);
//! offline garbage collection ([`gc`]); configuration from distribution's `config.yml` keys
//! ([`config`]).

pub mod auth;
pub mod client;
pub mod config;
pub mod error;
pub mod gc;
mod handlers;
pub mod proxy;
pub mod reference;
pub mod server;
pub mod storage;
pub mod tls;
mod token;

pub use config::Config;
pub use server::{Registry, ServerError};
pub use storage::Storage;
