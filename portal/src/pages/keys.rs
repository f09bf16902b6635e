//! The platform's root public keys, and how a third party verifies and
//! attenuates an sfop token offline with them.

use maud::html;
use sfop_auth::KeyStatus;

use super::Ctx;
use crate::PortalResponse;

/// Where the platform publishes the keys as JSON (mounted by the binary).
const WELL_KNOWN: &str = "/.well-known/sfop-keys.json";

pub(super) fn keys_page(ctx: &Ctx<'_>) -> PortalResponse {
    let Some(ring) = &ctx.portal.keys else {
        let body = html! {
            h1 { "Root keys" }
            p.muted {
                "This platform runs without authorisation (auth mode " code { "off" }
                "): it issues no tokens and has no keys."
            }
        };
        return ctx.page("Keys", "/portal/keys", body);
    };
    let published = ring.published();
    let current = published
        .keys
        .iter()
        .find(|k| k.status == KeyStatus::Current)
        .map(|k| k.public_key.clone())
        .unwrap_or_default();
    let base = ctx.base_url();
    let body = html! {
        h1 { "Root keys" }
        p {
            "Every access token is a " a href="https://www.biscuitsec.org/" { "biscuit" }
            " whose authority block is signed by one of the platform's root keys; the token names the key in its "
            code { "root_key_id" } ". With the public keys below anyone can check a token's signatures and append \
             blocks that narrow it, offline, without asking the platform. The gateway still decides every call: it \
             checks every block, the expiry and revocation."
        }
        div.table-wrap { table {
            thead { tr { th { code { "root_key_id" } } th { "Algorithm" } th { "Public key" } th { "Status" } } }
            tbody {
                @for key in &published.keys {
                    tr {
                        td { (key.root_key_id) }
                        td { (key.algorithm) }
                        td { code { (key.public_key) } }
                        td {
                            @match key.status {
                                KeyStatus::Current => { span.badge.live { "current" } ": signs new tokens" }
                                KeyStatus::Active => { span.badge { "active" } ": verifies tokens it signed" }
                                KeyStatus::Retired => { span.badge.retired { "retired" } ": tokens it signed are refused" }
                            }
                        }
                    }
                }
            }
        } }
        p {
            "The same list as JSON, for programs: " a href=(WELL_KNOWN) { code { "GET " (WELL_KNOWN) } }
            " (no authorisation; cache it at most five minutes). When a token names a " code { "root_key_id" }
            " you do not know, fetch the list again: the operator rotated the keys. Refuse tokens whose key is "
            code { "retired" } " or absent."
        }
        h2 { "Verify and attenuate with biscuit-cli" }
        p {
            "With " a href="https://github.com/eclipse-biscuit/biscuit-cli" { "biscuit-cli" } " 0.6 ("
            code { "cargo install biscuit-cli" } "), the token in " code { "token.txt" } ":"
        }
        pre { (cli_sample(&base, &current)) }
        h2 { "Verify and attenuate with biscuit-auth (Rust)" }
        pre { (RUST_SAMPLE) }
        p {
            "Attenuation needs no key at all: a block appended by a holder is signed with a fresh key carried \
             in the token. Blocks can only restrict; see " a href="/portal/permissions" { "Permissions" }
            " for the facts the gateway provides to your checks (" code { "operation" } ", " code { "amount" } ", "
            code { "resource_account" } ", " code { "time" } "…)."
        }
    };
    ctx.page("Keys", "/portal/keys", body)
}

fn cli_sample(base: &str, current: &str) -> String {
    format!(
        "# the platform's current key
curl -s {base}{WELL_KNOWN}
# check the signatures with it and print the blocks
biscuit inspect --public-key {current} token.txt
# narrow the token: reads only, or at most 30,000 KRW
biscuit attenuate token.txt --block 'check if operation(\"read\") or amount($a), $a <= 30000;' > partner.txt"
    )
}

const RUST_SAMPLE: &str = r##"use biscuit_auth::{Biscuit, PublicKey, builder::BlockBuilder};

// `keys`: root_key_id -> PublicKey, read from /.well-known/sfop-keys.json
// ("ed25519/<hex>".parse::<PublicKey>()), skipping "retired" keys.
let token = Biscuit::from_base64(&access_token, |id: Option<u32>| {
    id.and_then(|id| keys.get(&id).cloned())
        .ok_or(biscuit_auth::error::Format::UnknownPublicKey)
})?;
let partner = token
    .append(BlockBuilder::new().code(r#"check if operation("read");"#)?)?
    .to_base64()?;"##;
