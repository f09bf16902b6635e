//! `sfop api …`, `sfop audit …`, `sfop sandbox …`, `sfop keys …` and `sfop
//! token …`: the operator's commands for the management center, the sandbox,
//! the root keys and test tokens, spoken to a running platform over its admin
//! API; and `sfop api new`, which scaffolds a plugin crate.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use sfop::admin_client::{AdminTarget, call};
use sfop_management::Package;

use crate::{
    AdminArgs, ApiCommand, AuditCommand, FaultCommand, KeysCommand, SandboxCommand, TokenCommand,
};

/// Where the admin API is, owned.
pub struct Target {
    pub url: String,
    pub cacert: PathBuf,
    pub token_file: PathBuf,
}

impl Target {
    pub fn borrow(&self) -> AdminTarget<'_> {
        AdminTarget {
            url: &self.url,
            cacert: &self.cacert,
            token_file: &self.token_file,
        }
    }

    /// One admin call; a refusal becomes an error carrying its message.
    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let (status, answer) = call(&self.borrow(), method, path, body).await?;
        if !(200..300).contains(&status) {
            bail!(
                "refused ({status} {}): {}",
                answer["rsp_code"].as_str().unwrap_or_default(),
                answer["rsp_message"].as_str().unwrap_or_default()
            );
        }
        Ok(answer)
    }
}

/// Runs `what` and prints `what… result (time)` on stderr.
async fn step<T>(
    what: &str,
    work: impl Future<Output = Result<T>>,
    done: impl FnOnce(&T) -> String,
) -> Result<T> {
    eprint!("{what}… ");
    let _ = std::io::stderr().flush();
    let started = Instant::now();
    let result = work.await;
    let secs = started.elapsed().as_secs_f64();
    match &result {
        Ok(value) => eprintln!("{} ({secs:.1} s)", done(value)),
        Err(_) => eprintln!("failed ({secs:.1} s)"),
    }
    result
}

/// `sfop api new NAME`: scaffolds `plugins/NAME` in the project around the
/// current directory and says what to run next.
pub fn new_plugin(name: &str) -> Result<()> {
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let dir = crate::scaffold::new_plugin(name, &cwd)?;
    eprintln!(
        "created {} (Cargo.toml, sfop.toml, testbed.toml, src/lib.rs); added to \
         plugins/Cargo.toml and plugins/Cargo.lock\n\
         next: cargo xtask build-plugins -p {name}\n      \
         cargo run -q -p sfop -- testbed run target/sfop-plugins/api/{name} --out /tmp/{name}",
        dir.display()
    );
    Ok(())
}

/// `sfop token …`.
pub async fn token(admin: AdminArgs, command: TokenCommand) -> Result<()> {
    let data_dir = admin.data_dir.clone();
    let target = admin.target();
    match command {
        TokenCommand::User {
            login,
            password,
            client,
            client_secret,
            redirect_uri,
            scopes,
        } => {
            crate::user_token::user_token(
                &target,
                crate::user_token::UserTokenRequest {
                    login,
                    password,
                    client_id: client,
                    client_secret,
                    redirect_uri,
                    scopes,
                    data_dir,
                },
            )
            .await
        }
    }
}

