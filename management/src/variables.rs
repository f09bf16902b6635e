//! Values operators set through the admin API for plugins' variables
//! (ADR 0027). They are kept in the registry's store sealed with
//! ChaCha20-Poly1305 under a key in a file of its own, bound to their API
//! and variable name, so that neither the store, its backups nor the audit
//! log hold a secret in clear (the audit log says only that a value
//! changed). On a cluster node the cluster's database holds them (sealed
//! under the key every node shares) and each node keeps a copy it reads
//! with every snapshot (`cluster.rs`).

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::Path;

use base64::Engine;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sfop_admin_api::apis::{MAX_VARIABLE_VALUE, VariableView};
use sfop_core::Manifest;
use sfop_core::manifest::{api_name_ok, variable_name_ok};
use sfop_core::outbound::{Secret, SetValues};
use sfop_core::time::now_millis;

use crate::audit::{self, Event};
use crate::{ApiRecord, DataPlane, Error, Management, Result, cluster, serving};

/// Bytes of the key file.
const KEY_LEN: usize = 32;

/// Seals and opens variable values with the platform's variable key.
pub struct Sealer {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer { .. }")
    }
}

impl Sealer {
    /// The key in `path`, made (32 random bytes, owner-only) when the file
    /// does not exist yet. A file of another length is refused: values
    /// sealed under a lost key cannot be opened, and a new key would hide
    /// that.
    pub fn open_or_create(path: &Path) -> io::Result<Self> {
        let rng = SystemRandom::new();
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut key = [0u8; KEY_LEN];
                rng.fill(&mut key)
                    .map_err(|_| io::Error::other("no randomness for the variable key"))?;
                match write_new(path, &key) {
                    Ok(()) => key.to_vec(),
                    // Made meanwhile by another process: use that one.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => std::fs::read(path)?,
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        if bytes.len() != KEY_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: a variable key is {KEY_LEN} bytes, this file has {}",
                    path.display(),
                    bytes.len()
                ),
            ));
        }
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "unusable variable key"))?;
        Ok(Self {
            key: LessSafeKey::new(key),
            rng,
        })
    }

    /// `value` of variable `name` of API `api`, sealed: nonce, then the
    /// ciphertext with its tag, in base64.
    pub(crate) fn seal(&self, api: &str, name: &str, value: &Secret) -> Option<String> {
        self.seal_bytes(api, name, value)
            .map(|sealed| base64::engine::general_purpose::STANDARD.encode(sealed))
    }

    /// [`Sealer::seal`] without the base64: the nonce, then the ciphertext
    /// with its tag (what the cluster's database stores).
    pub(crate) fn seal_bytes(&self, api: &str, name: &str, value: &Secret) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut text = value.0.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(bound_to(api, name).as_bytes()),
                &mut text,
            )
            .ok()?;
        let mut sealed = nonce.to_vec();
        sealed.extend(text);
        Some(sealed)
    }

    /// The value sealed by [`Sealer::seal`] for the same API and name;
    /// `None` when it was sealed under another key, for another variable, or
    /// altered.
    pub(crate) fn open(&self, api: &str, name: &str, sealed: &str) -> Option<Secret> {
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .ok()?;
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, text) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut text = text.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(bound_to(api, name).as_bytes()), &mut text)
            .ok()?;
        String::from_utf8(plain.to_vec()).ok().map(Secret)
    }
}

/// What a sealed value is bound to: a value moved to another variable or
/// API does not open.
fn bound_to(api: &str, name: &str) -> String {
    format!("sfop variable {api}/{name}")
}

fn write_new(path: &Path, key: &[u8]) -> io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(key)?;
    file.sync_all()
}

/// One API's values as stored: variable name to sealed value.
pub(crate) type Sealed = BTreeMap<String, String>;

impl<P: DataPlane> Management<P> {
    /// Lets operators set variables through the admin API, sealing the
    /// values with `sealer`.
    pub fn with_variable_key(mut self, sealer: Sealer) -> Self {
        self.sealer = Some(sealer);
        self
    }

    /// The values set through the admin API for `api`'s variables.
    pub(crate) fn set_values(&self, api: &str) -> Result<SetValues> {
        let Some(stored) = self.trees.variables.get_json::<Sealed>(api)? else {
            return Ok(SetValues::new());
        };
        // Values stored but no key to open them: the version must not run
        // without them (nor with the environment's, which they overrode).
        let sealer = self.sealer.as_ref().ok_or_else(|| {
            Error::internal(
                format!("reading the variables of {api}"),
                "values are stored but this node has no variable key",
            )
        })?;
        stored
            .iter()
            .map(|(name, sealed)| {
                let value = sealer
                    .open(api, name, sealed)
                    .ok_or_else(|| self.unopened(api, name))?;
                Ok((name.clone(), value))
            })
            .collect()
    }

