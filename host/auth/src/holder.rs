//! What token holders outside the platform do with sfop access tokens, offline:
//! a fintech company narrows a token before handing it to a partner, and a
//! bank co-signs consent in a third-party block. The gateway enforces every
//! block; none of this needs the platform's keys.
//!
//! Restrictions are Datalog checks over the facts the gateway provides (see
//! [`crate::policy`]): `time`, `api`, `operation`, `required_scope`,
//! `resource_account`, `resource_user`, `amount`. For example:
//! `check if operation("read") or amount($a), $a <= 30000;`

use std::collections::HashMap;

use biscuit_auth::builder::Term;
use biscuit_auth::{
    Algorithm, BlockBuilder, KeyPair, PrivateKey, ThirdPartyBlock, ThirdPartyRequest,
    UnverifiedBiscuit,
};

use crate::{Error, Result};

/// `token` with one more block of checks (Datalog source).
pub fn attenuate(token: &str, checks: &str) -> Result<String> {
    let block = BlockBuilder::new().code(checks)?;
    Ok(UnverifiedBiscuit::from_base64(token)?
        .append(block)?
        .to_base64()?)
}

/// A bank's signing key: `(private key hex, public key "ed25519/<hex>")`.
pub fn generate_bank_key() -> (String, String) {
    let pair = KeyPair::new();
    (
        pair.private().to_bytes_hex(),
        format!("ed25519/{}", pair.public().to_bytes_hex()),
    )
}

/// Step 1 (fintech company): the request a bank needs to co-sign `token`.
pub fn third_party_request(token: &str) -> Result<String> {
    Ok(UnverifiedBiscuit::from_base64(token)?
        .third_party_request()?
        .serialize_base64()?)
}

/// Step 2 (bank): sign `bank_consent(fintech_use_num, scope)` for the request.
pub fn cosign_consent(
    request: &str,
    bank_private_hex: &str,
    fintech_use_num: &str,
    scope: &str,
) -> Result<String> {
    let private = PrivateKey::from_bytes_hex(bank_private_hex, Algorithm::Ed25519)
        .map_err(|e| Error::Key(format!("bank private key: {e}")))?;
    let block = BlockBuilder::new().code_with_params(
        "bank_consent({f}, {s});",
        HashMap::from([
            ("f".to_owned(), Term::Str(fintech_use_num.to_owned())),
            ("s".to_owned(), Term::Str(scope.to_owned())),
        ]),
        HashMap::new(),
    )?;
    let signed: ThirdPartyBlock =
        ThirdPartyRequest::deserialize_base64(request)?.create_block(&private, block)?;
    Ok(signed.serialize_base64()?)
}

/// Step 3 (fintech company): `token` with the bank's signed block appended.
pub fn append_cosigned(token: &str, signed_block: &str) -> Result<String> {
    Ok(UnverifiedBiscuit::from_base64(token)?
        .append_third_party_base64(signed_block)?
        .to_base64()?)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::policy::{AuthInput, PolicyConfig, TokenAuthorizer, rsp};
    use crate::{AccessGrant, KeyRing, Revocations};

    #[test]
    fn attenuation_and_cosigning_without_platform_keys() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = sfop_store::Store::open(dir.path())?;
        let ring = KeyRing::open(&store)?;
        let (bank_private, bank_public) = generate_bank_key();
        let authorizer = TokenAuthorizer::new(
            ring.clone(),
            Arc::new(Revocations::open(&store)?),
            PolicyConfig::default().require_bank_consent(&bank_public, vec!["transfer".into()])?,
        );
        let account = "120230000100000000000015";
        let token = AccessGrant {
            client_id: "app".into(),
            client_use_code: Some("M202300001".into()),
            user_seq_no: Some("1100000001".into()),
            scopes: vec!["transfer".into()],
            fintech_use_nums: vec![account.into()],
            expires_at: 4_102_444_800,
        }
        .issue(&ring)?;
        let cosigned = append_cosigned(
            &token,
            &cosign_consent(
                &third_party_request(&token)?,
                &bank_private,
                account,
                "transfer",
            )?,
        )?;
        let partner = attenuate(&cosigned, "check if amount($a), $a <= 10000;")?;
        let decide = |t: &str, amount: i64| {
            let bearer = format!("Bearer {t}");
            authorizer
                .authorize(&AuthInput {
                    authorization: Some(&bearer),
                    api: "withdraw",
                    required_scope: "transfer",
                    accounts: vec![account.into()],
                    user: None,
                    amount: Some(amount),
                })
                .map(|_| "ok")
                .unwrap_or_else(|d| d.rsp_code)
        };
        assert_eq!(decide(&token, 5_000), rsp::NO_ACCESS, "no bank consent");
        assert_eq!(decide(&cosigned, 50_000), "ok");
        assert_eq!(decide(&partner, 10_000), "ok");
        assert_eq!(decide(&partner, 10_001), rsp::NO_ACCESS);
        assert!(attenuate(&token, "this is not datalog").is_err());
        Ok(())
    }
}
