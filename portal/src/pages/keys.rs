//! The platform's root public keys, and how a third party verifies and
//! attenuates an sfop token offline with them.

use std::fmt::Write as _;

use sfop_auth::KeyStatus;

use super::Ctx;
use crate::PortalResponse;
use crate::render::escape;

/// Where the platform publishes the keys as JSON (mounted by the binary).
const WELL_KNOWN: &str = "/.well-known/sfop-keys.json";

pub(super) fn keys_page(ctx: &Ctx<'_>) -> PortalResponse {
    let Some(ring) = &ctx.portal.keys else {
        return ctx.page(
            "Keys",
            "/portal/keys",
            "<h1>Root keys</h1><p class=\"muted\">This platform runs without \
             authorisation (auth mode <code>off</code>): it issues no tokens and has no keys.</p>",
        );
    };
    let published = ring.published();
    let mut rows = String::new();
    for key in &published.keys {
        let status = match key.status {
            KeyStatus::Current => "<span class=\"badge live\">current</span>: signs new tokens",
            KeyStatus::Active => "<span class=\"badge\">active</span>: verifies tokens it signed",
            KeyStatus::Retired => {
                "<span class=\"badge retired\">retired</span>: tokens it signed are refused"
            }
        };
        let _ = write!(
            rows,
            "<tr><td>{id}</td><td>{alg}</td><td><code>{public}</code></td><td>{status}</td></tr>",
            id = key.root_key_id,
            alg = escape(&key.algorithm),
            public = escape(&key.public_key),
        );
    }
    let current = published
        .keys
        .iter()
        .find(|k| k.status == KeyStatus::Current)
        .map(|k| k.public_key.clone())
        .unwrap_or_default();
    let base = ctx.base_url();
    let body = format!(
        "<h1>Root keys</h1>\
         <p>Every access token is a <a href=\"https://www.biscuitsec.org/\">biscuit</a> whose authority block \
         is signed by one of the platform's root keys; the token names the key in its <code>root_key_id</code>. \
         With the public keys below anyone can check a token's signatures and append blocks that narrow it, \
         offline, without asking the platform. The gateway still decides every call: it checks every block, \
         the expiry and revocation.</p>\
         <table><thead><tr><th><code>root_key_id</code></th><th>Algorithm</th><th>Public key</th><th>Status</th></tr></thead>\
         <tbody>{rows}</tbody></table>\
         <p>The same list as JSON, for programs: <a href=\"{well_known}\"><code>GET {well_known}</code></a> \
         (no authorisation; cache it at most five minutes). When a token names a <code>root_key_id</code> you do not \
         know, fetch the list again: the operator rotated the keys. Refuse tokens whose key is <code>retired</code> \
         or absent.</p>\
         <h2>Verify and attenuate with biscuit-cli</h2>\
         <p>With <a href=\"https://github.com/eclipse-biscuit/biscuit-cli\">biscuit-cli</a> 0.6 \
         (<code>cargo install biscuit-cli</code>), the token in <code>token.txt</code>:</p>\
         <pre>{cli}</pre>\
         <h2>Verify and attenuate with biscuit-auth (Rust)</h2>\
         <pre>{rust}</pre>\
         <p>Attenuation needs no key at all: a block appended by a holder is signed with a fresh key carried \
         in the token. Blocks can only restrict; see <a href=\"/portal/permissions\">Permissions</a> for the facts \
         the gateway provides to your checks (<code>operation</code>, <code>amount</code>, \
         <code>resource_account</code>, <code>time</code>…).</p>",
        well_known = WELL_KNOWN,
        cli = escape(&cli_sample(&base, &current)),
        rust = escape(RUST_SAMPLE),
    );
    ctx.page("Keys", "/portal/keys", &body)
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
