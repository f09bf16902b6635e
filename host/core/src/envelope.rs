//! The common response envelope of the open-banking API: every answer, from a
//! plugin or from the gateway, carries `api_tran_id` and `api_tran_dtm`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Response codes (`rsp_code`) the platform itself answers with.
pub mod rsp {
    /// Success.
    pub const SUCCESS: &str = "A0000";
    /// Platform internal error (a plugin failed or the platform did).
    pub const INTERNAL: &str = "A0003";
    /// Request format error.
    pub const FORMAT: &str = "A0004";
    /// Timeout.
    pub const TIMEOUT: &str = "A0007";
    /// Service unavailable (the API exists but cannot be served now).
    pub const UNAVAILABLE: &str = "A0013";
    /// Method not allowed.
    pub const METHOD_NOT_ALLOWED: &str = "O0010";
}

/// A call's unique identifier: a per-process random prefix and a counter, 32
/// hex digits (the reference allows up to 40 characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ApiTranId(String);

impl ApiTranId {
    /// A new identifier, unique within this process and, through the random
    /// prefix, across restarts.
    pub fn generate() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Self(format!("{:016x}{n:016x}", process_nonce()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ApiTranId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// 64 random bits drawn once per process from the OS-seeded hasher keys.
fn process_nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static NONCE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *NONCE.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        h.write_u32(std::process::id());
        h.finish()
    })
}

/// The body of an error the gateway answers itself.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub api_tran_id: &'a str,
    pub api_tran_dtm: &'a str,
    pub rsp_code: &'a str,
    pub rsp_message: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_tran_ids_are_unique_and_fit_the_field() {
        let a = ApiTranId::generate();
        let b = ApiTranId::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 32);
        assert!(a.as_str().len() <= 40);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
