//! Tests of the embedded DNS server: unit tests of the table and resolv.conf rules, and root tests
//! that serve a real network namespace.

mod resolv_conf;
mod server;
mod support;
mod table;
