//! The on-disk compile cache: native code for a component, keyed by the
//! component's sha256 and the engine's compilation settings, so that a restart
//! loads every plugin without compiling it again.
//!
//! Trust: loading cached code runs it as native code without re-validation, so
//! the cache directory has the same trust level as the `sfop` binary (it lives
//! in the data dir, which only the platform's user may write). See
//! docs/adr/0004-compile-cache.md.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of precompiled components.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
    engine_key: String,
}

impl CompileCache {
    /// A cache in `dir` (created on first store) for code compiled by `engine`.
    pub fn new(dir: &Path, engine: &Engine) -> Self {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Self {
            dir: dir.to_owned(),
            engine_key: format!("{:016x}", hasher.finish()),
        }
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_key))
    }

    /// The cached component for `sha256`, if present and loadable. A cache
    /// file that does not load (truncated, other engine) counts as a miss.
    pub fn load(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.path(sha256);
        if !path.is_file() {
            return None;
        }
        // Read, not mmap: a cache file truncated or replaced under a running
        // gateway must not take the process down (SIGBUS).
        let native = match std::fs::read(&path) {
            Ok(native) => native,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "compile cache entry unreadable; recompiling");
                return None;
            }
        };
        match deserialize(engine, &native) {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "compile cache entry unusable; recompiling");
                None
            }
        }
    }

    /// Compiles `bytes` and stores the result; returns the compiled component.
    pub fn compile_and_store(
        &self,
        engine: &Engine,
        sha256: &str,
        bytes: &[u8],
    ) -> wasmtime::Result<Component> {
        let native = engine.precompile_component(bytes)?;
        if let Err(e) = self.store(sha256, &native) {
            // The cache only saves time: serve anyway.
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not write the compile cache");
        }
        deserialize(engine, &native)
    }

    fn store(&self, sha256: &str, native: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let mut tmp = tempfile_in(&self.dir)?;
        tmp.1.write_all(native)?;
        tmp.1.sync_all()?;
        std::fs::rename(&tmp.0, self.path(sha256))
    }
}

fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let path = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        crate::unique_suffix()
    ));
    let file = std::fs::File::create(&path)?;
    Ok((path, file))
}

/// Loads native code that this platform compiled, here or in an earlier run.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, native: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `native` is the output of `Engine::precompile_component`, either
    // just now in this process or stored by `CompileCache::store` (written to
    // a temporary file and renamed into place) in the platform's own data dir,
    // under a name that includes the engine's compatibility hash. wasmtime
    // checks the header and engine settings before use; the data dir is
    // trusted like the binary (module docs). The bytes are copied into
    // wasmtime's own code memory, so later changes to the file cannot affect
    // loaded code.
    unsafe { Component::deserialize(engine, native) }
}
