//! The portal against the `Catalog` trait: promotion without restart,
//! escaping of everything a package or a developer supplies, the OpenAPI
//! shape. Pages are asked for through `Portal::handle`, as the platform does;
//! the platform-level tests (real HTTPS, a real validator, a browser) are in
//! `host/sfop/tests/all/portal.rs`.

mod attacker;
mod changes;
mod errors;
mod expected;
mod fixtures;
mod hostile;
mod pages;
