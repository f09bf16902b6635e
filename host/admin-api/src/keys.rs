//! `/admin/v1/keys…`: the root keys that sign biscuit tokens, listed,
//! rotated and retired while the platform runs (docs/keys.md).
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `GET` [`LIST`] | | [`KeysAnswer`] |
//! | `POST` [`ROTATE`] | | [`KeysAnswer`] naming the new key |
//! | `POST` [`RETIRE`] | [`RetireRequest`] | [`KeysAnswer`] |

use serde::{Deserialize, Serialize};

/// Every key with its status.
pub const LIST: &str = "/admin/v1/keys";
/// A new key signs from now on; the answer names it.
pub const ROTATE: &str = "/admin/v1/keys/rotate";
/// Retire one key: body [`RetireRequest`].
pub const RETIRE: &str = "/admin/v1/keys/retire";

/// Body of [`RETIRE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetireRequest {
    pub root_key_id: u32,
}

/// How a key stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    /// Signs new tokens (and verifies).
    Current,
    /// Verifies tokens it signed earlier; signs nothing new.
    Active,
    /// Verifies nothing: tokens it signed are refused.
    Retired,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Current => "current",
            KeyStatus::Active => "active",
            KeyStatus::Retired => "retired",
        }
    }
}

/// A root public key as the platform publishes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedKey {
    pub root_key_id: u32,
    /// Always `ed25519`.
    pub algorithm: String,
    /// `ed25519/<64 hex digits>`, as biscuit-cli and biscuit-auth read it.
    pub public_key: String,
    pub status: KeyStatus,
    /// When the key was made, seconds since the Unix epoch (0: unknown).
    #[serde(default)]
    pub created_at: u64,
    /// Whether the key was once kept in the store, readable by others:
    /// retire it once the tokens it signed have expired.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exposed: bool,
}

/// The answer of every keys route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysAnswer {
    #[serde(default)]
    pub rsp_code: String,
    #[serde(default)]
    pub rsp_message: String,
    /// Every key after the call.
    #[serde(default)]
    pub keys: Vec<PublishedKey>,
    /// [`ROTATE`]: the new signing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_key_id: Option<u32>,
    /// [`RETIRE`]: the local operator's admin token was signed by the
    /// retired key and has been replaced (same file, new token).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin_token_reissued: bool,
}
