//! Checks that what the docs promise stays true: published WIT folders never
//! change (`wit/README.md`), and the code that allows `unsafe` is exactly
//! the list the workspace's `Cargo.toml` names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// The committed hashes of every published WIT file, one `HASH  PATH` line
/// each (`sha256sum`'s layout), paths relative to `wit/`.
pub const WIT_MANIFEST: &str = "wit/published.sha256";

/// The functions allowed to use `unsafe`, as (file, function); the comment
/// above `unsafe_code` in the workspace `Cargo.toml` lists the same. A new
/// site means a reviewed change to both.
const UNSAFE_SITES: &[(&str, &str)] = &[
    ("host/auth/src/limits.rs", "thread_cpu"),
    ("host/runtime/src/cache.rs", "deserialize"),
    ("host/runtime/src/exec.rs", "lower_priority"),
    ("host/runtime/src/meter.rs", "thread_cpu_ns"),
    ("host/runtime/src/warm.rs", "batch_policy"),
    (
        "plugins/sdk/src/alloc.rs",
        "unsafe impl<const N: usize> GlobalAlloc for BumpFirst<N>",
    ),
    (
        "plugins/sdk/src/alloc.rs",
        "static mut ARENA: Arena = Arena([0; ARENA_BYTES]);",
    ),
    ("plugins/sdk/src/alloc.rs", "mod tests"),
];

/// The hash of every file under each `wit/<package>@<version>/` folder;
/// a symbolic link is hashed as its target path, not followed.
fn wit_hashes(root: &Path) -> Result<BTreeMap<String, String>> {
    let wit = root.join("wit");
    let mut out = BTreeMap::new();
    let mut stack: Vec<PathBuf> = Vec::new();
    for entry in std::fs::read_dir(&wit).with_context(|| format!("reading {}", wit.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            stack.push(path);
        }
    }
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path)?;
        let rel = path
            .strip_prefix(&wit)?
            .to_str()
            .context("a WIT path is not UTF-8")?
            .replace('\\', "/");
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path)?;
            let digest = Sha256::digest(format!("symlink:{}", target.display()).as_bytes());
            out.insert(rel, hex::encode(digest));
        } else if meta.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        } else {
            let bytes = std::fs::read(&path)?;
            out.insert(rel, hex::encode(Sha256::digest(&bytes)));
        }
    }
    Ok(out)
}

fn read_manifest(root: &Path) -> Result<BTreeMap<String, String>> {
    let path = root.join(WIT_MANIFEST);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((hash, file)) = line.split_once("  ") else {
            bail!("{WIT_MANIFEST}:{}: expected `HASH  PATH`", n + 1);
        };
        out.insert(file.to_owned(), hash.to_owned());
    }
    Ok(out)
}

/// Published WIT folders are unchanged, and every folder is published.
pub fn check_wit(root: &Path) -> Result<()> {
    let published = read_manifest(root)?;
    let now = wit_hashes(root)?;
    let mut problems = Vec::new();
    for (file, hash) in &published {
        match now.get(file) {
            None => problems.push(format!("wit/{file} was removed")),
            Some(h) if h != hash => problems.push(format!("wit/{file} was edited")),
            Some(_) => {}
        }
    }
    let folder = |file: &str| file.split('/').next().unwrap_or_default().to_owned();
    for file in now.keys().filter(|f| !published.contains_key(*f)) {
        if published.keys().any(|p| folder(p) == folder(file)) {
            problems.push(format!("wit/{file} was added to a published folder"));
        } else {
            problems.push(format!(
                "wit/{file} is not in {WIT_MANIFEST}: a new version's folder is published \
                 with `cargo xtask wit-publish {}` in the commit that adds it",
                folder(file)
            ));
        }
    }
    if !problems.is_empty() {
        bail!(
            "published WIT must not change (wit/README.md); make a new version instead:\n  {}",
            problems.join("\n  ")
        );
    }
    eprintln!("wit: {} published files unchanged", published.len());
    Ok(())
}

/// Adds `folder` (e.g. `platform@0.3.0`) to the manifest; refuses a folder
/// already published.
pub fn publish_wit(root: &Path, folder: &str) -> Result<()> {
    let mut published = read_manifest(root)?;
    if published
        .keys()
        .any(|f| f.split('/').next() == Some(folder))
    {
        bail!("wit/{folder} is already published; published WIT never changes");
    }
    let prefix = format!("{folder}/");
    let added: Vec<(String, String)> = wit_hashes(root)?
        .into_iter()
        .filter(|(f, _)| f.starts_with(&prefix))
        .collect();
    if added.is_empty() {
        bail!("wit/{folder} has no files");
    }
    let n = added.len();
    published.extend(added);
    write_manifest(root, &published)?;
    eprintln!("wit: published {folder} ({n} files) in {WIT_MANIFEST}");
    Ok(())
}

