//! `/admin/v1/clients`: the fintech apps (OAuth clients) registered with
//! the platform.
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `GET` [`CLIENTS`] | | [`ClientsAnswer`] |
//! | `POST` [`CLIENTS`] | [`RegisterClient`] | [`RegisteredClient`] (201) |

use serde::{Deserialize, Serialize};

pub const CLIENTS: &str = "/admin/v1/clients";

/// Body of `POST` [`CLIENTS`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterClient {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    /// `M` and 9 digits; allocated when absent.
    #[serde(default)]
    pub client_use_code: Option<String>,
    /// A public client (mobile or browser app) has no secret and must use
    /// PKCE.
    #[serde(default)]
    pub public: bool,
    /// Join this existing institution (its `client_use_code`). Not with
    /// `client_use_code`.
    #[serde(default)]
    pub institution: Option<String>,
}

/// A registered app as the admin API lists it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientView {
    pub client_id: String,
    pub name: String,
    pub client_use_code: String,
    pub scopes: Vec<String>,
    pub redirect_uris: Vec<String>,
    pub public: bool,
}

/// Answer of `GET` [`CLIENTS`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientsAnswer {
    #[serde(default)]
    pub rsp_code: String,
    #[serde(default)]
    pub rsp_message: String,
    /// The count, as text (the common envelope's convention).
    #[serde(default)]
    pub res_cnt: String,
    #[serde(default)]
    pub res_list: Vec<ClientView>,
}

/// Answer of `POST` [`CLIENTS`]: the secret, shown this once (none for a
/// public client).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredClient {
    #[serde(default)]
    pub rsp_code: String,
    #[serde(default)]
    pub rsp_message: String,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    pub client_use_code: String,
    pub scopes: Vec<String>,
    pub redirect_uris: Vec<String>,
}

/// Never shows the secret.
impl std::fmt::Debug for RegisteredClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredClient")
            .field("client_id", &self.client_id)
            .field("client_use_code", &self.client_use_code)
            .finish_non_exhaustive()
    }
}
