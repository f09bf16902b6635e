//! `sfop api …`, `sfop audit …`, `sfop sandbox …`, `sfop keys …` and `sfop
//! token …`: the operator's commands for the management center, the sandbox,
//! the root keys and test tokens, spoken to a running platform over its admin
//! API (one reqwest client per command, the types of `sfop-admin-api`); and
//! `sfop api new`, which scaffolds a plugin crate. Lists print as tables;
//! long steps (push, testbed, promote) show a spinner on a terminal and end
//! with one line on stderr saying how they went.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use comfy_table::{Table, presets};
use indicatif::ProgressBar;
use sfop::admin_client::{AdminClient, AdminTarget, Refused};
use sfop_admin_api::apis::{
    self, ApiAnswer, CanaryRequest, DeprecateRequest, ListAnswer, Named, NamedVersion, PushAnswer,
    ReportChecks, SetVariable, ShowAnswer, TestAnswer, UnsetVariable, VariableView,
    VariablesAnswer,
};
use sfop_admin_api::audit::{self, AuditAnswer, VerifyAnswer};
use sfop_admin_api::institutions::Limits;
use sfop_admin_api::sandbox::{
    self, ClearRequest, FaultAdded, FaultKind, FaultRemoved, FaultRule, FaultsAnswer,
    FaultsCleared, Fixture, RemoveRequest,
};
use sfop_admin_api::{Sticky, Upload};
use sfop_management::Package;

use crate::{
    AdminArgs, ApiCommand, AuditCommand, FaultCommand, KeysCommand, SandboxCommand, TokenCommand,
    VarCommand,
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

    /// The command's one client.
    pub fn client(&self) -> Result<AdminClient> {
        AdminClient::new(&self.borrow())
    }
}

/// A table in the CLI's style: no borders, so that scripts can split lines
/// on whitespace; a header row.
fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_style(presets::NOTHING)
        .set_header(header.to_vec());
    table
}

