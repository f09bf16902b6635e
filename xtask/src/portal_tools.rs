//! What the portal's acceptance tests need beyond cargo: headless Chromium
//! and its WebDriver (Debian's `chromium`, `chromium-driver`, with CJK fonts
//! so Korean renders in the screenshots), and from PyPI the `selenium`
//! WebDriver client and `openapi-spec-validator`. Idempotent: nothing is
//! installed when everything is there.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::guest::apt_install;
use crate::step;

const DEBIAN: &[&str] = &["chromium", "chromium-driver", "fonts-noto-cjk"];
const PYPI: &[&str] = &["selenium", "openapi-spec-validator"];
const PYTHON_MODULES: &str = "selenium, openapi_spec_validator";

fn succeeds(cmd: &mut Command) -> bool {
    cmd.output().is_ok_and(|o| o.status.success())
}

fn debian_ready() -> bool {
    succeeds(Command::new("sh").args(["-c", "command -v chromium && command -v chromedriver"]))
        && succeeds(Command::new("dpkg").args(["-s", "fonts-noto-cjk"]))
}

fn python_ready() -> bool {
    succeeds(Command::new("python3").args(["-c", &format!("import {PYTHON_MODULES}")]))
}

pub fn install() -> Result<()> {
    if !debian_ready() {
        step("portal test tools: chromium, chromium-driver, fonts-noto-cjk (apt-get)");
        apt_install(DEBIAN).context("installing the browser for the portal's tests")?;
        if !debian_ready() {
            bail!("chromium or chromedriver still missing after apt-get install");
        }
    }
    if !python_ready() {
        step("portal test tools: selenium, openapi-spec-validator (pip)");
        let pip = |extra: &[&str]| {
            Command::new("python3")
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .args(extra)
                .args(PYPI)
                .status()
                .is_ok_and(|s| s.success())
        };
        // A Debian system Python refuses pip without the flag (PEP 668).
        if !pip(&[]) && !pip(&["--break-system-packages"]) {
            bail!("pip could not install {}", PYPI.join(", "));
        }
        if !python_ready() {
            bail!("python3 still cannot import {PYTHON_MODULES}");
        }
    }
    Ok(())
}
