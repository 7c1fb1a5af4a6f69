//! berth-registry: an OCI distribution (v1.1) registry server.