pub async fn api(target: Target, command: ApiCommand) -> Result<()> {
    match command {
        // Handled without a runtime before a target is needed (main).
        ApiCommand::New { name } => new_plugin(&name),
        ApiCommand::Push { dir, test, promote } => {
            let package = Package::read_dir(&dir)
                .with_context(|| format!("reading the package {}", dir.display()))?;
            let (name, version) = (
                package.manifest.name.clone(),
                package.manifest.version.to_string(),
            );
            let kib = package.component.len() / 1024;
            let upload = serde_json::to_value(sfop_management::Upload::of(&package))?;
            let pushed = step(
                &format!("pushing {name}@{version} ({kib} KiB)"),
                target.send("POST", "/admin/v1/apis/push", Some(upload)),
                |a| {
                    format!(
                        "registered, sha256 {}",
                        a["component_sha256"].as_str().unwrap_or("?")
                    )
                },
            )
            .await?;
            let _ = pushed;
            if test || promote {
                run_test(&target, &name, &version).await?;
            }
            if promote {
                run_promote(&target, &name, &version).await?;
            }
            Ok(())
        }
        ApiCommand::List => {
            let answer = target.send("GET", "/admin/v1/apis", None).await?;
            print_apis(
                answer["res_list"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default(),
            );
            Ok(())
        }
        ApiCommand::Show { name } => {
            let answer = target
                .send("GET", &format!("/admin/v1/apis/show?name={name}"), None)
                .await?;
            println!("{}", serde_json::to_string_pretty(&answer["api"])?);
            Ok(())
        }
        ApiCommand::Status { name } => {
            let answer = target.send("GET", "/admin/v1/apis", None).await?;
            let apis = answer["res_list"].as_array().cloned().unwrap_or_default();
            println!(
                "{:<24} {:<12} {:<11} {:>10} {:>8}",
                "API", "VERSION", "STATE", "REQUESTS", "ERRORS"
            );
            for api in apis
                .iter()
                .filter(|a| name.as_deref().is_none_or(|n| a["name"] == n))
            {
                for v in api["versions"].as_array().into_iter().flatten() {
                    println!(
                        "{:<24} {:<12} {:<11} {:>10} {:>8}",
                        api["name"].as_str().unwrap_or_default(),
                        v["version"].as_str().unwrap_or_default(),
                        v["state"].as_str().unwrap_or_default(),
                        v["requests"],
                        v["errors"],
                    );
                }
            }
            Ok(())
        }
        ApiCommand::Test { name, version } => run_test(&target, &name, &version).await,
        ApiCommand::Promote { name, version } => run_promote(&target, &name, &version).await,
        ApiCommand::Canary {
            name,
            version,
            percent,
            sticky,
            max_error_rate,
            min_requests,
        } => {
            let body = json!({
                "name": name, "version": version, "percent": percent, "sticky": sticky,
                "max_error_rate": max_error_rate, "min_requests": min_requests,
            });
            step(
                &format!("starting a canary of {name}@{version} at {percent}%"),
                target.send("POST", "/admin/v1/apis/canary", Some(body)),
                |_| "serving".into(),
            )
            .await
            .map(drop)
        }
        ApiCommand::Rollback { name } => step(
            &format!("rolling back {name}"),
            target.send(
                "POST",
                "/admin/v1/apis/rollback",
                Some(json!({ "name": name })),
            ),
            |a| {
                format!(
                    "live version {}",
                    a["api"]["live"].as_str().unwrap_or("none")
                )
            },
        )
        .await
        .map(drop),
        ApiCommand::Deprecate { name, sunset } => step(
            &format!("deprecating {name}, sunset {sunset}"),
            target.send(
                "POST",
                "/admin/v1/apis/deprecate",
                Some(json!({ "name": name, "sunset": sunset })),
            ),
            |_| "announced".into(),
        )
        .await
        .map(drop),
        ApiCommand::Retire { name } => step(
            &format!("retiring {name}"),
            target.send(
                "POST",
                "/admin/v1/apis/retire",
                Some(json!({ "name": name })),
            ),
            |_| "out of service".into(),
        )
        .await
        .map(drop),
    }
}

async fn run_test(target: &Target, name: &str, version: &str) -> Result<()> {
    let answer = step(
        &format!("testing {name}@{version} on the testbed"),
        target.send(
            "POST",
            "/admin/v1/apis/test",
            Some(json!({ "name": name, "version": version })),
        ),
        |a| {
            if a["passed"] == true {
                "passed, attestation signed".into()
            } else {
                "FAILED".into()
            }
        },
    )
    .await?;
    for check in answer["report"]["checks"].as_array().into_iter().flatten() {
        if check["outcome"] == "fail" {
            eprintln!(
                "  ✗ {}: {}",
                check["rule"].as_str().unwrap_or("?"),
                check["detail"].as_str().unwrap_or_default()
            );
        }
    }
    if answer["passed"] != true {
        bail!("{name}@{version} failed the testbed");
    }
    Ok(())
}

async fn run_promote(target: &Target, name: &str, version: &str) -> Result<()> {
    step(
        &format!("promoting {name}@{version}"),
        target.send(
            "POST",
            "/admin/v1/apis/promote",
            Some(json!({ "name": name, "version": version })),
        ),
        |_| "live".into(),
    )
    .await
    .map(drop)
}

fn print_apis(apis: &[Value]) {
    println!(
        "{:<24} {:<10} {:<22} {:<12} VERSIONS",
        "API", "LIVE", "CANARY", "SUNSET"
    );
    for api in apis {
        let canary = match &api["canary"] {
            Value::Null => "-".to_owned(),
            c => format!(
                "{} ({}%)",
                c["version"].as_str().unwrap_or_default(),
                c["percent"]
            ),
        };
        let live = if api["retired"] == true {
            "retired".to_owned()
        } else {
            api["live"].as_str().unwrap_or("-").to_owned()
        };
        let versions: Vec<String> = api["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| {
                format!(
                    "{} {}",
                    v["version"].as_str().unwrap_or_default(),
                    v["state"].as_str().unwrap_or_default()
                )
            })
            .collect();
        println!(
            "{:<24} {:<10} {:<22} {:<12} {}",
            api["name"].as_str().unwrap_or_default(),
            live,
            canary,
            api["sunset"].as_str().unwrap_or("-"),
            versions.join(", ")
        );
    }
}

