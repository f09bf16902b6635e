//! End-to-end tests of `sfop`: the real server on an ephemeral port, real HTTP,
//! real Wasm components built by `cargo xtask build-plugins`, sled in temp dirs.

mod answer_semantics;
mod auth;
mod bank_async;
mod bank_rest;
mod cluster;
mod cluster_apps;
mod cluster_money;
mod cluster_stale;
mod config_doc;
mod containment;
mod deadlines_and_warm;
mod first_plugin;
mod foundation;
mod gateway_crash;
mod harness;
mod institutions;
mod isolation;
mod load_and_stop;
mod management;
mod openapi_examples;
mod operations;
mod outbound;
mod portal;
mod portal_box;
mod reference_apis;
mod sandbox;
mod security_gateway;
mod security_keys;
mod security_oauth;
mod security_tokens;
mod served;
mod telemetry;
mod testbed;
mod tls;
mod vbank_durability;
