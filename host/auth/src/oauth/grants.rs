//! What the authorization server issued and must remember: authorization
//! codes, refresh tokens, what each issue gave (for unlink and replays)
//! and the token families a replay revoked. In sled on one node
//! ([`SledGrants`]); the cluster's on a cluster node (ADR 0029), kept by the
//! composition root. The server decides every check; a store runs the
//! checks of a redemption or a rotation atomically with its mark, so two
//! requests (on one node or two) cannot both win.
//!
//! Called on a blocking thread (the OAuth server's), never on an async
//! worker. A shared store that cannot be reached answers
//! [`Error::Unavailable`](crate::Error::Unavailable).

use serde::{Deserialize, Serialize};
use sfop_store::{Abort, Store, Tree, TxError};

use crate::Result;

/// An issued authorization code (stored under its hash). After its one
/// redemption it stays, marked, so that a replay is recognised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRecord {
    pub client_id: String,
    pub redirect_uri: String,
    pub user_seq_no: String,
    pub scopes: Vec<String>,
    pub fintech_use_nums: Vec<String>,
    pub code_challenge: Option<String>,
    pub expires_at: u64,
    /// The token family its redemption started, once redeemed.
    #[serde(default)]
    pub redeemed: Option<String>,
}

/// A refresh token (stored under its hash). Rotation marks it used rather
/// than removing it, so that a replay is recognised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRecord {
    pub client_id: String,
    pub user_seq_no: String,
    pub scopes: Vec<String>,
    pub fintech_use_nums: Vec<String>,
    pub expires_at: u64,
    /// The authorization this token descends from.
    #[serde(default)]
    pub family: Option<String>,
    /// Already exchanged for a new pair.
    #[serde(default)]
    pub rotated: bool,
}

/// What one issue to a (client, user) pair gave, so that unlink can revoke
/// it all, and a replay the family it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedRecord {
    pub revocation_ids: Vec<String>,
    pub refresh_hash: Option<String>,
    #[serde(default)]
    pub family: Option<String>,
}

/// Why a code redemption failed, decided by the server's check.
#[derive(Debug)]
pub enum Redeem {
    Unknown,
    OtherClient,
    Expired,
    RedirectMismatch,
    NoVerifier,
    BadVerifier,
    /// Redeemed before: the family it started.
    Replayed(Box<CodeRecord>),
}

/// Why a refresh failed, decided by the server's check.
#[derive(Debug)]
pub enum Rotate {
    Unknown,
    /// A scope that was not granted.
    Scope(String),
    Replayed(Box<RefreshRecord>),
}

/// A redemption's or rotation's check, run under the store's lock.
pub type Check<'a, R, E> = &'a (dyn Fn(&R) -> std::result::Result<(), E> + Sync);

/// Where the server keeps what it issued.
pub trait Grants: Send + Sync + std::fmt::Debug {
    fn put_code(&self, code_hash: &str, code: &CodeRecord) -> Result<()>;
    /// Marks code `code_hash` redeemed into `family` if `check` passes,
    /// atomically: `None` for an unknown code, `Some(Err)` with what the
    /// check refused (nothing written), else the code as redeemed.
    fn redeem_code(
        &self,
        code_hash: &str,
        family: &str,
        check: Check<'_, CodeRecord, Redeem>,
    ) -> Result<Option<std::result::Result<CodeRecord, Redeem>>>;
    fn put_refresh(&self, token_hash: &str, refresh: &RefreshRecord) -> Result<()>;
    fn refresh(&self, token_hash: &str) -> Result<Option<RefreshRecord>>;
    /// Marks refresh token `token_hash` rotated if `check` passes,
    /// atomically: `None` for an unknown token, `Some(Err)` with what the
    /// check refused (nothing written), else the token as it was.
    fn rotate_refresh(
        &self,
        token_hash: &str,
        check: Check<'_, RefreshRecord, Rotate>,
    ) -> Result<Option<std::result::Result<RefreshRecord, Rotate>>>;
    fn remove_refresh(&self, token_hash: &str) -> Result<()>;
    fn put_issued(&self, client_id: &str, user: &str, issued: &IssuedRecord) -> Result<()>;
    /// What was issued to (`client_id`, `user`), each under a key for
    /// [`remove_issued`](Self::remove_issued).
    fn issued(&self, client_id: &str, user: &str) -> Result<Vec<(String, IssuedRecord)>>;
    fn remove_issued(&self, key: &str) -> Result<()>;
    /// Marks `family` revoked: a token issued into it later dies at once.
    fn revoke_family(&self, client_id: &str, user: &str, family: &str) -> Result<()>;
    fn family_revoked(&self, family: &str) -> Result<bool>;
    /// Makes what was written durable (sled's flush; a database's commits
    /// already are).
    fn flush(&self) -> Result<()>;
}