pub async fn audit(target: Target, command: AuditCommand) -> Result<()> {
    match command {
        AuditCommand::List => {
            let answer = target.send("GET", "/admin/v1/audit", None).await?;
            for e in answer["res_list"].as_array().into_iter().flatten() {
                println!(
                    "{:>5} {} {:<16} {:<10} {}@{} {}",
                    e["seq"],
                    sfop_core::time::format_dtm(e["at_ms"].as_u64().unwrap_or_default(), 0),
                    e["actor"].as_str().unwrap_or_default(),
                    e["action"].as_str().unwrap_or_default(),
                    e["api"].as_str().unwrap_or_default(),
                    e["version"].as_str().unwrap_or("-"),
                    e["detail"].as_str().unwrap_or_default()
                );
            }
            Ok(())
        }
        AuditCommand::Verify => {
            let (status, answer) =
                call(&target.borrow(), "GET", "/admin/v1/audit/verify", None).await?;
            if answer["intact"] == true {
                println!("audit log intact: {} entries", answer["entries"]);
                Ok(())
            } else if status == 409 {
                bail!(
                    "audit log TAMPERED: {} (entries before it check out: {})",
                    answer["rsp_message"].as_str().unwrap_or_default(),
                    answer["entries"]
                )
            } else {
                bail!(
                    "refused ({status}): {}",
                    answer["rsp_message"].as_str().unwrap_or_default()
                )
            }
        }
    }
}

