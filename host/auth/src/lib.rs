//! Cross-domain authorisation for sfop: an OAuth 2.0 authorization server
//! (authorization code + PKCE, refresh, client credentials) that issues biscuit
//! capability tokens, and the gateway authoriser that checks them with Datalog.
//! The only crate that names biscuit-auth.
//!
//! A token's authority block, signed by the platform root key, states who
//! (`client`, `user`), what (`scope`) and on which accounts (`account`), with an
//! expiry check. Holders may attenuate it offline (append blocks with more
//! checks) and a bank may co-sign consent in a third-party block; the gateway
//! enforces every block on every request and checks revocation.

mod blocks;
pub mod clients;
pub mod holder;
pub mod keys;
pub mod limits;
pub mod oauth;
pub mod policy;
mod prepared;
pub mod revocation;
#[cfg(test)]
mod samples;
mod secret;
pub mod token;

pub use clients::{
    BoxFuture, Client, ClientRegistry, ClientSpec, CodeUse, Registered, SharedClients, StoredClient,
};
pub use keys::{KeyRing, KeyStatus, PublishedKey, PublishedKeys};

pub use limits::{LimitError, TokenLimits};
pub use policy::{AuthInput, Denial, PolicyConfig, TokenAuthorizer};
pub use revocation::{NotRevoked, Revocations, SharedRevocations, Unproven};
pub use secret::constant_time_eq;
pub use token::{AccessGrant, TokenError, Verified, issue_admin};

/// Why an auth operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] sfop_store::Error),
    #[error("token: {0}")]
    Token(#[from] biscuit_auth::error::Token),
    #[error("key material: {0}")]
    Key(String),
    #[error("{0}")]
    Invalid(String),
    /// A store shared by a cluster cannot be reached (ADR 0029).
    #[error("{0}")]
    Unavailable(String),
    /// A store shared by a cluster failed otherwise (ADR 0029).
    #[error("the cluster store: {0}")]
    Cluster(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Seconds since the Unix epoch, now.
pub(crate) fn now_secs() -> u64 {
    sfop_core::time::now_millis() / 1000
}
