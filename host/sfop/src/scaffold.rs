//! `sfop api new NAME`: a new plugin crate under `plugins/` that builds,
//! passes the testbed and goes live as it is (README, "Write your first API
//! plugin"), added to the guest workspace and its lock file.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The files of a new plugin crate: path inside the crate, template text.
const FILES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../templates/plugin/Cargo.toml.tmpl"),
    ),
    (
        "sfop.toml",
        include_str!("../templates/plugin/sfop.toml.tmpl"),
    ),
    (
        "testbed.toml",
        include_str!("../templates/plugin/testbed.toml.tmpl"),
    ),
    (
        "src/lib.rs",
        include_str!("../templates/plugin/src/lib.rs.tmpl"),
    ),
];

/// The guest workspace's manifest, relative to the project root.
const WORKSPACE: &str = "plugins/Cargo.toml";

/// Writes `plugins/NAME/`, adds it to the workspace's members and the lock
/// file. The project is found from `from` upwards.
pub fn new_plugin(name: &str, from: &Path) -> Result<PathBuf> {
    check_name(name)?;
    let root = project_root(from)?;
    let dir = root.join("plugins").join(name);
    if dir.exists() {
        bail!("{} exists already", dir.display());
    }
    let workspace_path = root.join(WORKSPACE);
    let workspace = std::fs::read_to_string(&workspace_path)
        .with_context(|| format!("reading {}", workspace_path.display()))?;
    let workspace = with_member(&workspace, name)?;

    for (path, template) in FILES {
        let file = dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&file, render(template, name))
            .with_context(|| format!("writing {}", file.display()))?;
    }
    std::fs::write(&workspace_path, workspace)
        .with_context(|| format!("writing {}", workspace_path.display()))?;
    update_lock(&root)?;
    Ok(dir)
}

fn render(template: &str, name: &str) -> String {
    template.replace("{{name}}", name)
}

/// A crate, package and route name: what the manifest's `name` allows,
/// starting with a letter.
fn check_name(name: &str) -> Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok || name == "sdk" || name == "tests" || name == "target" {
        bail!(
            "{name:?}: a plugin's name is 1-64 lower-case letters, digits and '-', \
             starting with a letter (and not sdk, tests or target)"
        );
    }
    Ok(())
}

/// The nearest directory from `from` upwards with `plugins/Cargo.toml`.
fn project_root(from: &Path) -> Result<PathBuf> {
    from.ancestors()
        .find(|d| d.join(WORKSPACE).is_file())
        .map(Path::to_path_buf)
        .with_context(|| {
            format!(
                "no {WORKSPACE} in {} or a parent: run this inside the sfop project",
                from.display()
            )
        })
}

/// `plugins/Cargo.toml` with `name` added at the end of `members` (the
/// array written one member a line, as it is kept).
fn with_member(workspace: &str, name: &str) -> Result<String> {
    let parsed: toml::Table = toml::from_str(workspace).context("parsing plugins/Cargo.toml")?;
    let members = parsed
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(|m| m.as_array())
        .context("plugins/Cargo.toml has no [workspace] members")?;
    if members.iter().any(|m| m.as_str() == Some(name)) {
        bail!("{name} is a member of plugins/Cargo.toml already");
    }
    let lines: Vec<&str> = workspace.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim_start().starts_with("members") && l.trim_end().ends_with('['))
        .context("plugins/Cargo.toml: expected `members = [` on a line of its own")?;
    let end = lines[start..]
        .iter()
        .position(|l| l.trim() == "]")
        .map(|i| start + i)
        .context("plugins/Cargo.toml: expected the members' `]` on a line of its own")?;
    // Before the glob of test plugins, if it is last, else at the end.
    let at = match lines.get(end - 1) {
        Some(l) if l.contains('*') => end - 1,
        _ => end,
    };
    let mut out: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    out.insert(at, format!("    \"{name}\","));
    let mut text = out.join("\n");
    text.push('\n');
    let check: toml::Table = toml::from_str(&text).context("plugins/Cargo.toml after the edit")?;
    let added = check
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(|m| m.as_array())
        .is_some_and(|m| m.iter().any(|v| v.as_str() == Some(name)));
    if !added {
        bail!("could not add {name} to plugins/Cargo.toml's members; add it by hand");
    }
    Ok(text)
}

/// Adds the new member to `plugins/Cargo.lock` without changing any other
/// entry: offline first (its dependencies are the SDK's, already locked and
/// downloaded), then with the registry.
fn update_lock(root: &Path) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let attempt = |offline: bool| -> Result<std::process::Output> {
        let mut cmd = Command::new(&cargo);
        cmd.args(["update", "--workspace", "--quiet", "--manifest-path"])
            .arg(root.join(WORKSPACE))
            .current_dir(root);
        if offline {
            cmd.arg("--offline");
        }
        cmd.output()
            .with_context(|| format!("running {cmd:?} (is cargo on PATH?)"))
    };
    let out = attempt(true)?;
    if out.status.success() {
        return Ok(());
    }
    let out = attempt(false)?;
    if !out.status.success() {
        bail!(
            "updating plugins/Cargo.lock failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["user-greeting", "a", "api2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-x", "x-", "User", "a_b", "2fa", "sdk", "tests", "a/b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_member_goes_before_the_test_glob() -> Result<()> {
        let ws = "[workspace]\nresolver = \"3\"\nmembers = [\n    \"sdk\",\n    \"bank-status\",\n    \"tests/*\",\n]\n\n[workspace.package]\nversion = \"0.1.0\"\n";
        let out = with_member(ws, "user-greeting")?;
        assert!(out.contains("    \"bank-status\",\n    \"user-greeting\",\n    \"tests/*\",\n]"));
        assert!(with_member(&out, "user-greeting").is_err());
        let no_glob = "[workspace]\nmembers = [\n    \"sdk\",\n]\n";
        assert!(with_member(no_glob, "x")?.contains("    \"sdk\",\n    \"x\",\n]"));
        assert!(with_member("[workspace]\nmembers = [\"sdk\"]\n", "x").is_err());
        Ok(())
    }

    #[test]
    fn templates_name_the_plugin() {
        for (path, template) in FILES {
            let text = render(template, "user-greeting");
            assert!(!text.contains("{{"), "{path} keeps a placeholder");
        }
        let manifest = render(FILES[1].1, "user-greeting");
        let parsed = sfop_core::Manifest::parse(&manifest);
        assert!(parsed.is_ok(), "{parsed:?}");
    }
}
