//! The gateway's decision on each request: verify the bearer biscuit (cached
//! per token), check revocation, then run a fresh Datalog world with the
//! request's facts. Deny by default; explicit run limits. The token's blocks
//! are loaded into that world's form once per token (`crate::prepared`,
//! ADR 0012); biscuit-auth's own authoriser is the reference it is tested
//! against and the fallback.
//!
//! Facts the authoriser provides, which attenuation blocks may use in their
//! checks: `time($t)`, `api($name)`, `operation("read" | "transfer" | "unlink")`,
//! `required_scope($s)`, `resource_account($fintech_use_num)` (each account
//! the request acts on), `resource_user($user_seq_no)`, `amount($n)`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use biscuit_auth::builder::Term;
use biscuit_auth::error::{FailedCheck, Logic, Token};
use biscuit_auth::{AuthorizerBuilder, AuthorizerLimits, PublicKey};
use sfop_core::Claims;
use sha2::Digest;

use crate::prepared::{FactName, PreparedToken, RequestCheck, Value};
use crate::token::{self, TokenError, Verified};
use crate::{KeyRing, Revocations};

/// Response codes of authorisation failures (the reference platform's).
pub mod rsp {
    /// Authentication parameter error (no bearer token).
    pub const AUTH_PARAMETER: &str = "O0001";
    /// Access token rejected (forged, tampered, expired, revoked).
    pub const TOKEN_REJECTED: &str = "O0002";
    /// No permission for this API (scope).
    pub const NO_PERMISSION: &str = "A0011";
    /// No access (a restriction in the token forbids the request).
    pub const NO_ACCESS: &str = "A0301";
    /// fintech_use_num not consented for this token.
    pub const FINTECH_NUM_MISMATCH: &str = "A0304";
}

/// A refusal, with the HTTP status, `rsp_code` and a message that says what
/// is wrong without revealing the policy.
///
/// The status follows the KFTC platform (ADR 0021): a request without or
/// with a rejected token is HTTP 401 (`O0001`, `O0002`); every refusal of a
/// known caller on an API is a business answer, HTTP 200 with its `rsp_code`
/// (`A0011`, `A0301`, `A0304`). Only the operator's admin API, which is not
/// an open-banking API, answers a valid token without the admin role with 403.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub status: u16,
    pub rsp_code: &'static str,
    pub message: String,
}

impl Denial {
    /// No bearer token, or one the platform rejects: HTTP 401.
    pub fn unauthenticated(rsp_code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: 401,
            rsp_code,
            message: message.into(),
        }
    }

    /// A business refusal of an API call: HTTP 200 with the `rsp_code`.
    pub fn refused(rsp_code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: 200,
            rsp_code,
            message: message.into(),
        }
    }

    /// This node cannot prove the token unrevoked now (a cluster node cut
    /// off from its database for longer than `auth.revocation_max_lag_ms`):
    /// HTTP 503 `A0013`, the platform's trouble, not the caller's.
    pub fn unproven(e: &crate::Unproven) -> Self {
        tracing::warn!("token refused: {e}");
        Self {
            status: 503,
            rsp_code: "A0013",
            message: "token checks are unavailable on this node; retry shortly".into(),
        }
    }

    /// A valid token that is not an admin's, on the admin API: HTTP 403.
    fn admin_only(message: impl Into<String>) -> Self {
        Self {
            status: 403,
            rsp_code: rsp::NO_PERMISSION,
            message: message.into(),
        }
    }
}

/// What the authoriser needs to know about one request.
#[derive(Debug, Clone, Default)]
pub struct AuthInput<'a> {
    /// The `Authorization` header, if any.
    pub authorization: Option<&'a str>,
    /// The API's name.
    pub api: &'a str,
    /// The scope the API requires (from its manifest).
    pub required_scope: &'a str,
    /// fintech_use_nums the request acts on.
    pub accounts: Vec<String>,
    /// user_seq_no the request names.
    pub user: Option<String>,
    /// Amount the request moves, in won.
    pub amount: Option<i64>,
}

/// Platform policy settings.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// Datalog run limits per request.
    pub limits: AuthorizerLimits,
    /// Banks whose co-signature (a third-party block with
    /// `bank_consent($fintech_use_num, $scope)`) is required, by public key,
    /// for requests needing the listed scopes.
    pub bank_consent: Vec<(PublicKey, Vec<String>)>,
    /// Verified tokens kept in memory (signature checks saved).
    pub cache_capacity: usize,
    /// What a token may ask of the authoriser (ADR 0015): checked when it is
    /// verified; `max_work` is also each decision's work budget.
    pub token_limits: crate::TokenLimits,
}

