//! A verified token's blocks in biscuit-auth's Datalog form, each with the
//! symbol table its indexes refer to. Shared by the limits check
//! ([`crate::limits`]) and the prepared decision ([`crate::prepared`]), so
//! both read the token the same way, and the way `AuthorizerBuilder::build`
//! does (`SerializedBiscuit::extract_blocks`, `load_and_translate_block`).

use biscuit_auth::builder::{self, Convert};
use biscuit_auth::datalog::{Check, Fact, Rule, SymbolTable};
use biscuit_auth::error::{self, Token};
use biscuit_auth::format::{convert::proto_block_to_token_block, schema};
use biscuit_auth::{Biscuit, PublicKey};
use prost::Message;

/// One block's Datalog (biscuit-auth's `Block`, whose type is not public).
pub(crate) struct Block {
    /// The block's own symbols (a third-party block's indexes refer to them).
    symbols: SymbolTable,
    pub(crate) facts: Vec<Fact>,
    pub(crate) rules: Vec<Rule>,
    pub(crate) checks: Vec<Check>,
    /// The block's scopes, read with its symbols.
    pub(crate) scopes: Vec<builder::Scope>,
    pub(crate) external_key: Option<PublicKey>,
}

/// Every block of a token, authority first.
pub(crate) struct Blocks {
    /// The token's own symbol table: the authority block's and first-party
    /// blocks' symbols and public keys (`Biscuit::symbols` is crate-private).
    token_symbols: SymbolTable,
    pub(crate) blocks: Vec<Block>,
    /// `[None, external key of block 1, ...]`.
    pub(crate) external: Vec<Option<PublicKey>>,
}

fn decode(bytes: &[u8]) -> Result<schema::Block, Token> {
    schema::Block::decode(bytes).map_err(|e| {
        Token::Format(error::Format::BlockDeserializationError(format!(
            "error deserializing block: {e:?}"
        )))
    })
}

impl Blocks {
    /// Decodes the blocks of a token whose signatures were verified.
    pub(crate) fn of(biscuit: &Biscuit) -> Result<Self, Token> {
        let proto = biscuit.container().to_proto();
        let mut raw = Vec::with_capacity(1 + proto.blocks.len());
        raw.push(decode(&proto.authority.block)?);
        for block in &proto.blocks {
            raw.push(decode(&block.block)?);
        }
        // The authority block never has an external key (biscuit-auth
        // refuses it when deserialising).
        let external = biscuit.external_public_keys();
        if external.len() != raw.len() {
            return Err(Token::InternalError);
        }
        let mut token_strings = Vec::new();
        let mut token_keys = Vec::new();
        for (block, key) in raw.iter().zip(&external) {
            if key.is_none() {
                token_strings.extend(block.symbols.iter().cloned());
                for pk in &block.public_keys {
                    token_keys.push(PublicKey::from_proto(pk)?);
                }
            }
        }
        let token_symbols = SymbolTable::from_symbols_and_public_keys(token_strings, token_keys)?;
        let blocks = raw
            .iter()
            .zip(&external)
            .map(|(proto, key)| {
                let b = proto_block_to_token_block(proto, *key).map_err(Token::Format)?;
                let symbols = if key.is_some() {
                    &b.symbols
                } else {
                    &token_symbols
                };
                let scopes = b
                    .scopes
                    .iter()
                    .map(|s| builder::Scope::convert_from(s, symbols))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Block {
                    symbols: b.symbols,
                    facts: b.facts,
                    rules: b.rules,
                    checks: b.checks,
                    scopes,
                    external_key: b.external_key,
                })
            })
            .collect::<Result<Vec<_>, Token>>()?;
        Ok(Self {
            token_symbols,
            blocks,
            external,
        })
    }

    /// The table block `i`'s symbol indexes refer to: a third-party block's
    /// own, else the token's.
    pub(crate) fn symbols(&self, i: usize) -> &SymbolTable {
        match self.blocks.get(i) {
            Some(block) if i != 0 && block.external_key.is_some() => &block.symbols,
            _ => &self.token_symbols,
        }
    }
}
