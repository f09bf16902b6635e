//! Static checks: what can be decided from the package's bytes alone.
//!
//! The component is read with `wasmparser` (not wasmtime: only the runtime
//! crate names wasmtime). Besides which interfaces a component imports, the
//! component model records which *functions* of each imported interface it
//! uses (wit-component lists only the functions the core module calls), so
//! the scope policy can be finer than the per-interface capability grant:
//! an `inquiry` API that imports `ledger.withdraw` is refused even though
//! `ledger` itself is a capability inquiry APIs may have.

use std::collections::BTreeSet;

use sfop_core::{Capability, Manifest};
use wasmparser::component_types::ComponentEntityType;
use wasmparser::{Parser, Payload, Validator, WasmFeatures};

use crate::package::Package;
use crate::report::{CheckResult, Phase};

/// Largest component the platform accepts.
pub const MAX_COMPONENT_BYTES: usize = 8 << 20;
/// Largest `sfop.toml`.
pub const MAX_MANIFEST_BYTES: usize = 64 << 10;
/// Largest `testbed.toml`.
pub const MAX_CASES_BYTES: usize = 256 << 10;

/// Capabilities an API of each scope may declare. Every scope may use every
/// capability interface today; the money-moving limits are per function
/// ([`LEDGER_FUNCTIONS`]), because `ledger` is one interface.
pub fn allowed_capabilities(scope: &str) -> &'static [Capability] {
    match scope {
        "login" | "inquiry" | "transfer" | "oob" => &Capability::ALL,
        _ => &[],
    }
}

/// The `ledger` functions an API of each scope may import, after the
/// reference platform's scopes: `login` reads the user and their
/// registrations (and cancels them), `inquiry` reads accounts, `transfer`
/// withdraws from the user's account, `oob` acts for the institution
/// (deposits, checks, results). Only `transfer` may withdraw and only `oob`
/// may deposit.
pub const LEDGER_FUNCTIONS: &[(&str, &[&str])] = &[
    (
        "login",
        &[
            "bank-status",
            "user-info",
            "registered-accounts",
            "cancel-account",
        ],
    ),
    (
        "inquiry",
        &[
            "bank-status",
            "user-info",
            "registered-accounts",
            "balance",
            "transactions",
        ],
    ),
    (
        "transfer",
        &[
            "bank-status",
            "user-info",
            "registered-accounts",
            "balance",
            "withdraw",
            "transfer-result",
            "real-name",
            "receive",
        ],
    ),
    (
        "oob",
        &[
            "bank-status",
            "deposit",
            "transfer-result",
            "real-name",
            "receive",
            "remit-list",
        ],
    ),
];

/// The `ledger` functions that reach a participant bank, which answer
/// `timeout` (`A0017`) during an outage.
pub const BANK_FUNCTIONS: &[&str] = &[
    "balance",
    "transactions",
    "remit-list",
    "withdraw",
    "deposit",
    "real-name",
    "receive",
];

fn allowed_ledger_functions(scope: &str) -> &'static [&'static str] {
    LEDGER_FUNCTIONS
        .iter()
        .find(|(s, _)| *s == scope)
        .map_or(&[], |(_, f)| f)
}

/// The version at which the platform serves `interface` (types and the
/// handler at 0.1.0; `http` and `config` at 0.2.0).
fn served_version(interface: &str) -> &'static str {
    Capability::from_interface(interface).map_or("0.1.0", Capability::wit_version)
}

/// Semver-compatible with the newest served `sfop:platform` version (the
/// runtime's rule): for `0.x`, the same minor and a patch not newer than served.
pub fn version_supported(version: &str) -> bool {
    let (Ok(v), Ok(served)) = (
        semver::Version::parse(version),
        semver::Version::parse(sfop_runtime::PLATFORM_VERSION),
    ) else {
        return false;
    };
    if served.major == 0 {
        v.major == 0 && v.minor == served.minor && v.patch <= served.patch
    } else {
        v.major == served.major && v.minor <= served.minor
    }
}

/// `sfop:platform/NAME@VERSION` → `(NAME, VERSION)`.
fn platform_interface(name: &str) -> Option<(&str, &str)> {
    name.strip_prefix(sfop_runtime::PLATFORM_PACKAGE)?
        .strip_prefix('/')?
        .split_once('@')
}

/// What the static phase learned.
pub(crate) struct Statics {
    pub checks: Vec<CheckResult>,
    /// The `ledger` functions the component imports.
    pub ledger_functions: BTreeSet<String>,
    /// Every static check passed, so loading it is meaningful.
    pub ok: bool,
}