impl PolicyConfig {
    /// Requires the bank whose public key is `key` (`ed25519/<hex>`) to
    /// co-sign consent for requests needing any of `scopes`.
    pub fn require_bank_consent(mut self, key: &str, scopes: Vec<String>) -> crate::Result<Self> {
        let key: PublicKey = key
            .parse()
            .map_err(|e| crate::Error::Key(format!("bank public key {key:?}: {e}")))?;
        self.bank_consent.push((key, scopes));
        Ok(self)
    }
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            limits: crate::token::run_limits(),
            bank_consent: Vec::new(),
            cache_capacity: 10_000,
            token_limits: crate::TokenLimits::default(),
        }
    }
}

/// Decides requests that carry biscuit access tokens.
#[derive(Debug)]
pub struct TokenAuthorizer {
    ring: KeyRing,
    revocations: Arc<Revocations>,
    config: PolicyConfig,
    /// Verified tokens, and tokens refused for their limits, by the SHA-256
    /// of the token text (collision-resistant: a token can never be answered
    /// with another's verification). A refused token costs its verification
    /// once, not on every request.
    verified: Mutex<HashMap<[u8; 32], Verification>>,
    /// `allow if true`: every check of every block decides.
    allow: biscuit_auth::builder::Policy,
}

impl TokenAuthorizer {
    pub fn new(ring: KeyRing, revocations: Arc<Revocations>, config: PolicyConfig) -> Self {
        Self {
            ring,
            revocations,
            config,
            verified: Mutex::new(HashMap::new()),
            allow: biscuit_auth::builder::Policy {
                queries: vec![biscuit_auth::builder::Rule::new(
                    biscuit_auth::builder::pred("query", &[] as &[Term]),
                    vec![],
                    vec![],
                    vec![],
                )],
                kind: biscuit_auth::builder::PolicyKind::Allow,
            },
        }
    }