pub async fn sandbox(target: Target, command: SandboxCommand) -> Result<()> {
    let SandboxCommand::Fault(command) = command;
    match command {
        FaultCommand::Add {
            client_id,
            fault,
            operation,
            bank_code,
            rsp_code,
            bank_rsp_code,
            rsp_message,
            times,
            balance_amt,
            available_amt,
            product_name,
            account_holder_name,
        } => {
            let fixture = json!({
                "balance_amt": balance_amt,
                "available_amt": available_amt,
                "product_name": product_name,
                "account_holder_name": account_holder_name,
            });
            let any_fixture = fixture
                .as_object()
                .is_some_and(|f| f.values().any(|v| !v.is_null()));
            let rule = json!({
                "client_id": client_id,
                "fault": fault,
                "operation": operation,
                "bank_code": bank_code,
                "rsp_code": rsp_code,
                "bank_rsp_code": bank_rsp_code,
                "rsp_message": rsp_message,
                "times": times,
                "fixture": if any_fixture { fixture } else { Value::Null },
            });
            let answer = target
                .send("POST", "/admin/v1/sandbox/faults", Some(rule))
                .await?;
            println!("{}", answer["id"]);
            Ok(())
        }
        FaultCommand::List { client_id } => {
            let answer = target.send("GET", "/admin/v1/sandbox/faults", None).await?;
            println!(
                "{:>4} {:<24} {:<20} {:<9} {:<5} {:>5} DETAIL",
                "ID", "CLIENT", "OPERATION", "FAULT", "BANK", "TIMES"
            );
            let text = |v: &Value, or: &str| v.as_str().unwrap_or(or).to_owned();
            for rule in answer["res_list"].as_array().into_iter().flatten() {
                if client_id.as_deref().is_some_and(|c| rule["client_id"] != c) {
                    continue;
                }
                let detail = ["rsp_code", "bank_rsp_code", "rsp_message", "fixture"]
                    .iter()
                    .filter(|k| !rule[**k].is_null())
                    .map(|k| format!("{k}={}", rule[*k]))
                    .collect::<Vec<_>>()
                    .join(" ");
                println!(
                    "{:>4} {:<24} {:<20} {:<9} {:<5} {:>5} {detail}",
                    rule["id"],
                    text(&rule["client_id"], "*"),
                    text(&rule["operation"], "*"),
                    text(&rule["fault"], "?"),
                    text(&rule["bank_code"], "*"),
                    rule["times"].as_u64().map_or("-".into(), |n| n.to_string()),
                );
            }
            Ok(())
        }
        FaultCommand::Remove { id } => {
            target
                .send(
                    "POST",
                    "/admin/v1/sandbox/faults/remove",
                    Some(json!({ "id": id })),
                )
                .await?;
            println!("removed {id}");
            Ok(())
        }
        FaultCommand::Clear { client_id } => {
            let answer = target
                .send(
                    "POST",
                    "/admin/v1/sandbox/faults/clear",
                    Some(json!({ "client_id": client_id })),
                )
                .await?;
            println!("removed {}", answer["removed"]);
            Ok(())
        }
    }
}

/// `sfop keys …`: the root keys through `/admin/v1/keys`.
pub async fn keys(target: Target, command: KeysCommand) -> Result<()> {
    use sfop::keys::{KeysAnswer, LIST, RETIRE, ROTATE, RetireRequest};
    let answer = match &command {
        KeysCommand::List => target.send("GET", LIST, None).await?,
        KeysCommand::Rotate => target.send("POST", ROTATE, None).await?,
        KeysCommand::Retire { root_key_id } => {
            let body = serde_json::to_value(RetireRequest {
                root_key_id: *root_key_id,
            })?;
            target.send("POST", RETIRE, Some(body)).await?
        }
    };
    let answer: KeysAnswer =
        serde_json::from_value(answer).context("the keys admin API's answer")?;
    match command {
        KeysCommand::List => {}
        KeysCommand::Rotate => {
            if let Some(id) = answer.root_key_id {
                eprintln!(
                    "root key {id} signs from now on; older keys keep verifying until retired"
                );
            }
        }
        KeysCommand::Retire { root_key_id } => {
            eprintln!("root key {root_key_id} retired: tokens it signed are refused");
            if answer.admin_token_reissued {
                eprintln!(
                    "the admin token {} was signed by it and has been replaced",
                    target.token_file.display()
                );
            }
        }
    }
    println!("{:>4} {:<8} {:<12} PUBLIC KEY", "ID", "STATUS", "CREATED");
    for key in &answer.keys {
        let status = serde_json::to_value(key.status)?;
        let created = if key.created_at == 0 {
            "-".to_owned()
        } else {
            sfop_core::time::format_dtm(key.created_at * 1000, 0)
                .get(..8)
                .unwrap_or_default()
                .to_owned()
        };
        println!(
            "{:>4} {:<8} {:<12} {}{}",
            key.root_key_id,
            status.as_str().unwrap_or_default(),
            created,
            key.public_key,
            if key.exposed {
                "  (was in the store: retire once its tokens expire)"
            } else {
                ""
            }
        );
    }
    Ok(())
}
