//! Access tokens: biscuits whose authority block, signed by the platform root
//! key, carries the grant (client, user, scopes, consented accounts) and an
//! expiry check.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use biscuit_auth::builder::Term;
use biscuit_auth::datalog::{SymbolTable, Term as DatalogTerm};
use biscuit_auth::{Biscuit, KeyPair};
use sfop_core::Claims;

use crate::KeyRing;
use crate::blocks::Blocks;
use crate::limits::{self, LimitError, TokenLimits};

/// What an access token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessGrant {
    pub client_id: String,
    pub client_use_code: Option<String>,
    pub user_seq_no: Option<String>,
    pub scopes: Vec<String>,
    /// Accounts the user consented to for this client.
    pub fintech_use_nums: Vec<String>,
    /// Seconds since the Unix epoch.
    pub expires_at: u64,
}

/// Why a presented token was not accepted. Messages are safe to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed or its signature does not verify")]
    Rejected,
    #[error("the token was signed by a root key this platform does not accept")]
    UnknownKey,
    #[error("the token does not carry a complete grant")]
    Incomplete,
    #[error("the token exceeds the platform's published limits: {0}")]
    TooComplex(#[from] LimitError),
}

impl AccessGrant {
    fn builder(
        &self,
        key_id: u32,
    ) -> Result<biscuit_auth::BiscuitBuilder, biscuit_auth::error::Token> {
        let mut b = Biscuit::builder().root_key_id(key_id);
        let one = |name: &str, value: &str| -> (String, HashMap<String, Term>) {
            (
                format!("{name}({{v}});"),
                HashMap::from([("v".to_owned(), Term::Str(value.to_owned()))]),
            )
        };
        let mut facts = vec![one("client", &self.client_id)];
        if let Some(code) = &self.client_use_code {
            facts.push(one("client_use_code", code));
        }
        if let Some(user) = &self.user_seq_no {
            facts.push(one("user", user));
        }
        facts.extend(self.scopes.iter().map(|s| one("scope", s)));
        facts.extend(self.fintech_use_nums.iter().map(|f| one("account", f)));
        for (code, params) in facts {
            b = b.code_with_params(code, params, HashMap::new())?;
        }
        let expiry = HashMap::from([("exp".to_owned(), Term::Date(self.expires_at))]);
        b.code_with_params(
            "expires({exp}); check if time($t), $t <= {exp};",
            expiry,
            HashMap::new(),
        )
    }

    /// A token for this grant, signed by the ring's current key.
    pub fn issue(&self, ring: &KeyRing) -> crate::Result<String> {
        let (id, root) = ring.current()?;
        Ok(self.builder(id)?.build(root)?.to_base64()?)
    }

    /// A token whose bytes depend only on the inputs: the next-block key is
    /// given instead of drawn at random. For reproducible samples.
    pub fn issue_deterministic(&self, ring: &KeyRing, next: &KeyPair) -> crate::Result<String> {
        let (id, root) = ring.current()?;
        Ok(self
            .builder(id)?
            .build_with_key_pair(root, SymbolTable::new(), next)?
            .to_base64()?)
    }
}

/// An operator token for the admin API: `admin(subject)`, `role("admin")`,
/// and an expiry check, signed by the root key.
pub fn issue_admin(ring: &KeyRing, subject: &str, expires_at: u64) -> crate::Result<String> {
    let (id, root) = ring.current()?;
    let params = HashMap::from([
        ("subject".to_owned(), Term::Str(subject.to_owned())),
        ("exp".to_owned(), Term::Date(expires_at)),
    ]);
    Ok(Biscuit::builder()
        .root_key_id(id)
        .code_with_params(
            r#"admin({subject}); role("admin"); expires({exp}); check if time($t), $t <= {exp};"#,
            params,
            HashMap::new(),
        )?
        .build(root)?
        .to_base64()?)
}