    /// Signature verification, once per distinct token.
    fn verify_cached(&self, token: &str) -> Result<Arc<CachedToken>, TokenError> {
        let key: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        if let Some(v) = self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return v.clone();
        }
        let verified = match token::verify_within(&self.ring, token, &self.config.token_limits) {
            Ok(v) => Ok(Arc::new(CachedToken {
                verified: Arc::new(v),
                prepared: OnceLock::new(),
            })),
            Err(e @ TokenError::TooComplex(_)) => Err(e),
            // Forgeries and garbage are not kept: they would only crowd out
            // tokens worth keeping.
            Err(e) => return Err(e),
        };
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= self.config.cache_capacity {
            cache.clear();
        }
        cache.insert(key, verified.clone());
        verified
    }

    /// Verifies a bearer token without a request (for the platform's own
    /// endpoints, such as unlink and revoke): signature, revocation, expiry.
    pub fn verify_bearer(&self, authorization: Option<&str>) -> Result<Arc<Verified>, Denial> {
        self.verify_entry(authorization)
            .map(|entry| entry.verified.clone())
    }

    /// [`Self::verify_bearer`], with the token's cache entry.
    fn verify_entry(&self, authorization: Option<&str>) -> Result<Arc<CachedToken>, Denial> {
        let token = bearer(authorization)?;
        let verified = self.verify_cached(token).map_err(|e| {
            Denial::unauthenticated(rsp::TOKEN_REJECTED, format!("access token rejected: {e}"))
        })?;
        // Expiry first: it is decided here and now, and is the caller's to
        // fix even when this node cannot prove the token unrevoked.
        if verified.verified.expires_at < crate::now_secs() {
            return Err(Denial::unauthenticated(
                rsp::TOKEN_REJECTED,
                "access token expired",
            ));
        }
        if self
            .revocations
            .check(&verified.verified.revocation_ids)
            .map_err(|e| Denial::unproven(&e))?
        {
            return Err(Denial::unauthenticated(
                rsp::TOKEN_REJECTED,
                "access token revoked",
            ));
        }
        Ok(verified)
    }

    /// Checks an operator's bearer token for the admin API: signature,
    /// revocation, expiry and `role("admin")`. Returns the admin's name.
    pub fn authorize_admin(&self, authorization: Option<&str>) -> Result<String, Denial> {
        let token = bearer(authorization)?;
        let rejected = || Denial::unauthenticated(rsp::TOKEN_REJECTED, "admin token rejected");
        let biscuit = token::parse_within(&self.ring, token, &self.config.token_limits).map_err(
            |e| match e {
                TokenError::TooComplex(_) => Denial::unauthenticated(
                    rsp::TOKEN_REJECTED,
                    format!("admin token rejected: {e}"),
                ),
                _ => rejected(),
            },
        )?;
        let ids: Vec<String> = biscuit
            .revocation_identifiers()
            .iter()
            .map(hex::encode)
            .collect();
        if self
            .revocations
            .check(&ids)
            .map_err(|e| Denial::unproven(&e))?
        {
            return Err(rejected());
        }
        let mut authorizer = AuthorizerBuilder::new()
            .code(r#"allow if role("admin");"#)
            .map(|b| b.time().set_limits(self.config.limits.clone()))
            .and_then(|b| b.build(&biscuit))
            .map_err(|e| internal(&e))?;
        authorizer
            .authorize_with_limits(self.config.limits.clone())
            .map_err(|_| {
                Denial::admin_only("an admin token (role admin, not expired) is required")
            })?;
        let subjects: Vec<(String,)> = authorizer
            .query("data($s) <- admin($s)")
            .map_err(|e| internal(&e))?;
        subjects
            .into_iter()
            .next()
            .map(|(s,)| s)
            .ok_or_else(|| Denial::admin_only("an admin token is required"))
    }

    /// The decision for one request: the caller's claims, or a denial.
    pub fn authorize(&self, input: &AuthInput<'_>) -> Result<Claims, Denial> {
        let entry = self.verify_entry(input.authorization)?;
        let mut checks = Vec::new();
        let result = match entry.prepared(&self.config) {
            Some(prepared) => self.decide(prepared, input, &mut checks),
            // A token the fast path could not load: biscuit-auth decides
            // (and reports the same loading error, if it is one).
            None => self.decide_reference(&entry.verified, input, &mut checks),
        };
        match result {
            Ok(_) => Ok(entry.verified.claims.clone()),
            Err(Token::FailedLogic(Logic::Unauthorized { checks: failed, .. }))
            | Err(Token::FailedLogic(Logic::NoMatchingPolicy { checks: failed })) => {
                Err(explain(&failed, &checks, input))
            }
            Err(Token::RunLimit(limit)) => Err(Denial::refused(
                rsp::NO_ACCESS,
                format!(
                    "the token's restrictions exceed the platform's evaluation limits ({limit})"
                ),
            )),
            Err(e) => Err(internal(&e)),
        }
    }

    /// What one request adds to the token's world: its facts, and its
    /// checks with what each stands for. Both decision paths are built from
    /// this one description, so they cannot drift apart.
    fn request_terms<'a>(&self, input: &'a AuthInput<'_>) -> RequestTerms<'a> {
        let operation = match (input.required_scope, input.api) {
            ("transfer", _) => "transfer",
            // Withdrawing consent is not a read (issue 15, defect 2).
            (_, crate::oauth::UNLINK_API) => "unlink",
            _ => "read",
        };
        let mut terms = RequestTerms {
            facts: vec![
                (FactName::Api, Value::Str(input.api)),
                (FactName::Operation, Value::Str(operation)),
                (FactName::RequiredScope, Value::Str(input.required_scope)),
            ],
            checks: vec![(RequestCheck::Scope, CheckKind::Scope)],
        };
        if let Some(user) = &input.user {
            terms.facts.push((FactName::ResourceUser, Value::Str(user)));
            terms
                .checks
                .push((RequestCheck::User(user), CheckKind::User));
        }
        if let Some(amount) = input.amount {
            terms.facts.push((FactName::Amount, Value::Int(amount)));
        }
        for account in &input.accounts {
            terms
                .facts
                .push((FactName::ResourceAccount, Value::Str(account)));
            // Institution (oob) tokens carry no accounts: the bank checks
            // that the fintech_use_num was issued to the institution.
            if input.required_scope != "oob" {
                terms.checks.push((
                    RequestCheck::Account(account),
                    CheckKind::Account(account.clone()),
                ));
            }
            for (bank, (_, scopes)) in self.config.bank_consent.iter().enumerate() {
                if scopes.iter().any(|s| s == input.required_scope) {
                    terms.checks.push((
                        RequestCheck::BankConsent {
                            bank,
                            account,
                            scope: input.required_scope,
                        },
                        CheckKind::BankConsent(account.clone()),
                    ));
                }
            }
        }
        terms
    }

    /// The decision on the token's prepared world (ADR 0012).
    fn decide(
        &self,
        prepared: &PreparedToken,
        input: &AuthInput<'_>,
        checks: &mut Vec<CheckKind>,
    ) -> Result<usize, Token> {
        let RequestTerms {
            facts,
            checks: request,
        } = self.request_terms(input);
        let (request, kinds): (Vec<_>, Vec<_>) = request.into_iter().unzip();
        checks.extend(kinds);
        prepared.authorize(
            &facts,
            &request,
            &self.config.limits,
            self.config.token_limits.max_work,
        )
    }

    /// The same decision by biscuit-auth itself: a fresh authoriser built
    /// from the token on every call. The reference the fast path is tested
    /// against, and the fallback for tokens it cannot load.
    fn decide_reference(
        &self,
        verified: &Verified,
        input: &AuthInput<'_>,
        checks: &mut Vec<CheckKind>,
    ) -> Result<usize, Token> {
        let builder = self.request_authorizer(input, checks)?;
        let mut authorizer = builder.build(&verified.biscuit)?;
        authorizer.authorize_with_limits(self.config.limits.clone())
    }

    /// The per-request authoriser of the reference path, from the same
    /// [`RequestTerms`] as the fast path; `checks` records what each
    /// authoriser check (by index) stands for, to explain a failure. Built
    /// from terms, not Datalog text: parsing source on every request cost
    /// more than the decision itself.
    fn request_authorizer(
        &self,
        input: &AuthInput<'_>,
        checks: &mut Vec<CheckKind>,
    ) -> Result<AuthorizerBuilder, Token> {
        use biscuit_auth::builder::{self as b, CheckKind as Kind, Rule, Scope};
        let terms = self.request_terms(input);
        let mut builder = AuthorizerBuilder::new();
        for (name, value) in &terms.facts {
            let value = match value {
                Value::Str(s) => b::string(s),
                Value::Int(i) => b::int(*i),
            };
            builder = builder.fact(b::fact(name.as_str(), &[value]))?;
        }
        for (check, kind) in terms.checks {
            let (body, scopes) = match check {
                RequestCheck::Scope => (
                    vec![
                        b::pred("required_scope", &[b::var("s")]),
                        b::pred("scope", &[b::var("s")]),
                    ],
                    vec![],
                ),
                RequestCheck::User(user) => (vec![b::pred("user", &[b::string(user)])], vec![]),
                RequestCheck::Account(account) => {
                    (vec![b::pred("account", &[b::string(account)])], vec![])
                }
                RequestCheck::BankConsent {
                    bank,
                    account,
                    scope,
                } => {
                    let (key, _) = self
                        .config
                        .bank_consent
                        .get(bank)
                        .ok_or(Token::InternalError)?;
                    (
                        vec![b::pred(
                            "bank_consent",
                            &[b::string(account), b::string(scope)],
                        )],
                        vec![Scope::PublicKey(*key)],
                    )
                }
            };
            builder = builder.check(b::Check {
                queries: vec![Rule::new(
                    b::pred("query", &[] as &[Term]),
                    body,
                    vec![],
                    scopes,
                )],
                kind: Kind::One,
            })?;
            checks.push(kind);
        }
        Ok(builder
            .policy(self.allow.clone())?
            .time()
            .set_limits(self.config.limits.clone()))
    }
}

