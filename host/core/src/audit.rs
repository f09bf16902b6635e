//! The audit log's hash chain, one definition for both stores (sled in
//! `sfop-management`, PostgreSQL in `sfop-store-pg`), so that an entry
//! written by one verifies by the other's rules.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// The `prev` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hashed content of one entry: every field but `hash`, in a fixed order.
#[derive(Debug, Serialize)]
pub struct ChainLink<'a> {
    pub seq: u64,
    pub at_ms: u64,
    pub actor: &'a str,
    pub action: &'a str,
    pub api: &'a str,
    pub version: Option<&'a str>,
    pub detail: &'a str,
    pub prev: &'a str,
}

impl ChainLink<'_> {
    /// The entry's hash: SHA-256 of the JSON of these fields, hex.
    pub fn hash(&self) -> String {
        // A struct of strings and numbers always serialises.
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(bytes))
    }
}