/// Runs every static check on `package`.
pub(crate) fn check(package: &Package) -> Statics {
    let mut checks = Vec::new();
    let ph = Phase::Static;
    let manifest = &package.manifest;

    let sizes = [
        ("api.wasm", package.component.len(), MAX_COMPONENT_BYTES),
        ("sfop.toml", package.manifest_text.len(), MAX_MANIFEST_BYTES),
        (
            "testbed.toml",
            package.cases_text.as_ref().map_or(0, String::len),
            MAX_CASES_BYTES,
        ),
    ];
    let too_big: Vec<String> = sizes
        .iter()
        .filter(|(_, size, max)| size > max)
        .map(|(file, size, max)| format!("{file} is {size} bytes, more than {max}"))
        .collect();
    checks.push(if too_big.is_empty() {
        CheckResult::pass(
            "STATIC-SIZE",
            ph,
            "package size",
            format!(
                "api.wasm {} bytes (max {MAX_COMPONENT_BYTES}), sfop.toml {} bytes",
                package.component.len(),
                package.manifest_text.len()
            ),
        )
    } else {
        CheckResult::fail("STATIC-SIZE", ph, "package size", too_big.join("; "))
    });
    if package.cases_text.is_some() {
        checks.push(match crate::package::cases(package) {
            Ok(cases) => CheckResult::pass(
                "STATIC-CASES",
                ph,
                "testbed.toml parses",
                format!("{} cases", cases.cases.len()),
            ),
            // A package never reaches the testbed with cases it ignores.
            Err(problem) => CheckResult::fail(
                "STATIC-CASES",
                ph,
                "testbed.toml parses",
                format!("testbed.toml: {problem}"),
            ),
        });
    }

    // Validity first: nothing else can be read from an invalid component.
    let types = if !Parser::is_component(&package.component) {
        Err("not a WebAssembly component (a core module or other bytes)".to_owned())
    } else {
        Validator::new_with_features(WasmFeatures::default())
            .validate_all(&package.component)
            .map_err(|e| e.to_string())
    };
    let types = match types {
        Ok(types) => {
            checks.push(CheckResult::pass(
                "STATIC-COMPONENT",
                ph,
                "valid component",
                "validates as a component",
            ));
            types
        }
        Err(e) => {
            checks.push(CheckResult::fail(
                "STATIC-COMPONENT",
                ph,
                "valid component",
                e,
            ));
            for rule in ["STATIC-WORLD", "STATIC-IMPORTS", "STATIC-KIND"] {
                checks.push(CheckResult::skip(
                    rule,
                    ph,
                    rule.to_ascii_lowercase(),
                    "the component is not valid",
                ));
            }
            return Statics {
                checks,
                ledger_functions: BTreeSet::new(),
                ok: false,
            };
        }
    };
    let (imports, exports) = top_level_names(&package.component);

    // The world: a supported handler export with `handle`.
    let handler = exports.iter().find_map(|name| {
        let (interface, version) = platform_interface(name)?;
        (interface == "handler").then_some((name.as_str(), version))
    });
    checks.push(match handler {
        None => CheckResult::fail(
            "STATIC-WORLD",
            ph,
            "exports the platform world",
            format!(
                "no export sfop:platform/handler@{}; exports: {}",
                sfop_runtime::PLATFORM_VERSION,
                list_or_none(&exports)
            ),
        ),
        Some((name, version)) if !sfop_runtime::interface_version_supported("handler", version) => {
            CheckResult::fail(
                "STATIC-WORLD",
                ph,
                "exports the platform world",
                format!(
                    "exports {name}, but this platform serves sfop:platform/handler@{}",
                    served_version("handler")
                ),
            )
        }
        Some((name, _)) => {
            let has_handle = match types.component_item_for_export(name).map(|i| i.ty) {
                Some(ComponentEntityType::Instance(id)) => types[id]
                    .exports
                    .get("handle")
                    .is_some_and(|f| matches!(f.ty, ComponentEntityType::Func(_))),
                _ => false,
            };
            if has_handle {
                CheckResult::pass(
                    "STATIC-WORLD",
                    ph,
                    "exports the platform world",
                    format!("exports {name} with handle"),
                )
            } else {
                CheckResult::fail(
                    "STATIC-WORLD",
                    ph,
                    "exports the platform world",
                    format!("{name} has no function handle"),
                )
            }
        }
    });

    // Imports ⊆ declared capabilities.
    let mut import_problems = Vec::new();
    let mut ledger_functions = BTreeSet::new();
    for name in &imports {
        let Some((interface, version)) = platform_interface(name) else {
            import_problems.push(format!(
                "imports {name}, which is not an sfop:platform capability"
            ));
            continue;
        };
        if !sfop_runtime::interface_version_supported(interface, version) {
            import_problems.push(format!(
                "imports {name}, but this platform serves sfop:platform/{interface}@{}",
                served_version(interface)
            ));
            continue;
        }
        if interface == "types" {
            continue;
        }
        match Capability::from_interface(interface) {
            Some(c) if manifest.capabilities.contains(&c) => {}
            Some(c) => import_problems.push(format!(
                "imports {name} but the manifest does not declare capability `{c}`"
            )),
            None => import_problems.push(format!(
                "imports {name}, which is not an sfop:platform capability"
            )),
        }
        if interface == "ledger"
            && let Some(ComponentEntityType::Instance(id)) =
                types.component_item_for_import(name).map(|i| i.ty)
        {
            for (function, item) in &types[id].exports {
                if matches!(item.ty, ComponentEntityType::Func(_)) {
                    ledger_functions.insert(function.clone());
                }
            }
        }
    }
    checks.push(if import_problems.is_empty() {
        CheckResult::pass(
            "STATIC-IMPORTS",
            ph,
            "imports within declared capabilities",
            format!(
                "imports: {}; declared: {}",
                list_or_none(&imports),
                declared(manifest)
            ),
        )
    } else {
        CheckResult::fail(
            "STATIC-IMPORTS",
            ph,
            "imports within declared capabilities",
            import_problems.join("; "),
        )
    });

    // Declared capabilities and ledger functions ⊆ what the scope allows.
    let allowed = allowed_capabilities(&manifest.scope);
    let mut kind_problems: Vec<String> = manifest
        .capabilities
        .iter()
        .filter(|c| !allowed.contains(c))
        .map(|c| {
            format!(
                "capability `{c}` is not allowed for scope {}",
                manifest.scope
            )
        })
        .collect();
    let allowed_fns = allowed_ledger_functions(&manifest.scope);
    let forbidden: Vec<&str> = ledger_functions
        .iter()
        .map(String::as_str)
        .filter(|f| !allowed_fns.contains(f))
        .collect();
    if !forbidden.is_empty() {
        kind_problems.push(format!(
            "an API of scope {} may not import ledger function(s) {} (allowed: {})",
            manifest.scope,
            forbidden.join(", "),
            allowed_fns.join(", ")
        ));
    }
    checks.push(if kind_problems.is_empty() {
        CheckResult::pass(
            "STATIC-KIND",
            ph,
            format!("allowed for scope {}", manifest.scope),
            if ledger_functions.is_empty() {
                "no ledger functions imported".to_owned()
            } else {
                format!(
                    "ledger functions: {}",
                    ledger_functions
                        .iter()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
        )
    } else {
        CheckResult::fail(
            "STATIC-KIND",
            ph,
            format!("allowed for scope {}", manifest.scope),
            kind_problems.join("; "),
        )
    });

    let ok = checks
        .iter()
        .all(|c| c.outcome == crate::report::Outcome::Pass);
    Statics {
        checks,
        ledger_functions,
        ok,
    }
}

fn declared(manifest: &Manifest) -> String {
    let names: Vec<String> = manifest
        .capabilities
        .iter()
        .map(|c| c.to_string())
        .collect();
    list_or_none(&names)
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// The import and export names of the outermost component.
fn top_level_names(bytes: &[u8]) -> (Vec<String>, Vec<String>) {
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let Ok(payload) = payload else { break };
        match payload {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                imports.extend(reader.into_iter().flatten().map(|i| i.name.name.to_owned()));
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                exports.extend(reader.into_iter().flatten().map(|e| e.name.name.to_owned()));
            }
            _ => {}
        }
    }
    (imports, exports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_versions_follow_the_runtime() {
        assert!(version_supported(sfop_runtime::PLATFORM_VERSION));
        assert!(!version_supported("0.3.0"));
        assert!(sfop_runtime::interface_version_supported("ledger", "0.1.0"));
        assert!(sfop_runtime::interface_version_supported("http", "0.2.0"));
        assert_eq!(served_version("http"), "0.2.0");
        assert!(!version_supported("1.0.0"));
        assert!(!version_supported("x"));
    }

    #[test]
    fn only_transfer_withdraws_and_only_oob_deposits() {
        for (scope, functions) in LEDGER_FUNCTIONS {
            assert_eq!(functions.contains(&"withdraw"), *scope == "transfer");
            assert_eq!(functions.contains(&"deposit"), *scope == "oob");
        }
    }

    #[test]
    fn a_core_module_is_not_a_component() -> Result<(), String> {
        let package = Package::from_parts(
            "name = \"x\"\nversion = \"1.0.0\"\ndescription = \"x\"\nscope = \"oob\"\n\
             [[routes]]\nmethod = \"GET\"\npath = \"/x\"\n"
                .into(),
            b"\0asm\x01\0\0\0".to_vec(),
            None,
        )
        .map_err(|e| e.to_string())?;
        let s = check(&package);
        assert!(!s.ok);
        assert!(
            s.checks.iter().any(|c| c.rule == "STATIC-COMPONENT"
                && c.detail.contains("not a WebAssembly component"))
        );
        Ok(())
    }
}