/// The facts and checks one request adds (see
/// [`TokenAuthorizer::request_terms`]).
struct RequestTerms<'a> {
    facts: Vec<(FactName, Value<'a>)>,
    /// Each check with what it stands for, in authoriser order.
    checks: Vec<(RequestCheck<'a>, CheckKind)>,
}

/// What verifying one token text came to: kept, either way.
type Verification = Result<Arc<CachedToken>, TokenError>;

/// A verified token and, once a request needed it, the token-only part of
/// its decision.
#[derive(Debug)]
struct CachedToken {
    verified: Arc<Verified>,
    /// `None` if the fast path could not load the token.
    prepared: OnceLock<Option<PreparedToken>>,
}

impl CachedToken {
    fn prepared(&self, config: &PolicyConfig) -> Option<&PreparedToken> {
        self.prepared
            .get_or_init(|| {
                let banks: Vec<PublicKey> = config.bank_consent.iter().map(|(k, _)| *k).collect();
                PreparedToken::new(&self.verified.biscuit, &banks)
                    .map_err(
                        |e| tracing::warn!(error = %e, "token not prepared; biscuit-auth decides"),
                    )
                    .ok()
            })
            .as_ref()
    }
}

/// What an authoriser-level check stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CheckKind {
    Scope,
    User,
    Account(String),
    BankConsent(String),
}

fn bearer(authorization: Option<&str>) -> Result<&str, Denial> {
    let missing = || {
        Denial::unauthenticated(
            rsp::AUTH_PARAMETER,
            "Authorization: Bearer <access_token> header is required",
        )
    };
    let value = authorization.ok_or_else(missing)?;
    let (scheme, token) = value.trim().split_once(' ').ok_or_else(missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(missing());
    }
    Ok(token.trim())
}