    /// Why `api`'s versions do not load: the value of `name` does not open
    /// with this node's key. On a cluster node that is the key of another
    /// node (every node needs the same one): said to the operator as it is,
    /// since nothing in it is secret; alone, the key was lost or replaced.
    fn unopened(&self, api: &str, name: &str) -> Error {
        if self.cluster.is_some() {
            return Error::Unavailable(format!(
                "variable {name} of {api}: its value, set through the admin API on the \
                 cluster, does not open with this node's variable key (data_dir/variables.key): \
                 every node of a cluster needs the same key (ADR 0027); {api} stays closed on \
                 this node until it has it"
            ));
        }
        Error::internal(
            format!("reading variable {name} of {api}"),
            "its value does not open with this node's variable key",
        )
    }

    /// The variables `api` declares (its newest serving version's, else its
    /// newest version's), with what was set through the admin API.
    pub async fn variables(&self, api: &str) -> Result<Vec<VariableView>> {
        let _control = self.control.lock().await;
        let (_, manifest) = self.declaring(api)?;
        Ok(views(&manifest, &self.set_values(api)?))
    }

    /// Sets (`Some`) or unsets (`None`) the operator's value of `variable`
    /// of `api`. The API's serving versions are loaded with the new values
    /// first: a change a version refuses (a required variable left without
    /// a value) changes nothing. Then the value (sealed) and an audit entry
    /// naming the variable, never its value, are written together, and the
    /// reloaded versions serve the next requests. On a cluster node both are
    /// written to the cluster's database with the config version, and every
    /// node serves the change (this one before answering).
    pub async fn set_variable(
        &self,
        api: &str,
        variable: &str,
        value: Option<String>,
        actor: &str,
    ) -> Result<Vec<VariableView>> {
        if let Some(value) = &value
            && value.len() > MAX_VARIABLE_VALUE
        {
            return Err(Error::Invalid(format!(
                "value: longer than {MAX_VARIABLE_VALUE} bytes"
            )));
        }
        let sealer = self.sealer.as_ref().ok_or_else(|| {
            Error::internal("setting a variable", "this platform has no variable key")
        })?;
        let mut control = self.control.lock().await;
        // An API not registered yet may get its values first: a required
        // variable must have one for its first load. Its manifest checks the
        // names then.
        let (record, manifest) = match self.declaring(api) {
            Err(Error::NotFound(_)) if api_name_ok(api) && variable_name_ok(variable) => {
                (None, None)
            }
            Err(Error::NotFound(_)) if !api_name_ok(api) => {
                return Err(Error::Invalid(format!(
                    "name: {api:?} is not an API name (1-64 lower-case letters, digits or '-')"
                )));
            }
            Err(Error::NotFound(_)) => {
                return Err(Error::Invalid(format!(
                    "variable: {variable:?} is not a variable name (1-64 lower-case letters, \
                     digits or '_')"
                )));
            }
            Err(e) => return Err(e),
            Ok((record, manifest)) => (record, Some(manifest)),
        };
        let secret = match &manifest {
            Some(manifest) => match manifest.variables.get(variable) {
                Some(declared) => declared.secret,
                None => {
                    return Err(Error::NotFound(format!(
                        "variable: {api} declares no variable {variable:?}"
                    )));
                }
            },
            // Not known yet: taken for a secret.
            None => true,
        };
        let shown = |set: &SetValues| manifest.as_ref().map(|m| views(m, set)).unwrap_or_default();
        let mut set = self.set_values(api)?;
        let (action, was) = match value {
            Some(value) => (
                "variable set",
                set.insert(variable.to_owned(), Secret(value)),
            ),
            None => ("variable unset", set.remove(variable)),
        };
        if action == "variable unset" && was.is_none() {
            // Nothing set through the admin API: nothing changes.
            return Ok(shown(&set));
        }
        // Every serving version, loaded with the new values before anything
        // is written.
        let mut loaded = Vec::new();
        if let Some(record) = &record {
            for version in serving(record) {
                let stored = self.record(api, &version)?;
                let release = self.load(&stored, set.clone()).await.map_err(|e| match e {
                    Error::Refused(why) => Error::Refused(format!(
                        "variable: {api}@{version} does not load with this change: {why}"
                    )),
                    other => other,
                })?;
                loaded.push((version, release));
            }
        }
        let detail = match (&manifest, secret) {
            (None, _) => format!("{variable} (API not registered yet)"),
            (Some(_), true) => format!("{variable} (secret)"),
            (Some(_), false) => variable.to_owned(),
        };
        if let Some(link) = &self.cluster {
            let sealed = match set.get(variable) {
                Some(value) if action == "variable set" => {
                    Some(sealer.seal_bytes(api, variable, value).ok_or_else(|| {
                        Error::internal(
                            format!("sealing variable {variable} of {api}"),
                            "no randomness",
                        )
                    })?)
                }
                _ => None,
            };
            let change = cluster::VariableChange {
                api,
                variable,
                sealed,
                action,
                actor,
                detail,
            };
            self.set_variable_shared(link, &mut control, change, loaded)
                .await?;
            return Ok(shown(&set));
        }
        let mut sealed = Sealed::new();
        for (name, value) in &set {
            let text = sealer.seal(api, name, value).ok_or_else(|| {
                Error::internal(format!("sealing variable {name} of {api}"), "no randomness")
            })?;
            sealed.insert(name.clone(), text);
        }
        let (store, variables, audit_tree) = (
            self.store.clone(),
            self.trees.variables.clone(),
            self.trees.audit.clone(),
        );
        let (owned_api, owned_actor, at) = (api.to_owned(), actor.to_owned(), now_millis());
        tokio::task::spawn_blocking(move || -> Result<()> {
            let event = Event {
                actor: &owned_actor,
                action,
                api: &owned_api,
                version: None,
                detail,
            };
            store.transaction(&[&variables, &audit_tree], |tx| {
                if sealed.is_empty() {
                    tx[0].remove(owned_api.as_bytes())?;
                } else {
                    tx[0].insert_json(&owned_api, &sealed)?;
                }
                audit::append(&tx[1], &event, at)?;
                Ok::<_, sfop_store::Abort<Error>>(())
            })?;
            store.flush()?;
            Ok(())
        })
        .await
        .map_err(|e| Error::internal(format!("recording the {action}"), e))??;
        // Releases compiled with the old values (rollback targets, versions
        // that stopped serving) are loaded again when next needed.
        control.warm.retain(|(name, _), _| name != api);
        for (version, release) in loaded {
            control.warm.insert((api.to_owned(), version), release);
        }
        let table = self.build(&control, None)?;
        self.plane.swap(table);
        tracing::info!(%api, %variable, %actor, "{action}");
        Ok(shown(&set))
    }

