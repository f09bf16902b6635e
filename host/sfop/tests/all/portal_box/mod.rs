//! The portal box against the `Catalog` trait: promotion without restart,
//! escaping of everything a package or a developer supplies, the OpenAPI
//! shape. Pages are asked for through the platform's router for `/portal`
//! (`sfop::portal::routes`), without TCP; the platform-level tests (real
//! HTTPS, a real validator, a browser) are in `portal.rs`.

mod attacker;
mod changes;
mod errors;
mod expected;
mod fixtures;
mod hostile;
mod pages;