/// Turns failed checks into the denial a client can act on. The first
/// failure wins, in this order: expiry, scope, user, accounts, bank consent,
/// attenuation.
fn explain(failed: &[FailedCheck], checks: &[CheckKind], input: &AuthInput<'_>) -> Denial {
    let mut by_kind: BTreeMap<u8, Denial> = BTreeMap::new();
    for check in failed {
        let (rank, denial) = match check {
            FailedCheck::Block(b) if b.block_id == 0 => (
                0,
                Denial::unauthenticated(rsp::TOKEN_REJECTED, "access token expired"),
            ),
            FailedCheck::Block(_) => (
                5,
                Denial::refused(
                    rsp::NO_ACCESS,
                    "a restriction added to this access token forbids this request",
                ),
            ),
            FailedCheck::Authorizer(a) => match checks.get(a.check_id as usize) {
                Some(CheckKind::Scope) => (
                    1,
                    Denial::refused(
                        rsp::NO_PERMISSION,
                        format!(
                            "the access token does not grant scope `{}`, which API {} requires",
                            input.required_scope, input.api
                        ),
                    ),
                ),
                Some(CheckKind::User) => (
                    2,
                    Denial::refused(rsp::NO_ACCESS, "user_seq_no is not the access token's user"),
                ),
                Some(CheckKind::Account(f)) => (
                    3,
                    Denial::refused(
                        rsp::FINTECH_NUM_MISMATCH,
                        format!("fintech_use_num {f} is not consented for this access token"),
                    ),
                ),
                Some(CheckKind::BankConsent(f)) => (
                    4,
                    Denial::refused(
                        rsp::NO_ACCESS,
                        format!(
                            "fintech_use_num {f} needs the bank's co-signed consent in the token"
                        ),
                    ),
                ),
                None => (6, Denial::refused(rsp::NO_ACCESS, "not authorised")),
            },
        };
        by_kind.entry(rank).or_insert(denial);
    }
    by_kind
        .into_values()
        .next()
        .unwrap_or_else(|| Denial::refused(rsp::NO_ACCESS, "not authorised"))
}

fn internal(e: &Token) -> Denial {
    tracing::error!(error = %e, "authoriser failed");
    Denial {
        status: 500,
        rsp_code: "A0003",
        message: "platform internal error while authorising".into(),
    }
}