    /// `api`'s record (when it was ever live) and the manifest whose
    /// variables are shown and set: the newest serving version's, else the
    /// newest version's.
    fn declaring(&self, api: &str) -> Result<(Option<ApiRecord>, Manifest)> {
        let record = self.trees.api(api)?;
        let newest = match record.as_ref().and_then(|r| serving(r).into_iter().max()) {
            Some(version) => Some(version),
            None => self
                .trees
                .versions_of(api)?
                .into_iter()
                .map(|v| v.version)
                .max(),
        };
        let Some(version) = newest else {
            return Err(Error::NotFound(format!("name: no API named {api:?}")));
        };
        let manifest = self
            .manifest_of(api, &version)?
            .ok_or_else(|| Error::NotFound(format!("name: no API named {api:?}")))?;
        Ok((record, manifest))
    }
}

/// What the admin API shows of `manifest`'s variables with the values `set`
/// through it: never a secret's value or default.
pub(crate) fn views(manifest: &Manifest, set: &SetValues) -> Vec<VariableView> {
    manifest
        .variables
        .iter()
        .map(|(name, declared)| {
            let shown = |value: Option<String>| value.filter(|_| !declared.secret);
            VariableView {
                name: name.clone(),
                required: declared.required,
                secret: declared.secret,
                default: shown(declared.default.clone()),
                set_by_admin: set.contains_key(name),
                value: shown(set.get(name).map(|v| v.0.clone())),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_for_its_variable_and_key() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("variables.key");
        let sealer = Sealer::open_or_create(&path)?;
        let secret = Secret("s3cret-value".into());
        let sealed = sealer
            .seal("core", "api_key", &secret)
            .ok_or_else(|| anyhow::anyhow!("seal"))?;
        assert!(!sealed.contains("s3cret"));
        assert_eq!(
            sealer.open("core", "api_key", &sealed),
            Some(secret.clone())
        );
        // Sealed twice: two texts (a fresh nonce each time).
        assert_ne!(
            sealer.seal("core", "api_key", &secret),
            Some(sealed.clone())
        );
        // Moved to another variable or API, altered, or under another key.
        assert_eq!(sealer.open("core", "other", &sealed), None);
        assert_eq!(sealer.open("other", "api_key", &sealed), None);
        let mut bytes = base64::engine::general_purpose::STANDARD.decode(&sealed)?;
        if let Some(last) = bytes.last_mut() {
            *last ^= 1;
        }
        let altered = base64::engine::general_purpose::STANDARD.encode(bytes);
        assert_eq!(sealer.open("core", "api_key", &altered), None);
        assert_eq!(sealer.open("core", "api_key", "not base64!"), None);
        assert_eq!(sealer.open("core", "api_key", ""), None);
        let again = Sealer::open_or_create(&path)?;
        assert_eq!(again.open("core", "api_key", &sealed), Some(secret.clone()));
        let other = Sealer::open_or_create(&dir.path().join("other.key"))?;
        assert_eq!(other.open("core", "api_key", &sealed), None);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path)?.permissions().mode() & 0o777,
                0o600
            );
        }
        // A key file of the wrong length is refused, not replaced.
        std::fs::write(&path, b"short")?;
        assert!(Sealer::open_or_create(&path).is_err());
        assert_eq!(std::fs::read(&path)?, b"short");
        Ok(())
    }
}