/// A token whose signatures verified, with the grant of its authority block.
#[derive(Debug, Clone)]
pub struct Verified {
    pub biscuit: Biscuit,
    pub claims: Claims,
    pub expires_at: u64,
    /// Hex revocation ids of every block.
    pub revocation_ids: Vec<String>,
}

/// Checks the signatures of `token`, holds it to the published limits
/// ([`TokenLimits::default`]) and reads its grant. Does not decide anything
/// about a request: that is [`crate::policy`].
pub fn verify(ring: &KeyRing, token: &str) -> Result<Verified, TokenError> {
    verify_within(ring, token, &TokenLimits::default())
}

/// [`verify`] under the given limits.
pub fn verify_within(
    ring: &KeyRing,
    token: &str,
    limits: &TokenLimits,
) -> Result<Verified, TokenError> {
    let (biscuit, blocks) = parse_blocks(ring, token, limits)?;
    let claims = read_grant(&blocks)?;
    let revocation_ids = biscuit
        .revocation_identifiers()
        .iter()
        .map(hex::encode)
        .collect();
    Ok(Verified {
        claims: claims.0,
        expires_at: claims.1,
        biscuit,
        revocation_ids,
    })
}

/// Checks the signatures of `token` and holds it to `limits`, before any of
/// its Datalog is evaluated: the encoded size and block count before the
/// signatures are checked, every block's shape and the work estimate after.
pub fn parse_within(
    ring: &KeyRing,
    token: &str,
    limits: &TokenLimits,
) -> Result<Biscuit, TokenError> {
    Ok(parse_blocks(ring, token, limits)?.0)
}

/// [`parse_within`], with the token's decoded blocks.
fn parse_blocks(
    ring: &KeyRing,
    token: &str,
    limits: &TokenLimits,
) -> Result<(Biscuit, Blocks), TokenError> {
    if !limits::check_encoded(token, limits)? {
        return Err(TokenError::Rejected);
    }
    let biscuit = Biscuit::from_base64(token, |id: Option<u32>| {
        ring.public_key(id)
            .ok_or(biscuit_auth::error::Format::UnknownPublicKey)
    })
    .map_err(|e| match e {
        biscuit_auth::error::Token::Format(biscuit_auth::error::Format::UnknownPublicKey) => {
            TokenError::UnknownKey
        }
        _ => TokenError::Rejected,
    })?;
    let blocks = Blocks::of(&biscuit).map_err(|_| TokenError::Rejected)?;
    limits::check_blocks(&blocks, limits)?;
    Ok((biscuit, blocks))
}

/// Datalog run limits for reading and deciding a token. What bounds the work
/// a hostile attenuation block can cause is [`TokenLimits`], checked before
/// evaluation, and the work meter of the decision (ADR 0015). The time limit
/// is wall-clock time, a backstop of biscuit-auth's own authoriser only
/// (admin tokens, the fast path's fallback), so it is generous enough that a
/// preempted thread on a loaded machine does not turn a valid token into a
/// refusal (biscuit's default, 1 ms, did: tokens were refused under load).
pub fn run_limits() -> biscuit_auth::AuthorizerLimits {
    biscuit_auth::AuthorizerLimits {
        max_facts: 1_000,
        max_iterations: 100,
        max_time: std::time::Duration::from_millis(100),
    }
}