#[cfg(test)]
mod differential;

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use biscuit_auth::builder::Term;
    use biscuit_auth::{Biscuit, BlockBuilder, KeyPair};
    use sfop_store::Store;

    use super::*;
    use crate::AccessGrant;

    const ACCOUNT: &str = "120220038200000000000001";
    const OTHER: &str = "120220038200000000000002";

    struct Fixture {
        _dir: tempfile::TempDir,
        ring: KeyRing,
        revocations: Arc<Revocations>,
    }

    fn fixture() -> anyhow::Result<Fixture> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        Ok(Fixture {
            ring: KeyRing::open(&store)?,
            revocations: Arc::new(Revocations::open(&store)?),
            _dir: dir,
        })
    }

    fn grant(scopes: &[&str], expires_at: u64) -> AccessGrant {
        AccessGrant {
            client_id: "fintech-app".into(),
            client_use_code: Some("M202200382".into()),
            user_seq_no: Some("1100000001".into()),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            fintech_use_nums: vec![ACCOUNT.into()],
            expires_at,
        }
    }

    const FUTURE: u64 = 4_102_444_800;

    fn balance(auth: &str) -> AuthInput<'_> {
        AuthInput {
            authorization: Some(auth),
            api: "balance",
            required_scope: "inquiry",
            accounts: vec![ACCOUNT.into()],
            user: None,
            amount: None,
        }
    }

    fn withdraw(auth: &str, account: &str, amount: i64) -> AuthInput<'static> {
        AuthInput {
            authorization: Some(Box::leak(auth.to_owned().into_boxed_str())),
            api: "withdraw",
            required_scope: "transfer",
            accounts: vec![account.into()],
            user: None,
            amount: Some(amount),
        }
    }

    fn code(result: Result<Claims, Denial>) -> &'static str {
        match result {
            Ok(_) => "allowed",
            Err(d) => d.rsp_code,
        }
    }

    fn authorizer(f: &Fixture, config: PolicyConfig) -> TokenAuthorizer {
        TokenAuthorizer::new(f.ring.clone(), f.revocations.clone(), config)
    }

    #[test]
    fn a_good_token_is_allowed_and_its_claims_reach_the_plugin() -> anyhow::Result<()> {
        let f = fixture()?;
        let a = authorizer(&f, PolicyConfig::default());
        let token = format!("Bearer {}", grant(&["inquiry"], FUTURE).issue(&f.ring)?);
        let claims = a
            .authorize(&balance(&token))
            .map_err(|d| anyhow::anyhow!("{d:?}"))?;
        assert_eq!(claims.user_seq_no.as_deref(), Some("1100000001"));
        assert_eq!(claims.fintech_use_nums, [ACCOUNT]);
        Ok(())
    }

    #[test]
    fn missing_malformed_forged_and_truncated_tokens_are_refused() -> anyhow::Result<()> {
        let f = fixture()?;
        let a = authorizer(&f, PolicyConfig::default());
        let mut none = balance("");
        none.authorization = None;
        assert_eq!(code(a.authorize(&none)), rsp::AUTH_PARAMETER);
        assert_eq!(
            code(a.authorize(&balance("Basic abc"))),
            rsp::AUTH_PARAMETER
        );

        let forger = KeyRing::from_seed(1, &[9; 32])?;
        let forged = format!("Bearer {}", grant(&["inquiry"], FUTURE).issue(&forger)?);
        assert_eq!(code(a.authorize(&balance(&forged))), rsp::TOKEN_REJECTED);

        let good = grant(&["inquiry"], FUTURE).issue(&f.ring)?;
        let truncated = format!("Bearer {}", &good[..good.len() - 10]);
        assert_eq!(code(a.authorize(&balance(&truncated))), rsp::TOKEN_REJECTED);

        // Flip one character in the middle of the signed payload.
        let mut bytes = good.into_bytes();
        let mid = bytes.len() / 2;
        bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
        let tampered = format!("Bearer {}", String::from_utf8(bytes)?);
        assert_eq!(code(a.authorize(&balance(&tampered))), rsp::TOKEN_REJECTED);
        Ok(())
    }

    #[test]
    fn a_tampered_block_is_refused() -> anyhow::Result<()> {
        use base64::Engine;
        let f = fixture()?;
        let a = authorizer(&f, PolicyConfig::default());
        let engine = base64::engine::general_purpose::URL_SAFE;
        let token = grant(&["inquiry"], FUTURE).issue(&f.ring)?;
        let raw = engine.decode(&token)?;
        // Control: re-encoding the untouched bytes is still accepted.
        let same = format!("Bearer {}", engine.encode(&raw));
        assert_eq!(code(a.authorize(&balance(&same))), "allowed");
        // Rewrite the scope fact inside the signed authority block.
        let mut edited = raw.clone();
        let pos = edited
            .windows(7)
            .position(|w| w == b"inquiry")
            .ok_or_else(|| anyhow::anyhow!("scope not found in token bytes"))?;
        edited[pos..pos + 7].copy_from_slice(b"oobxxxx");
        let tampered = format!("Bearer {}", engine.encode(&edited));
        assert_eq!(code(a.authorize(&balance(&tampered))), rsp::TOKEN_REJECTED);
        Ok(())
    }

    #[test]
    fn expired_and_revoked_tokens_are_refused() -> anyhow::Result<()> {
        let f = fixture()?;
        let a = authorizer(&f, PolicyConfig::default());
        let expired = format!("Bearer {}", grant(&["inquiry"], 1_000).issue(&f.ring)?);
        let denial = a.authorize(&balance(&expired)).err();
        assert_eq!(
            denial.map(|d| (d.rsp_code, d.message)),
            Some((rsp::TOKEN_REJECTED, "access token expired".into()))
        );

        let token = grant(&["inquiry"], FUTURE).issue(&f.ring)?;
        let bearer = format!("Bearer {token}");
        assert_eq!(code(a.authorize(&balance(&bearer))), "allowed");
        let ids = token::verify(&f.ring, &token)?.revocation_ids;
        f.revocations.revoke(&ids[..1])?;
        let denial = a.authorize(&balance(&bearer)).err();
        assert_eq!(
            denial.map(|d| d.message),
            Some("access token revoked".into())
        );
        Ok(())
    }

    /// A cluster node that cannot prove a token unrevoked refuses it as
    /// the platform's trouble (503 `A0013`), on every path that checks
    /// revocations, and never lets it through; what it can decide alone (a
    /// forged or expired token) is still the caller's 401.
    #[test]
    fn a_list_that_cannot_tell_refuses_every_token_as_unavailable() -> anyhow::Result<()> {
        let f = fixture()?;
        let a = TokenAuthorizer::new(
            f.ring.clone(),
            Arc::new(Revocations::shared(Arc::new(
                crate::revocation::tests::Away,
            ))),
            PolicyConfig::default(),
        );
        let unavailable = |d: Option<Denial>| {
            let d = d.ok_or_else(|| anyhow::anyhow!("let through"))?;
            anyhow::ensure!((d.status, d.rsp_code) == (503, "A0013"), "{d:?}");
            anyhow::ensure!(
                !d.message.contains("2000 ms"),
                "the cause is logged, not told"
            );
            Ok(())
        };
        let token = format!("Bearer {}", grant(&["inquiry"], FUTURE).issue(&f.ring)?);
        unavailable(a.authorize(&balance(&token)).err())?;
        unavailable(a.verify_bearer(Some(&token)).err())?;
        // An appended block changes nothing: still unproven, still refused.
        let raw = token.trim_start_matches("Bearer ");
        let attenuated = format!(
            "Bearer {}",
            crate::holder::attenuate(raw, r#"check if operation("read");"#)?
        );
        unavailable(a.authorize(&balance(&attenuated)).err())?;
        let admin = format!(
            "Bearer {}",
            crate::token::issue_admin(&f.ring, "operator", FUTURE)?
        );
        unavailable(a.authorize_admin(Some(&admin)).err())?;

        let expired = format!("Bearer {}", grant(&["inquiry"], 1_000).issue(&f.ring)?);
        let denial = a.authorize(&balance(&expired)).err();
        assert_eq!(
            denial.map(|d| (d.status, d.rsp_code)),
            Some((401, rsp::TOKEN_REJECTED))
        );
        let denial = a.authorize(&balance("Bearer not-a-biscuit")).err();
        assert_eq!(
            denial.map(|d| (d.status, d.rsp_code)),
            Some((401, rsp::TOKEN_REJECTED))
        );
        Ok(())
    }

    #[test]
    fn wrong_scope_and_unconsented_accounts_are_refused() -> anyhow::Result<()> {
        let f = fixture()?;
        let a = authorizer(&f, PolicyConfig::default());
        let inquiry_only = format!("Bearer {}", grant(&["inquiry"], FUTURE).issue(&f.ring)?);
        assert_eq!(
            code(a.authorize(&withdraw(&inquiry_only, ACCOUNT, 1000))),
            rsp::NO_PERMISSION
        );

        let transfer = format!("Bearer {}", grant(&["transfer"], FUTURE).issue(&f.ring)?);
        assert_eq!(
            code(a.authorize(&withdraw(&transfer, ACCOUNT, 1000))),
            "allowed"
        );
        assert_eq!(
            code(a.authorize(&withdraw(&transfer, OTHER, 1000))),
            rsp::FINTECH_NUM_MISMATCH
        );

        let mut other_user = balance(&inquiry_only);
        other_user.user = Some("1100000009".into());
        other_user.accounts.clear();
        assert_eq!(code(a.authorize(&other_user)), rsp::NO_ACCESS);
        Ok(())
    }

    #[test]
    fn attenuation_is_enforced_on_every_request() -> anyhow::Result<()> {
        let f = fixture()?;
        let a = authorizer(&f, PolicyConfig::default());
        let token = Biscuit::from_base64(
            grant(&["inquiry", "transfer"], FUTURE).issue(&f.ring)?,
            |id| {
                f.ring
                    .public_key(id)
                    .ok_or(biscuit_auth::error::Format::UnknownPublicKey)
            },
        )?;
        // The fintech company hands a partner: transfers only from ACCOUNT,
        // at most 50,000 won each. Offline: no platform key involved.
        let partner = token.append(BlockBuilder::new().code(
            r#"check if operation("read") or resource_account("120220038200000000000001"), amount($a), $a <= 50000;"#,
        )?)?;
        let bearer = format!("Bearer {}", partner.to_base64()?);
        assert_eq!(
            code(a.authorize(&withdraw(&bearer, ACCOUNT, 50_000))),
            "allowed"
        );
        assert_eq!(
            code(a.authorize(&withdraw(&bearer, ACCOUNT, 50_001))),
            rsp::NO_ACCESS
        );
        assert_eq!(code(a.authorize(&balance(&bearer))), "allowed");

        // A block cannot widen the grant: a forged scope fact in a later block is ignored.
        let widened = token.append(
            BlockBuilder::new().code(r#"scope("oob"); account("120220038200000000000002");"#)?,
        )?;
        let bearer = format!("Bearer {}", widened.to_base64()?);
        assert_eq!(
            code(a.authorize(&withdraw(&bearer, OTHER, 1))),
            rsp::FINTECH_NUM_MISMATCH
        );
        Ok(())
    }

    #[test]
    fn bank_co_signed_consent_can_be_required() -> anyhow::Result<()> {
        let f = fixture()?;
        let bank = KeyPair::new();
        let impostor = KeyPair::new();
        let a = authorizer(
            &f,
            PolicyConfig {
                bank_consent: vec![(bank.public(), vec!["transfer".into()])],
                ..PolicyConfig::default()
            },
        );
        let token = Biscuit::from_base64(
            grant(&["inquiry", "transfer"], FUTURE).issue(&f.ring)?,
            |id| {
                f.ring
                    .public_key(id)
                    .ok_or(biscuit_auth::error::Format::UnknownPublicKey)
            },
        )?;
        let plain = format!("Bearer {}", token.to_base64()?);
        assert_eq!(
            code(a.authorize(&withdraw(&plain, ACCOUNT, 1000))),
            rsp::NO_ACCESS
        );
        // Inquiry does not need the bank's consent.
        assert_eq!(code(a.authorize(&balance(&plain))), "allowed");

        let consent = |signer: &KeyPair| -> anyhow::Result<String> {
            let request = token.third_party_request()?;
            let block = BlockBuilder::new().code_with_params(
                r#"bank_consent({f}, "transfer");"#,
                HashMap::from([("f".to_owned(), Term::Str(ACCOUNT.into()))]),
                HashMap::new(),
            )?;
            let signed = request.create_block(&signer.private(), block)?;
            Ok(format!(
                "Bearer {}",
                token
                    .append_third_party(signer.public(), signed)?
                    .to_base64()?
            ))
        };
        assert_eq!(
            code(a.authorize(&withdraw(&consent(&bank)?, ACCOUNT, 1000))),
            "allowed"
        );
        assert_eq!(
            code(a.authorize(&withdraw(&consent(&impostor)?, ACCOUNT, 1000))),
            rsp::NO_ACCESS
        );
        Ok(())
    }

    #[test]
    fn admin_tokens_are_separate_from_access_tokens() -> anyhow::Result<()> {
        let f = fixture()?;
        let a = authorizer(&f, PolicyConfig::default());
        let admin = format!(
            "Bearer {}",
            crate::token::issue_admin(&f.ring, "operator", FUTURE)?
        );
        assert_eq!(
            a.authorize_admin(Some(&admin)).ok().as_deref(),
            Some("operator")
        );
        let access = format!("Bearer {}", grant(&["oob"], FUTURE).issue(&f.ring)?);
        assert_eq!(
            a.authorize_admin(Some(&access)).err().map(|d| d.rsp_code),
            Some(rsp::NO_PERMISSION)
        );
        let expired = format!(
            "Bearer {}",
            crate::token::issue_admin(&f.ring, "operator", 1_000)?
        );
        assert!(a.authorize_admin(Some(&expired)).is_err());
        // An admin token is not an access token for APIs.
        assert_eq!(code(a.authorize(&balance(&admin))), rsp::TOKEN_REJECTED);
        Ok(())
    }

    #[test]
    fn run_limits_stop_a_degenerate_attenuation() -> anyhow::Result<()> {
        let f = fixture()?;
        let a = authorizer(
            &f,
            PolicyConfig {
                limits: AuthorizerLimits {
                    max_facts: 50,
                    max_iterations: 10,
                    max_time: std::time::Duration::from_millis(50),
                },
                ..PolicyConfig::default()
            },
        );
        let token = Biscuit::from_base64(grant(&["inquiry"], FUTURE).issue(&f.ring)?, |id| {
            f.ring
                .public_key(id)
                .ok_or(biscuit_auth::error::Format::UnknownPublicKey)
        })?;
        let mut block = String::new();
        for i in 0..100 {
            block.push_str(&format!("n({i});\n"));
        }
        block.push_str("pair($a, $b) <- n($a), n($b);\n");
        let bloated = format!(
            "Bearer {}",
            token
                .append(BlockBuilder::new().code(block)?)?
                .to_base64()?
        );
        // Refused when verified, before any evaluation, naming the limit.
        let denial = a.authorize(&balance(&bloated)).err();
        assert_eq!(
            denial.as_ref().map(|d| d.rsp_code),
            Some(rsp::TOKEN_REJECTED)
        );
        assert!(
            denial.is_some_and(|d| d.message.contains("block 1 has 100 facts; the limit is 32")),
        );
        Ok(())
    }
}
