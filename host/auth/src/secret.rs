//! Random secrets and their hashes.

use sha2::{Digest, Sha256};

/// `bytes` random bytes from the OS, hex-encoded.
pub(crate) fn random_hex(bytes: usize) -> crate::Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| crate::Error::Key(format!("OS randomness: {e}")))?;
    Ok(hex::encode(buf))
}

/// Hex SHA-256 of `parts` joined by NUL. Secrets sfop issues are 256-bit
/// random values, so a fast hash is enough to store them: there is no
/// dictionary to attack.
pub(crate) fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update([0u8]);
        }
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// Equality that takes the same time wherever the inputs differ (secret
/// hashes here; the portal's password hashes and CSRF tokens).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