/// The authority block's grant: facts only the root key could have signed,
/// read from the block itself. No Datalog runs (nothing of a later block can
/// add to the grant, and reading it costs no evaluation and no clock); rules
/// in the authority block are not followed, and a grant that names two
/// clients, users, codes or expiries is incomplete.
fn read_grant(blocks: &Blocks) -> Result<(Claims, u64), TokenError> {
    let authority = blocks.blocks.first().ok_or(TokenError::Incomplete)?;
    let symbols = blocks.symbols(0);
    let mut grant: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut expiries = BTreeSet::new();
    for fact in &authority.facts {
        let name = symbols
            .get_symbol(fact.predicate.name)
            .ok_or(TokenError::Rejected)?;
        match (name, fact.predicate.terms.as_slice()) {
            ("expires", [DatalogTerm::Date(at)]) => {
                expiries.insert(*at);
            }
            (
                name @ ("client" | "client_use_code" | "user" | "scope" | "account"),
                [DatalogTerm::Str(value)],
            ) => {
                let value = symbols.get_symbol(*value).ok_or(TokenError::Rejected)?;
                grant.entry(name).or_default().insert(value.to_owned());
            }
            _ => {}
        }
    }
    let mut take = |name: &str| grant.remove(name).unwrap_or_default();
    let single = |values: BTreeSet<String>| -> Result<Option<String>, TokenError> {
        match values.len() {
            0 | 1 => Ok(values.into_iter().next()),
            _ => Err(TokenError::Incomplete),
        }
    };
    let client_id = single(take("client"))?.ok_or(TokenError::Incomplete)?;
    let client_use_code = single(take("client_use_code"))?;
    let user_seq_no = single(take("user"))?;
    let scopes = take("scope").into_iter().collect();
    let fintech_use_nums = take("account").into_iter().collect();
    let expires_at = match expiries.len() {
        1 => expiries.into_iter().next().ok_or(TokenError::Incomplete)?,
        _ => return Err(TokenError::Incomplete),
    };
    Ok((
        Claims {
            client_id,
            client_use_code,
            user_seq_no,
            scopes,
            fintech_use_nums,
        },
        expires_at,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> AccessGrant {
        AccessGrant {
            client_id: "client-1".into(),
            client_use_code: Some("M202200382".into()),
            user_seq_no: Some("1100000001".into()),
            scopes: vec!["inquiry".into(), "login".into()],
            fintech_use_nums: vec!["120220038288941234567890".into()],
            expires_at: 4_102_444_800, // 2100-01-01
        }
    }

    #[test]
    fn issued_tokens_verify_and_carry_the_grant() -> anyhow::Result<()> {
        let ring = KeyRing::from_seed(7, &[1; 32])?;
        let token = grant().issue(&ring)?;
        let verified = verify(&ring, &token)?;
        assert_eq!(verified.claims.client_id, "client-1");
        assert_eq!(verified.claims.user_seq_no.as_deref(), Some("1100000001"));
        assert_eq!(verified.claims.scopes, ["inquiry", "login"]);
        assert_eq!(verified.claims.fintech_use_nums.len(), 1);
        assert_eq!(verified.expires_at, 4_102_444_800);
        assert_eq!(verified.biscuit.root_key_id(), Some(7));
        Ok(())
    }

    #[test]
    fn injection_through_values_is_impossible() -> anyhow::Result<()> {
        let ring = KeyRing::from_seed(1, &[1; 32])?;
        let mut g = grant();
        g.client_id = r#"x"); scope("transfer"#.into();
        let verified = verify(&ring, &g.issue(&ring)?)?;
        assert_eq!(verified.claims.client_id, g.client_id);
        assert!(!verified.claims.scopes.contains(&"transfer".to_owned()));
        Ok(())
    }

    #[test]
    fn other_keys_and_garbage_are_rejected() -> anyhow::Result<()> {
        let ring = KeyRing::from_seed(1, &[1; 32])?;
        let other = KeyRing::from_seed(1, &[2; 32])?;
        let token = grant().issue(&other)?;
        assert_eq!(verify(&ring, &token).err(), Some(TokenError::Rejected));
        let unknown_id = KeyRing::from_seed(2, &[1; 32])?;
        assert_eq!(
            verify(&ring, &grant().issue(&unknown_id)?).err(),
            Some(TokenError::UnknownKey)
        );
        assert_eq!(
            verify(&ring, "not-a-token").err(),
            Some(TokenError::Rejected)
        );
        let good = grant().issue(&ring)?;
        assert_eq!(
            verify(&ring, &good[..good.len() / 2]).err(),
            Some(TokenError::Rejected)
        );
        Ok(())
    }
}
