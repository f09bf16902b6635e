//! Password hashes for the sign-in page (PBKDF2-HMAC-SHA256, RFC 8018,
//! by `ring`, as the portal's developer accounts), user CIs and fintech
//! numbers.

use std::num::NonZeroU32;

use ring::pbkdf2::PBKDF2_HMAC_SHA256;
use sha2::{Digest, Sha256};

/// PBKDF2 iterations for new hashes (stored in each hash, so it can change).
const ITERATIONS: NonZeroU32 = match NonZeroU32::new(50_000) {
    Some(n) => n,
    None => NonZeroU32::MIN,
};

/// PBKDF2-HMAC-SHA256 with a 32-byte output (one block).
fn pbkdf2(password: &[u8], salt: &[u8], iterations: NonZeroU32) -> [u8; 32] {
    let mut out = [0u8; 32];
    ring::pbkdf2::derive(PBKDF2_HMAC_SHA256, iterations, salt, password, &mut out);
    out
}

/// A new stored hash of `password`; `salt_seed` makes the salt unique (it
/// need not be secret).
pub(crate) fn hash_password(password: &str, salt_seed: &str) -> String {
    let salt = Sha256::digest(format!("sfop-vbank-salt\0{salt_seed}\0{}", unique()));
    let salt = &salt[..16];
    let hash = pbkdf2(password.as_bytes(), salt, ITERATIONS);
    format!(
        "pbkdf2-sha256${ITERATIONS}${}${}",
        hex::encode(salt),
        hex::encode(hash)
    )
}

/// Whether `password` matches `stored` (compared in constant time).
pub(crate) fn verify_password(password: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some("pbkdf2-sha256"), Some(iterations), Some(salt), Some(hash), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let (Ok(iterations), Ok(salt), Ok(hash)) = (
        iterations.parse::<NonZeroU32>(),
        hex::decode(salt),
        hex::decode(hash),
    ) else {
        return false;
    };
    hash.len() == 32
        && ring::pbkdf2::verify(
            PBKDF2_HMAC_SHA256,
            iterations,
            &salt,
            password.as_bytes(),
            &hash,
        )
        .is_ok()
}

/// A stored hash no password matches, with the same cost as a real one: a
/// sign-in with an unknown login is checked against it, so that its time
/// does not say whether the login exists.
pub(crate) fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = Sha256::digest(format!("sfop-vbank-dummy\0{}", unique()));
        let hash = Sha256::digest(format!("no password hashes to this\0{}", unique()));
        format!(
            "pbkdf2-sha256${ITERATIONS}${}${}",
            hex::encode(&salt[..16]),
            hex::encode(hash)
        )
    })
}

/// Something different on every call in this process and across restarts.
fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        sfop_core::time::now_millis(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// An 88-character connecting information (CI) value for a new user, as the
/// identity verification agencies issue (opaque to everyone but the bank).
pub(crate) fn user_ci(user_seq_no: &str, name: &str) -> String {
    let a = hex::encode(Sha256::digest(format!("ci\0{user_seq_no}\0{name}")));
    let b = hex::encode(Sha256::digest(format!("ci2\0{user_seq_no}\0{name}")));
    let mut ci = a + &b;
    ci.truncate(88);
    ci
}

/// The Luhn check digit of `digits`.
fn luhn_digit(digits: &str) -> char {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let d2 = d * 2;
                if d2 > 9 { d2 - 9 } else { d2 }
            } else {
                d
            }
        })
        .sum();
    char::from(b'0' + ((10 - sum % 10) % 10) as u8)
}

/// The fintech_use_num for the `seq`-th issuance to institution
/// `client_use_code` (a letter and nine digits): `1`, the nine digits, the
/// sequence in 13 digits and a Luhn check digit: 24 digits.
pub(crate) fn fintech_use_num(client_use_code: &str, seq: u64) -> Option<String> {
    let digits = client_use_code.get(1..)?;
    if digits.len() != 9 || !digits.bytes().all(|b| b.is_ascii_digit()) || seq >= 10u64.pow(13) {
        return None;
    }
    let body = format!("1{digits}{seq:013}");
    let check = luhn_digit(&body);
    Some(format!("{body}{check}"))
}

/// The issuance sequence value that fintech number `num` spells.
pub(crate) fn fintech_seq(num: &str) -> Option<u64> {
    if !fintech_num_well_formed(num) {
        return None;
    }
    num.get(10..23)?.parse().ok()
}

/// Whether `num` could be a fintech number this bank issued (24 digits with
/// a valid check digit).
pub(crate) fn fintech_num_well_formed(num: &str) -> bool {
    num.len() == 24
        && num.bytes().all(|b| b.is_ascii_digit())
        && num
            .get(..23)
            .is_some_and(|body| num.ends_with(luhn_digit(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pbkdf2_matches_the_published_vectors() {
        // PBKDF2-HMAC-SHA256("password", "salt", c, 32), widely published.
        assert_eq!(
            hex::encode(pbkdf2(b"password", b"salt", NonZeroU32::MIN)),
            "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b"
        );
        assert_eq!(
            hex::encode(pbkdf2(
                b"password",
                b"salt",
                NonZeroU32::MIN.saturating_add(1)
            )),
            "ae4d0c95af6b46d32d0adff928f06dd02a303f8ef3c251dfd6e2d85a95474c43"
        );
    }

    #[test]
    fn hashes_stored_before_the_crate_still_verify() {
        // A hash in the format and with the parameters the hand-written
        // PBKDF2 this file had before stored (value from an independent
        // implementation, Python's hashlib): no account loses its password.
        let stored = "pbkdf2-sha256$50000$00112233445566778899aabbccddeeff$\
                      4435bec5e12f0bebee07612792906dd1b28aab8671b08d95ce5ae69255babf2a";
        assert!(verify_password("hong1234", stored));
        assert!(!verify_password("hong1235", stored));
        assert!(!verify_password("hong1234", dummy_hash()));
        assert_eq!(dummy_hash().split('$').nth(1), Some("50000"));
    }

    #[test]
    fn passwords_verify_and_salts_differ() {
        let a = hash_password("hong1234", "hong");
        let b = hash_password("hong1234", "hong");
        assert_ne!(a, b);
        assert!(verify_password("hong1234", &a));
        assert!(!verify_password("hong1235", &a));
        assert!(!verify_password("hong1234", "garbage"));
    }

    #[test]
    fn fintech_numbers_are_24_digits_with_a_check_digit() {
        let n = fintech_use_num("M202300001", 1).unwrap_or_default();
        assert_eq!(n.len(), 24);
        assert!(n.starts_with("1202300001"));
        assert!(fintech_num_well_formed(&n));
        assert_eq!(fintech_seq(&n), Some(1));
        let mut bad = n.clone();
        bad.replace_range(12..13, if &n[12..13] == "1" { "2" } else { "1" });
        assert!(!fintech_num_well_formed(&bad));
        assert_eq!(fintech_use_num("bad", 1), None);
        assert_eq!(user_ci("1100000001", "홍길동").len(), 88);
    }
}