/// The grants in this node's sled store.
#[derive(Debug, Clone)]
pub struct SledGrants {
    store: Store,
    codes: Tree,
    refresh: Tree,
    issued: Tree,
    /// Families revoked by a replay (a token issued into one dies at once).
    revoked_families: Tree,
}

impl SledGrants {
    pub fn open(store: &Store) -> Result<Self> {
        Ok(Self {
            store: store.clone(),
            codes: store.tree("auth.codes")?,
            refresh: store.tree("auth.refresh")?,
            issued: store.tree("auth.issued")?,
            revoked_families: store.tree("auth.revoked-families")?,
        })
    }
}

impl Grants for SledGrants {
    fn put_code(&self, code_hash: &str, code: &CodeRecord) -> Result<()> {
        Ok(self.codes.insert_json(code_hash, code)?)
    }

    fn redeem_code(
        &self,
        code_hash: &str,
        family: &str,
        check: Check<'_, CodeRecord, Redeem>,
    ) -> Result<Option<std::result::Result<CodeRecord, Redeem>>> {
        let outcome = self.store.transaction(&[&self.codes], |tx| {
            let [codes] = tx else {
                return Err(Abort::with(None));
            };
            let mut record: CodeRecord = codes
                .get_json(code_hash)?
                .ok_or_else(|| Abort::with(None))?;
            check(&record).map_err(|why| Abort::with(Some(why)))?;
            record.redeemed = Some(family.to_owned());
            codes.insert_json(code_hash, &record)?;
            Ok(record)
        });
        match outcome {
            Ok(record) => Ok(Some(Ok(record))),
            Err(TxError::Store(e)) => Err(e.into()),
            Err(TxError::Abort(None)) => Ok(None),
            Err(TxError::Abort(Some(why))) => Ok(Some(Err(why))),
        }
    }

    fn put_refresh(&self, token_hash: &str, refresh: &RefreshRecord) -> Result<()> {
        Ok(self.refresh.insert_json(token_hash, refresh)?)
    }

    fn refresh(&self, token_hash: &str) -> Result<Option<RefreshRecord>> {
        Ok(self.refresh.get_json(token_hash)?)
    }

    fn rotate_refresh(
        &self,
        token_hash: &str,
        check: Check<'_, RefreshRecord, Rotate>,
    ) -> Result<Option<std::result::Result<RefreshRecord, Rotate>>> {
        let outcome = self.store.transaction(&[&self.refresh], |tx| {
            let [refresh] = tx else {
                return Err(Abort::with(None));
            };
            let mut record: RefreshRecord = refresh
                .get_json(token_hash)?
                .ok_or_else(|| Abort::with(None))?;
            check(&record).map_err(|why| Abort::with(Some(why)))?;
            let was = record.clone();
            record.rotated = true;
            refresh.insert_json(token_hash, &record)?;
            Ok(was)
        });
        match outcome {
            Ok(record) => Ok(Some(Ok(record))),
            Err(TxError::Store(e)) => Err(e.into()),
            Err(TxError::Abort(None)) => Ok(None),
            Err(TxError::Abort(Some(why))) => Ok(Some(Err(why))),
        }
    }

    fn remove_refresh(&self, token_hash: &str) -> Result<()> {
        Ok(self.refresh.remove(token_hash.as_bytes())?)
    }

    fn put_issued(&self, client_id: &str, user: &str, issued: &IssuedRecord) -> Result<()> {
        let key = format!("{client_id}\0{user}\0{}", crate::secret::random_hex(8)?);
        Ok(self.issued.insert_json(&key, issued)?)
    }

    fn issued(&self, client_id: &str, user: &str) -> Result<Vec<(String, IssuedRecord)>> {
        Ok(self
            .issued
            .prefix_json(&format!("{client_id}\0{user}\0"))
            .collect::<std::result::Result<_, _>>()?)
    }

    fn remove_issued(&self, key: &str) -> Result<()> {
        Ok(self.issued.remove(key.as_bytes())?)
    }

    fn revoke_family(&self, _client_id: &str, _user: &str, family: &str) -> Result<()> {
        Ok(self.revoked_families.insert(family.as_bytes(), b"1")?)
    }

    fn family_revoked(&self, family: &str) -> Result<bool> {
        Ok(self.revoked_families.get(family.as_bytes())?.is_some())
    }

    fn flush(&self) -> Result<()> {
        Ok(self.store.flush()?)
    }
}