fn write_manifest(root: &Path, published: &BTreeMap<String, String>) -> Result<()> {
    let mut text = String::from(
        "# Published WIT: sha256 of every file (a symlink: of `symlink:<target>`),\n\
         # checked by `cargo xtask ci`. Never edit a line; add a version with\n\
         # `cargo xtask wit-publish <folder>`.\n",
    );
    for (file, hash) in published {
        text.push_str(&format!("{hash}  {file}\n"));
    }
    std::fs::write(root.join(WIT_MANIFEST), text)?;
    Ok(())
}

/// The `unsafe` allowances in the code are exactly [`UNSAFE_SITES`].
pub fn check_unsafe(root: &Path) -> Result<()> {
    let mut found = Vec::new();
    for dir in [
        "host",
        "management",
        "portal",
        "testbed",
        "examples",
        "xtask",
        "plugins",
    ] {
        collect_sites(root, &root.join(dir), &mut found)?;
    }
    found.sort();
    let mut expected: Vec<(String, String)> = UNSAFE_SITES
        .iter()
        .map(|(f, n)| ((*f).to_owned(), (*n).to_owned()))
        .collect();
    expected.sort();
    if found != expected {
        let show = |v: &[(String, String)]| {
            v.iter()
                .map(|(f, n)| format!("{f}: {n}"))
                .collect::<Vec<_>>()
                .join("\n    ")
        };
        bail!(
            "the code allows `unsafe` at:\n    {}\nbut xtask/src/drift.rs and the workspace Cargo.toml list:\n    {}",
            show(&found),
            show(&expected)
        );
    }
    eprintln!("unsafe: {} reviewed sites", found.len());
    Ok(())
}

fn collect_sites(root: &Path, dir: &Path, found: &mut Vec<(String, String)>) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                collect_sites(root, &path, found)?;
            }
            continue;
        }
        if !name.ends_with(".rs") || path.ends_with("xtask/src/drift.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.trim() != "#[allow(unsafe_code)]" {
                continue;
            }
            // The item the attribute is on: the next `fn` or `impl`.
            let item = lines[i + 1..]
                .iter()
                .map(|l| l.trim())
                .find(|l| !l.starts_with("#[") && !l.starts_with("//"))
                .unwrap_or_default();
            let name = match item.split("fn ").nth(1) {
                Some(rest) => rest.split(['(', '<']).next().unwrap_or_default(),
                None => item.trim_end_matches('{').trim(),
            }
            .to_owned();
            let rel = path
                .strip_prefix(root)?
                .to_str()
                .unwrap_or_default()
                .to_owned();
            found.push((rel, name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_root(name: &str) -> Result<PathBuf> {
        let root = std::env::temp_dir().join(format!("sfop-drift-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("wit/platform@0.1.0"))?;
        std::fs::write(
            root.join("wit/platform@0.1.0/world.wit"),
            "package a:b@0.1.0;\n",
        )?;
        std::fs::write(root.join(WIT_MANIFEST), "")?;
        Ok(root)
    }

    fn refusal(root: &Path) -> String {
        check_wit(root)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn a_published_wit_file_cannot_be_edited_added_to_or_removed() -> Result<()> {
        let root = temp_root("wit")?;
        assert!(refusal(&root).contains("is not in wit/published.sha256"));
        publish_wit(&root, "platform@0.1.0")?;
        check_wit(&root)?;
        assert!(publish_wit(&root, "platform@0.1.0").is_err());

        let world = root.join("wit/platform@0.1.0/world.wit");
        std::fs::write(&world, "package a:b@0.1.0;\n// a comment\n")?;
        assert!(refusal(&root).contains("world.wit was edited"));
        std::fs::write(&world, "package a:b@0.1.0;\n")?;
        check_wit(&root)?;

        std::fs::write(root.join("wit/platform@0.1.0/more.wit"), "")?;
        assert!(refusal(&root).contains("more.wit was added to a published folder"));
        std::fs::remove_file(root.join("wit/platform@0.1.0/more.wit"))?;
        std::fs::remove_file(&world)?;
        assert!(refusal(&root).contains("world.wit was removed"));
        std::fs::remove_dir_all(&root)?;
        Ok(())
    }
}