/// Runs `what` with a spinner on a terminal, then prints `what… result
/// (time)` on stderr (also when stderr is not a terminal).
async fn step<T>(
    what: &str,
    work: impl Future<Output = Result<T>>,
    done: impl FnOnce(&T) -> String,
) -> Result<T> {
    let spinner = ProgressBar::new_spinner().with_message(format!("{what}…"));
    spinner.enable_steady_tick(Duration::from_millis(120));
    let started = Instant::now();
    let result = work.await;
    spinner.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    match &result {
        Ok(value) => eprintln!("{what}… {} ({secs:.1} s)", done(value)),
        Err(_) => eprintln!("{what}… failed ({secs:.1} s)"),
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
         cargo run -q -p sfop -- testbed run target/sfop-plugins/api/{name} --out target/testbed/{name}",
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

fn sticky(text: &str) -> Result<Sticky> {
    match text {
        "client" => Ok(Sticky::Client),
        "account" => Ok(Sticky::Account),
        other => bail!("--sticky {other:?}: client or account"),
    }
}

pub async fn api(target: Target, command: ApiCommand) -> Result<()> {
    if let ApiCommand::New { name } = &command {
        // Handled without a runtime before a target is needed (main).
        return new_plugin(name);
    }
    let client = target.client()?;
    match command {
        ApiCommand::New { .. } => Ok(()),
        ApiCommand::Push { dir, test, promote } => {
            let package = Package::read_dir(&dir)
                .with_context(|| format!("reading the package {}", dir.display()))?;
            let (name, version) = (
                package.manifest.name.clone(),
                package.manifest.version.to_string(),
            );
            let kib = package.component.len() / 1024;
            let upload = Upload::of(&package);
            step(
                &format!("pushing {name}@{version} ({kib} KiB)"),
                client.post::<_, PushAnswer>(apis::PUSH, &upload),
                |a| format!("registered, sha256 {}", a.component_sha256),
            )
            .await?;
            if test || promote {
                run_test(&client, &name, &version).await?;
            }
            if promote {
                run_promote(&client, &name, &version).await?;
            }
            Ok(())
        }
        ApiCommand::List => {
            let answer: ListAnswer = client.get(apis::LIST).await?;
            print_apis(&answer.res_list);
            Ok(())
        }
        ApiCommand::Show { name } => {
            let path = format!("{}?name={}", apis::SHOW, sfop_core::form::encode(&name));
            let answer: ShowAnswer = client.get(&path).await?;
            println!("{}", serde_json::to_string_pretty(&answer.api)?);
            Ok(())
        }
        ApiCommand::Status { name } => {
            let answer: ListAnswer = client.get(apis::LIST).await?;
            let mut rows = table(&[
                "API",
                "VERSION",
                "STATE",
                "REQUESTS",
                "ERRORS",
                "QUARANTINE",
            ]);
            for api in answer
                .res_list
                .iter()
                .filter(|a| name.as_deref().is_none_or(|n| a.name == n))
            {
                for v in &api.versions {
                    // Why a version is throttled: its calls keep ending
                    // with this fault (docs/adr/0020).
                    let quarantine = v
                        .quarantined
                        .as_deref()
                        .map_or_else(|| "-".to_owned(), |why| format!("{why} faults"));
                    rows.add_row(vec![
                        api.name.clone(),
                        v.version.to_string(),
                        v.state.as_str().to_owned(),
                        v.requests.to_string(),
                        v.errors.to_string(),
                        quarantine,
                    ]);
                }
            }
            println!("{rows}");
            Ok(())
        }
        ApiCommand::Test { name, version } => run_test(&client, &name, &version).await,
        ApiCommand::Promote { name, version } => run_promote(&client, &name, &version).await,
        ApiCommand::Canary {
            name,
            version,
            percent,
            sticky: how,
            max_error_rate,
            min_requests,
        } => {
            let body = CanaryRequest {
                name: name.clone(),
                version: version.clone(),
                percent,
                sticky: Some(sticky(&how)?),
                max_error_rate,
                min_requests,
            };
            step(
                &format!("starting a canary of {name}@{version} at {percent}%"),
                client.post::<_, ApiAnswer>(apis::CANARY, &body),
                |_| "serving".into(),
            )
            .await
            .map(drop)
        }
        ApiCommand::Rollback { name } => step(
            &format!("rolling back {name}"),
            client.post::<_, ApiAnswer>(apis::ROLLBACK, &Named { name: name.clone() }),
            |a| {
                format!(
                    "live version {}",
                    a.api
                        .live
                        .as_ref()
                        .map_or_else(|| "none".to_owned(), ToString::to_string)
                )
            },
        )
        .await
        .map(drop),
        ApiCommand::Deprecate { name, sunset } => step(
            &format!("deprecating {name}, sunset {sunset}"),
            client.post::<_, ApiAnswer>(
                apis::DEPRECATE,
                &DeprecateRequest {
                    name: name.clone(),
                    sunset: sunset.clone(),
                },
            ),
            |_| "announced".into(),
        )
        .await
        .map(drop),
        ApiCommand::Retire { name } => step(
            &format!("retiring {name}"),
            client.post::<_, ApiAnswer>(apis::RETIRE, &Named { name: name.clone() }),
            |_| "out of service".into(),
        )
        .await
        .map(drop),
        ApiCommand::Var { command } => variables(&client, command).await,
    }
}

/// `sfop api var …`.
async fn variables(client: &AdminClient, command: VarCommand) -> Result<()> {
    let answer = match command {
        VarCommand::List { name } => {
            let path = format!(
                "{}?name={}",
                apis::VARIABLES,
                sfop_core::form::encode(&name)
            );
            client.get::<VariablesAnswer>(&path).await?
        }
        VarCommand::Set {
            name,
            variable,
            value,
        } => {
            let value = match value {
                Some(value) => value,
                None => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .context("reading the value from stdin")?;
                    line.trim_end_matches(['\n', '\r']).to_owned()
                }
            };
            let body = SetVariable {
                name: name.clone(),
                variable: variable.clone(),
                value,
            };
            step(
                &format!("setting {variable} of {name}"),
                client.post::<_, VariablesAnswer>(apis::SET_VARIABLE, &body),
                |_| "set; its serving versions reloaded".into(),
            )
            .await?
        }
        VarCommand::Unset { name, variable } => {
            let body = UnsetVariable {
                name: name.clone(),
                variable: variable.clone(),
            };
            step(
                &format!("unsetting {variable} of {name}"),
                client.post::<_, VariablesAnswer>(apis::UNSET_VARIABLE, &body),
                |_| "unset".into(),
            )
            .await?
        }
    };
    print_variables(&answer.variables);
    Ok(())
}

/// `sfop client list`: one row per app (never a secret).
pub fn print_clients(clients: &[sfop_admin_api::clients::ClientView]) {
    let mut rows = table(&[
        "CLIENT_ID",
        "NAME",
        "INSTITUTION",
        "SCOPES",
        "PUBLIC",
        "REDIRECT URIS",
    ]);
    for c in clients {
        rows.add_row(vec![
            c.client_id.clone(),
            c.name.clone(),
            c.client_use_code.clone(),
            c.scopes.join(","),
            if c.public { "yes" } else { "no" }.to_owned(),
            c.redirect_uris.join(" "),
        ]);
    }
    println!("{rows}");
}

fn print_variables(variables: &[VariableView]) {
    let mut rows = table(&[
        "VARIABLE",
        "REQUIRED",
        "SECRET",
        "SET BY ADMIN",
        "VALUE",
        "DEFAULT",
    ]);
    let yes = |b: bool| if b { "yes" } else { "no" }.to_owned();
    for v in variables {
        let value = match (&v.value, v.secret && v.set_by_admin) {
            (Some(value), _) => value.clone(),
            (None, true) => "(secret)".to_owned(),
            (None, false) => "-".to_owned(),
        };
        rows.add_row(vec![
            v.name.clone(),
            yes(v.required),
            yes(v.secret),
            yes(v.set_by_admin),
            value,
            v.default.clone().unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    println!("{rows}");
}

async fn run_test(client: &AdminClient, name: &str, version: &str) -> Result<()> {
    let body = NamedVersion {
        name: name.to_owned(),
        version: version.to_owned(),
    };
    let answer = step(
        &format!("testing {name}@{version} on the testbed"),
        client.post::<_, TestAnswer>(apis::TEST, &body),
        |a| {
            if a.passed {
                "passed, attestation signed".into()
            } else {
                "FAILED".into()
            }
        },
    )
    .await?;
    let checks: ReportChecks =
        serde_json::from_value(answer.report.clone()).context("the testbed report's checks")?;
    for check in checks
        .checks
        .iter()
        .filter(|c| c.outcome == apis::CheckOutcome::Fail)
    {
        eprintln!("  ✗ {}: {}", check.rule, check.detail);
    }
    if !answer.passed {
        bail!("{name}@{version} failed the testbed");
    }
    Ok(())
}

async fn run_promote(client: &AdminClient, name: &str, version: &str) -> Result<()> {
    let body = NamedVersion {
        name: name.to_owned(),
        version: version.to_owned(),
    };
    step(
        &format!("promoting {name}@{version}"),
        client.post::<_, ApiAnswer>(apis::PROMOTE, &body),
        |_| "live".into(),
    )
    .await
    .map(drop)
}

fn print_apis(apis: &[sfop_admin_api::ApiView]) {
    let mut rows = table(&["API", "LIVE", "CANARY", "SUNSET", "VERSIONS"]);
    for api in apis {
        let canary = api.canary.as_ref().map_or_else(
            || "-".to_owned(),
            |c| format!("{} ({}%)", c.version, c.percent),
        );
        let live = if api.retired {
            "retired".to_owned()
        } else {
            api.live
                .as_ref()
                .map_or_else(|| "-".to_owned(), ToString::to_string)
        };
        let versions: Vec<String> = api
            .versions
            .iter()
            .map(|v| format!("{} {}", v.version, v.state.as_str()))
            .collect();
        rows.add_row(vec![
            api.name.clone(),
            live,
            canary,
            api.sunset.clone().unwrap_or_else(|| "-".into()),
            versions.join(", "),
        ]);
    }
    println!("{rows}");
}

pub async fn audit(target: Target, command: AuditCommand) -> Result<()> {
    let client = target.client()?;
    match command {
        AuditCommand::List => {
            let answer: AuditAnswer = client.get(audit::LIST).await?;
            let mut rows = table(&["SEQ", "AT", "ACTOR", "ACTION", "API", "DETAIL"]);
            for e in &answer.res_list {
                rows.add_row(vec![
                    e.seq.to_string(),
                    sfop_core::time::format_dtm(e.at_ms, 0),
                    e.actor.clone(),
                    e.action.clone(),
                    format!("{}@{}", e.api, e.version.as_deref().unwrap_or("-")),
                    e.detail.clone(),
                ]);
            }
            println!("{rows}");
            Ok(())
        }
        AuditCommand::Verify => {
            // 409 carries the answer too: where the chain breaks.
            let (status, bytes) = client
                .send::<()>(reqwest::Method::GET, audit::VERIFY, None)
                .await?;
            let answer: Option<VerifyAnswer> = serde_json::from_slice(&bytes).ok();
            match answer {
                Some(a) if a.intact => {
                    println!("audit log intact: {} entries", a.entries);
                    Ok(())
                }
                Some(a) if status == 409 => bail!(
                    "audit log TAMPERED: {} (entries before it check out: {})",
                    a.rsp_message,
                    a.entries
                ),
                _ => {
                    let refusal: sfop_admin_api::Status =
                        serde_json::from_slice(&bytes).unwrap_or_default();
                    Err(Refused {
                        status,
                        rsp_code: refusal.rsp_code,
                        rsp_message: refusal.rsp_message,
                    }
                    .into())
                }
            }
        }
    }
}

pub async fn sandbox(target: Target, command: SandboxCommand) -> Result<()> {
    let SandboxCommand::Fault(command) = command;
    let client = target.client()?;
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
            let fault: FaultKind = serde_json::from_value(serde_json::Value::String(fault))
                .map_err(|e| anyhow::anyhow!("fault: {e}"))?;
            let fixture = Fixture {
                balance_amt,
                available_amt,
                product_name,
                account_holder_name,
            };
            let rule = FaultRule {
                client_id: Some(client_id),
                operation,
                fault,
                bank_code,
                rsp_code,
                bank_rsp_code,
                rsp_message,
                fixture: (!fixture.is_empty()).then_some(fixture),
                times,
            };
            let answer: FaultAdded = client.post(sandbox::FAULTS, &rule).await?;
            println!("{}", answer.id);
            Ok(())
        }
        FaultCommand::List { client_id } => {
            let answer: FaultsAnswer = client.get(sandbox::FAULTS).await?;
            let mut rows = table(&[
                "ID",
                "CLIENT",
                "OPERATION",
                "FAULT",
                "BANK",
                "TIMES",
                "DETAIL",
            ]);
            let or = |v: &Option<String>, dflt: &str| v.clone().unwrap_or_else(|| dflt.to_owned());
            for scripted in &answer.res_list {
                let rule = &scripted.rule;
                if client_id.is_some() && rule.client_id != client_id {
                    continue;
                }
                let mut detail = Vec::new();
                for (key, value) in [
                    ("rsp_code", &rule.rsp_code),
                    ("bank_rsp_code", &rule.bank_rsp_code),
                    ("rsp_message", &rule.rsp_message),
                ] {
                    if let Some(v) = value {
                        detail.push(format!("{key}={v:?}"));
                    }
                }
                if let Some(fixture) = &rule.fixture {
                    detail.push(format!("fixture={}", serde_json::to_string(fixture)?));
                }
                rows.add_row(vec![
                    scripted.id.to_string(),
                    or(&rule.client_id, "*"),
                    or(&rule.operation, "*"),
                    serde_json::to_value(rule.fault)?
                        .as_str()
                        .unwrap_or("?")
                        .to_owned(),
                    or(&rule.bank_code, "*"),
                    rule.times.map_or_else(|| "-".into(), |n| n.to_string()),
                    detail.join(" "),
                ]);
            }
            println!("{rows}");
            Ok(())
        }
        FaultCommand::Remove { id } => {
            let _: FaultRemoved = client.post(sandbox::REMOVE, &RemoveRequest { id }).await?;
            println!("removed {id}");
            Ok(())
        }
        FaultCommand::Clear { client_id } => {
            let answer: FaultsCleared = client
                .post(sandbox::CLEAR, &ClearRequest { client_id })
                .await?;
            println!("removed {}", answer.removed);
            Ok(())
        }
    }
}

/// `sfop keys …`: the root keys through `/admin/v1/keys`.
pub async fn keys(target: Target, command: KeysCommand) -> Result<()> {
    use sfop_admin_api::keys::{KeysAnswer, LIST, RETIRE, ROTATE, RetireRequest};
    let client = target.client()?;
    let answer: KeysAnswer = match &command {
        KeysCommand::List => client.get(LIST).await?,
        KeysCommand::Rotate => {
            client
                .call::<(), _>(reqwest::Method::POST, ROTATE, None)
                .await?
        }
        KeysCommand::Retire { root_key_id } => {
            client
                .post(
                    RETIRE,
                    &RetireRequest {
                        root_key_id: *root_key_id,
                    },
                )
                .await?
        }
    };
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
    let mut rows = table(&["ID", "STATUS", "CREATED", "PUBLIC KEY"]);
    for key in &answer.keys {
        let created = if key.created_at == 0 {
            "-".to_owned()
        } else {
            sfop_core::time::format_dtm(key.created_at * 1000, 0)
                .get(..8)
                .unwrap_or_default()
                .to_owned()
        };
        let exposed = if key.exposed {
            "  (was in the store: retire once its tokens expire)"
        } else {
            ""
        };
        rows.add_row(vec![
            key.root_key_id.to_string(),
            key.status.as_str().to_owned(),
            created,
            format!("{}{exposed}", key.public_key),
        ]);
    }
    println!("{rows}");
    Ok(())
}

/// `sfop institution …`: onboarding using institutions through
/// `/admin/v1/institutions` (docs/adr/0017-institutions.md).
#[derive(clap::Subcommand)]
pub enum InstitutionCommand {
    /// A new institution, requested until approved; prints its code.
    Create {
        #[arg(long)]
        name: String,
        /// `M` and 9 digits; allocated when absent. The code of apps
        /// registered without --institution makes them its apps.
        #[arg(long)]
        client_use_code: Option<String>,
        /// What deposits must carry as wd_pass_phrase [default: NONE].
        #[arg(long)]
        wd_pass_phrase: Option<String>,
    },
    /// Register a contract account: an existing account (verify it next),
    /// or --open-sandbox for one opened at the virtual bank with test funds.
    AddAccount {
        client_use_code: String,
        #[arg(long, required_unless_present = "open_sandbox")]
        bank_code: Option<String>,
        #[arg(long, required_unless_present = "open_sandbox")]
        account_num: Option<String>,
        #[arg(long, conflicts_with_all = ["bank_code", "account_num"])]
        open_sandbox: bool,
        /// Test funds of a sandbox account, in won.
        #[arg(long, requires = "open_sandbox")]
        opening_balance: Option<u64>,
    },
    /// Verify a registered contract account (held by the institution, open).
    VerifyAccount {
        client_use_code: String,
        #[arg(long)]
        bank_code: String,
        #[arg(long)]
        account_num: String,
    },
    /// Set limits in won: per transaction, daily, monthly (e.g. 1000000,10000000,100000000).
    Limits {
        client_use_code: String,
        #[arg(long, value_parser = parse_limits)]
        withdraw: Option<Limits>,
        #[arg(long, value_parser = parse_limits)]
        deposit: Option<Limits>,
    },
    /// Approve a requested institution: its apps move money from now on.
    Approve { client_use_code: String },
    /// Stop an institution's transfers until resumed.
    Suspend { client_use_code: String },
    /// Let a suspended institution's transfers through again.
    Resume { client_use_code: String },
    /// Every institution with its state, contract accounts, limits and apps.
    List,
}

fn parse_limits(s: &str) -> Result<Limits> {
    let parts: Vec<u64> = s
        .split(',')
        .map(|p| p.trim().replace('_', "").parse::<u64>())
        .collect::<Result<_, _>>()
        .context("limits are three whole numbers of won: per_tran,daily,monthly")?;
    let [per_tran, daily, monthly] = parts[..] else {
        bail!("limits are three numbers: per_tran,daily,monthly");
    };
    Ok(Limits {
        per_tran,
        daily,
        monthly,
    })
}

/// `sfop institution …`.
pub async fn institution(target: Target, command: InstitutionCommand) -> Result<()> {
    use sfop_admin_api::institutions::{
        ACCOUNTS, APPROVE, AccountRequest, CodeRequest, CreateRequest, InstitutionsAnswer, LIMITS,
        LIST, LimitsRequest, RESUME, SUSPEND, VERIFY, VerifyRequest,
    };
    let client = target.client()?;
    let code = |c: &str| {
        serde_json::to_value(CodeRequest {
            client_use_code: c.to_owned(),
        })
    };
    let (path, body) = match &command {
        InstitutionCommand::List => (LIST, None),
        InstitutionCommand::Create {
            name,
            client_use_code,
            wd_pass_phrase,
        } => (
            LIST,
            Some(serde_json::to_value(CreateRequest {
                name: name.clone(),
                client_use_code: client_use_code.clone(),
                wd_pass_phrase: wd_pass_phrase.clone(),
                ..CreateRequest::default()
            })?),
        ),
        InstitutionCommand::AddAccount {
            client_use_code,
            bank_code,
            account_num,
            open_sandbox,
            opening_balance,
        } => (
            ACCOUNTS,
            Some(serde_json::to_value(AccountRequest {
                client_use_code: client_use_code.clone(),
                bank_code_std: bank_code.clone(),
                account_num: account_num.clone(),
                open_sandbox: *open_sandbox,
                opening_balance: *opening_balance,
            })?),
        ),
        InstitutionCommand::VerifyAccount {
            client_use_code,
            bank_code,
            account_num,
        } => (
            VERIFY,
            Some(serde_json::to_value(VerifyRequest {
                client_use_code: client_use_code.clone(),
                bank_code_std: bank_code.clone(),
                account_num: account_num.clone(),
            })?),
        ),
        InstitutionCommand::Limits {
            client_use_code,
            withdraw,
            deposit,
        } => (
            LIMITS,
            Some(serde_json::to_value(LimitsRequest {
                client_use_code: client_use_code.clone(),
                withdraw_limits: *withdraw,
                deposit_limits: *deposit,
            })?),
        ),
        InstitutionCommand::Approve { client_use_code } => (APPROVE, Some(code(client_use_code)?)),
        InstitutionCommand::Suspend { client_use_code } => (SUSPEND, Some(code(client_use_code)?)),
        InstitutionCommand::Resume { client_use_code } => (RESUME, Some(code(client_use_code)?)),
    };
    let answer: InstitutionsAnswer = match &body {
        Some(body) => client.post(path, body).await?,
        None => client.get(path).await?,
    };
    if let Some(num) = &answer.account_num {
        eprintln!("sandbox contract account 097 {num} opened");
    }
    if let InstitutionCommand::Create { .. } = command
        && let Some(created) = answer.res_list.first()
    {
        eprintln!(
            "institution created (requested): add and verify a contract account, then sfop institution approve {}",
            created.institution.client_use_code
        );
        println!("{}", created.institution.client_use_code);
        return Ok(());
    }
    let mut rows = table(&[
        "CODE",
        "STATE",
        "NAME",
        "CONTRACT ACCOUNTS",
        "WITHDRAW / DEPOSIT LIMITS",
        "APPS",
    ]);
    for entry in &answer.res_list {
        let i = &entry.institution;
        let accounts = i
            .contract_accounts
            .iter()
            .map(|a| {
                format!(
                    "{} {}{}",
                    a.bank_code_std,
                    a.account_num,
                    if a.verified { "" } else { " (unverified)" }
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        rows.add_row(vec![
            i.client_use_code.clone(),
            i.state.as_str().to_owned(),
            i.name.clone(),
            if accounts.is_empty() {
                "-".to_owned()
            } else {
                accounts
            },
            format!(
                "{}/{}/{} · {}/{}/{}",
                i.withdraw_limits.per_tran,
                i.withdraw_limits.daily,
                i.withdraw_limits.monthly,
                i.deposit_limits.per_tran,
                i.deposit_limits.daily,
                i.deposit_limits.monthly
            ),
            entry.apps.join(", "),
        ]);
    }
    println!("{rows}");
    Ok(())
}
