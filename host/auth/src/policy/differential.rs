//! The fast decision (`PreparedToken`, ADR 0012) against biscuit-auth's own
//! `AuthorizerBuilder::build` + `authorize_with_limits`: for every token and
//! request of the auth tests, the committed samples and generated
//! attenuations, both must agree on the result, including which checks
//! failed (with their text), and on what each authoriser check stands for.

use std::collections::HashMap;
use std::sync::Arc;

use biscuit_auth::builder::{Scope, Term};
use biscuit_auth::{AuthorizerLimits, Biscuit, BlockBuilder, KeyPair};
use sfop_store::Store;

use super::*;
use crate::AccessGrant;

const ACCOUNT: &str = "120220038200000000000001";
const OTHER: &str = "120220038200000000000002";
const FUTURE: u64 = 4_102_444_800;

#[derive(Default)]
struct Tally {
    compared: usize,
    allowed: usize,
    denied_checks: usize,
    run_limit: usize,
    other: usize,
}

/// Decides `input` for `token` both ways (signature verified, expiry not
/// pre-checked so that expired tokens reach the Datalog) and asserts they
/// agree.
fn compare(
    a: &TokenAuthorizer,
    token: &str,
    input: &AuthInput<'_>,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let entry = a
        .verify_cached(token)
        .map_err(|e| anyhow::anyhow!("token does not verify: {e}"))?;
    let (mut fast_checks, mut reference_checks) = (Vec::new(), Vec::new());
    let Some(prepared) = entry.prepared(&a.config) else {
        // The fast path could not load the token: biscuit-auth must refuse
        // to load it too, for the same reason.
        let banks: Vec<_> = a.config.bank_consent.iter().map(|(k, _)| *k).collect();
        let error = PreparedToken::new(&entry.verified.biscuit, &banks).err();
        let reference = a.decide_reference(&entry.verified, input, &mut reference_checks);
        assert_eq!(reference.err(), error);
        tally.compared += 1;
        tally.other += 1;
        return Ok(());
    };
    let fast = a.decide(prepared, input, &mut fast_checks);
    let reference = a.decide_reference(&entry.verified, input, &mut reference_checks);
    assert_eq!(
        fast,
        reference,
        "fast and biscuit-auth decisions differ\ntoken:\n{}\ninput: {input:?}",
        entry.verified.biscuit.print()
    );
    assert_eq!(fast_checks, reference_checks);
    tally.compared += 1;
    match reference {
        Ok(_) => tally.allowed += 1,
        Err(Token::FailedLogic(Logic::Unauthorized { .. }))
        | Err(Token::FailedLogic(Logic::NoMatchingPolicy { .. })) => tally.denied_checks += 1,
        Err(Token::RunLimit(_)) => tally.run_limit += 1,
        Err(_) => tally.other += 1,
    }
    Ok(())
}

fn parse(ring: &KeyRing, token: &str) -> anyhow::Result<Biscuit> {
    Ok(Biscuit::from_base64(token, |id| {
        ring.public_key(id)
            .ok_or(biscuit_auth::error::Format::UnknownPublicKey)
    })?)
}

fn grant(scopes: &[&str], accounts: &[&str], user: Option<&str>, expires_at: u64) -> AccessGrant {
    AccessGrant {
        client_id: "fintech-app".into(),
        client_use_code: Some("M202200382".into()),
        user_seq_no: user.map(str::to_owned),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        fintech_use_nums: accounts.iter().map(|s| (*s).to_owned()).collect(),
        expires_at,
    }
}

/// Requests: the auth tests' and more (several accounts, a user, strings the
/// token does not know, amounts around the attenuations' bounds).
fn inputs() -> Vec<AuthInput<'static>> {
    let req = |api: &'static str,
               scope: &'static str,
               accounts: &[&str],
               user: Option<&str>,
               amount: Option<i64>| AuthInput {
        authorization: None,
        api,
        required_scope: scope,
        accounts: accounts.iter().map(|s| (*s).to_owned()).collect(),
        user: user.map(str::to_owned),
        amount,
    };
    vec![
        req("balance", "inquiry", &[ACCOUNT], None, None),
        req("balance", "inquiry", &[OTHER], None, None),
        req("balance", "inquiry", &[ACCOUNT, OTHER], None, None),
        req("account-list", "login", &[], Some("1100000001"), None),
        req("account-list", "login", &[], Some("1100000009"), None),
        req("withdraw", "transfer", &[ACCOUNT], None, Some(1_000)),
        req("withdraw", "transfer", &[ACCOUNT], None, Some(50_000)),
        req("withdraw", "transfer", &[ACCOUNT], None, Some(50_001)),
        req("withdraw", "transfer", &[ACCOUNT], None, Some(200_000)),
        req("withdraw", "transfer", &[OTHER], None, Some(1)),
        req(
            "deposit",
            "transfer",
            &[ACCOUNT, OTHER],
            Some("1100000001"),
            Some(5),
        ),
        req("bank-status", "oob", &[], None, None),
        // Unlink, authorised with the token's blocks (operation "unlink").
        req(
            crate::oauth::UNLINK_API,
            "login",
            &[],
            Some("1100000001"),
            None,
        ),
        req("real-name", "oob", &[ACCOUNT], None, None),
        req("a-brand-new-api", "inquiry", &[ACCOUNT], None, None),
        req(
            "sample",
            "never-granted",
            &["999999999999999999999999"],
            Some("x"),
            Some(-1),
        ),
    ]
}

/// Attenuation blocks, alone and in pairs. Strings the token does not have,
/// string and set operations, `check all`, `reject if`, expiry, forged
/// authority facts and rules, and every kind of scope.
fn attenuations(bank: &KeyPair) -> anyhow::Result<Vec<BlockBuilder>> {
    let bank_hex = bank.public().to_bytes_hex();
    let code = |src: &str| BlockBuilder::new().code(src);
    let mut blocks = vec![
        code(&format!(
            r#"check if operation("read") or resource_account("{ACCOUNT}"), amount($a), $a <= 50000;"#
        ))?,
        code(r#"check if api("balance");"#)?,
        code(r#"check if api($x), ["balance", "withdraw", "deposit"].contains($x);"#)?,
        code(r#"check if time($t), $t <= 2000-01-01T00:00:00Z;"#)?,
        code(r#"check if time($t), $t <= 2099-01-01T00:00:00Z;"#)?,
        code(r#"check all resource_account($a), $a.starts_with("1202200382");"#)?,
        code(r#"check all amount($a), $a < 10000;"#)?,
        code(r#"reject if amount($a), $a > 100000;"#)?,
        code(&format!(r#"reject if resource_account("{OTHER}");"#))?,
        code(&format!(
            r#"scope("oob"); scope("transfer"); account("{OTHER}"); user("1100000009");"#
        ))?,
        code(r#"scope("transfer") <- scope("inquiry"); scope("oob") <- api($x);"#)?,
        code(r#"account($a) <- resource_account($a); user($u) <- resource_user($u);"#)?,
        code(r#"check if scope("transfer") trusting previous;"#)?,
        code(r#"check if user("1100000001") trusting authority;"#)?,
        code(&format!(
            r#"check if bank_consent($f, "transfer") trusting ed25519/{bank_hex};"#
        ))?,
        code(r#"check if operation($op), $op.length() > 4;"#)?,
        code(r#"check if operation("read") or operation("transfer");"#)?,
        code(r#"check if api($a), $a.starts_with("with") or required_scope("inquiry");"#)?,
        code(r#"check if resource_account($f), $f.ends_with("0001"), $f.length() == 24;"#)?,
        code(r#"check if amount($a), $a <= 1000 or operation("read");"#)?,
        code(r#"check if true;"#)?,
        code(r#"check if false;"#)?,
        code(r#"partner_ok(true); partner("acme-only-in-this-block");"#)?,
        code(r#"check if partner_ok(true) trusting previous;"#)?,
        code(r#"check if partner_ok(true);"#)?,
        code(r#"check if partner($p), $p.contains("acme") trusting previous;"#)?,
        code(r#"check if api($a), $a + "-x" == "balance-x" or operation("transfer");"#)?,
        code(r#"reject if scope("oob");"#)?,
        code(r#"check all scope($s), ["inquiry", "transfer", "login", "oob"].contains($s);"#)?,
        code(r#"ok($a) <- resource_account($a), $a.starts_with("12022"); check if ok($a);"#)?,
        code(r#"check if client($c), client_use_code($u), $c != $u;"#)?,
        code(r#"check if expires($e), time($t), $t < $e;"#)?,
        // Block-level scopes: the block trusts only itself, the authoriser
        // and what it names.
        code(r#"check if scope($s);"#)?.scope(Scope::Previous),
        code(r#"check if scope("inquiry"); check if api($a);"#)?.scope(Scope::Authority),
        code(r#"check if bank_consent($f, $s);"#)?.scope(Scope::PublicKey(bank.public())),
        code(r#"local(1); check if local(1); check if account($a);"#)?
            .scope(Scope::PublicKey(bank.public())),
    ];
    let mut n = String::new();
    for i in 0..25 {
        n.push_str(&format!("n({i});\n"));
    }
    n.push_str("pair($a, $b) <- n($a), n($b);\n");
    blocks.push(code(&n)?);
    let mut chain = String::new();
    for i in 0..15 {
        chain.push_str(&format!("edge({i}, {});\n", i + 1));
    }
    chain.push_str(
        "reach($a, $b) <- edge($a, $b);\nreach($a, $c) <- reach($a, $b), edge($b, $c);\n",
    );
    blocks.push(code(&chain)?);
    // The attack shapes of issue 15 (defect 1), at a size both paths decide
    // quickly: a join of three over one predicate with arithmetic, the same
    // as a rule, and closures over sets.
    let mut f = String::new();
    for i in 0..10 {
        f.push_str(&format!("f({i});\n"));
    }
    blocks.push(code(&format!(
        "{f}check if f($a), f($b), f($c), $a + $b + $c == -1;"
    ))?);
    blocks.push(code(&format!(
        "{f}g($a) <- f($a), f($b), $a + $b == 7;\ncheck if g(3);"
    ))?);
    blocks.push(code(
        r#"check if [1, 2, 3].all($x -> $x < 4), [4, 5].any($y -> $y > 4), amount($a), $a > 0 or operation("read");"#,
    )?);
    Ok(blocks)
}

/// Third-party blocks for `token`: the bank's consent (by fact and by a
/// rule), with checks and strings of its own, signed by `signer`.
fn third_party(token: &Biscuit, signer: &KeyPair, source: &str) -> anyhow::Result<Biscuit> {
    let request = token.third_party_request()?;
    let block = BlockBuilder::new().code_with_params(
        source,
        HashMap::from([("f".to_owned(), Term::Str(ACCOUNT.into()))]),
        HashMap::new(),
    )?;
    let signed = request.create_block(&signer.private(), block)?;
    Ok(token.append_third_party(signer.public(), signed)?)
}

const BANK_BLOCKS: [&str; 5] = [
    r#"bank_consent({f}, "transfer");"#,
    r#"bank_consent($f, "transfer") <- resource_account($f);"#,
    r#"bank_consent({f}, "transfer"); check if amount($a), $a < 5000;"#,
    r#"bank_consent({f}, "transfer"); bank_note("only-in-the-bank-block"); check if bank_note($n), $n.starts_with("only");"#,
    r#"check if scope("transfer") trusting authority; check all resource_account($a), $a == {f};"#,
];

#[test]
fn fast_path_agrees_with_biscuit() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let ring = KeyRing::open(&store)?;
    let revocations = Arc::new(Revocations::open(&store)?);
    let bank = KeyPair::new();
    let impostor = KeyPair::new();
    // The published token limits would refuse the costlier attenuations
    // below at verification; here both paths must decide them, and agree.
    // biscuit-auth's wall-clock limit, too, would cut the reference short on
    // a busy machine (the fast path has none, ADR 0015).
    let generous = || PolicyConfig {
        token_limits: crate::TokenLimits {
            max_work: u64::MAX,
            ..crate::TokenLimits::default()
        },
        limits: AuthorizerLimits {
            max_time: std::time::Duration::from_secs(60),
            ..crate::token::run_limits()
        },
        ..PolicyConfig::default()
    };
    let configs = [
        generous(),
        generous()
            .require_bank_consent(
                &format!("ed25519/{}", bank.public().to_bytes_hex()),
                vec!["transfer".into()],
            )?
            .require_bank_consent(
                &format!("ed25519/{}", impostor.public().to_bytes_hex()),
                vec!["transfer".into(), "inquiry".into()],
            )?,
        PolicyConfig {
            limits: AuthorizerLimits {
                max_facts: 50,
                max_iterations: 10,
                max_time: std::time::Duration::from_secs(60),
            },
            ..generous()
        },
    ];

    let mut tokens: Vec<String> = Vec::new();
    let bases = [
        grant(
            &["inquiry", "transfer"],
            &[ACCOUNT],
            Some("1100000001"),
            FUTURE,
        ),
        grant(&["inquiry"], &[ACCOUNT], None, FUTURE),
        grant(&["oob"], &[], None, FUTURE),
        grant(
            &["login", "inquiry", "transfer"],
            &[ACCOUNT, OTHER],
            Some("1100000001"),
            1_000,
        ),
        grant(&[], &[], None, FUTURE),
    ];
    for base in &bases {
        tokens.push(base.issue(&ring)?);
    }

    let root = parse(&ring, &tokens[0])?;
    let blocks = attenuations(&bank)?;
    for (i, first) in blocks.iter().enumerate() {
        let once = root.append(first.clone())?;
        tokens.push(once.to_base64()?);
        // Pairs: each block followed by a few others (wrapping around).
        for second in blocks.iter().cycle().skip(i + 1).take(6) {
            tokens.push(once.append(second.clone())?.to_base64()?);
        }
    }
    // Attenuations of the other grants.
    let others: Vec<String> = tokens[1..4].to_vec();
    for base in &others {
        let parsed = parse(&ring, base)?;
        for block in blocks.iter().step_by(3) {
            tokens.push(parsed.append(block.clone())?.to_base64()?);
        }
    }
    // Third-party blocks by the bank and by an impostor, alone, followed by
    // attenuations, and after an attenuation.
    // Sources naming public keys: kept in the third-party block's own
    // symbol table, translated into the authoriser's.
    let keyed = [
        format!(
            r#"bank_consent({{f}}, "transfer"); check if bank_consent($f, "transfer") trusting ed25519/{};"#,
            bank.public().to_bytes_hex()
        ),
        format!(
            r#"bank_consent({{f}}, "transfer"); check if partner_ok(true) trusting previous, ed25519/{};"#,
            impostor.public().to_bytes_hex()
        ),
    ];
    let sources: Vec<&str> = BANK_BLOCKS
        .iter()
        .copied()
        .chain(keyed.iter().map(String::as_str))
        .collect();
    for signer in [&bank, &impostor] {
        for &source in &sources {
            let cosigned = third_party(&root, signer, source)?;
            tokens.push(cosigned.to_base64()?);
            for block in blocks.iter().step_by(4) {
                tokens.push(cosigned.append(block.clone())?.to_base64()?);
            }
            let attenuated = root.append(blocks[0].clone())?;
            tokens.push(third_party(&attenuated, signer, source)?.to_base64()?);
            // Two third-party blocks by different keys.
            let other = if std::ptr::eq(signer, &bank) {
                &impostor
            } else {
                &bank
            };
            tokens.push(third_party(&cosigned, other, BANK_BLOCKS[0])?.to_base64()?);
        }
    }

    let mut tally = Tally::default();
    for config in configs {
        let a = TokenAuthorizer::new(ring.clone(), revocations.clone(), config);
        for token in &tokens {
            for input in inputs() {
                compare(&a, token, &input, &mut tally)?;
            }
        }
    }

    // The committed samples, with their own ring and bank key.
    let sample_ring = crate::samples::ring()?;
    let sample_bank = format!(
        "ed25519/{}",
        crate::samples::seeded(0x0b)?.public().to_bytes_hex()
    );
    for config in [
        generous(),
        generous().require_bank_consent(&sample_bank, vec!["transfer".into()])?,
    ] {
        let a = TokenAuthorizer::new(sample_ring.clone(), revocations.clone(), config);
        for sample in crate::samples::all()? {
            let parsed = parse(&sample_ring, &sample.token)?;
            let mut variants = vec![sample.token.clone()];
            for block in blocks.iter().step_by(2) {
                variants.push(parsed.append(block.clone())?.to_base64()?);
            }
            for token in &variants {
                for input in inputs() {
                    compare(&a, token, &input, &mut tally)?;
                }
                let mut sample_input = inputs()[0].clone();
                sample_input.accounts = vec!["120230000100000000000001".into()];
                for (scope, amount) in [
                    ("inquiry", None),
                    ("transfer", Some(30_001)),
                    ("transfer", Some(1)),
                ] {
                    sample_input.required_scope = scope;
                    sample_input.amount = amount;
                    compare(&a, token, &sample_input, &mut tally)?;
                }
            }
        }
    }

    eprintln!(
        "compared {} decisions: {} allowed, {} denied by checks, {} run limits, {} other",
        tally.compared, tally.allowed, tally.denied_checks, tally.run_limit, tally.other
    );
    assert!(tally.compared > 10_000);
    assert!(tally.allowed > 500);
    assert!(tally.denied_checks > 5_000);
    assert!(tally.run_limit > 50);
    Ok(())
}

/// The fast path's table of request strings: a string the token does not
/// have is added to a copy that is cut back afterwards, so the next request
/// sees the token's table unchanged.
#[test]
fn request_strings_do_not_leak_between_requests() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let ring = KeyRing::open(&store)?;
    let a = TokenAuthorizer::new(
        ring.clone(),
        Arc::new(Revocations::open(&store)?),
        PolicyConfig::default(),
    );
    let root = parse(
        &ring,
        &grant(&["inquiry"], &[ACCOUNT], None, FUTURE).issue(&ring)?,
    )?;
    let token = root
        .append(BlockBuilder::new().code(r#"check if api($a), $a.length() < 12;"#)?)?
        .to_base64()?;
    let bearer = format!("Bearer {token}");
    let mut tally = Tally::default();
    for (round, api) in ["short", "a-very-long-api-name", "short", "other", "x"]
        .into_iter()
        .enumerate()
    {
        let input = AuthInput {
            authorization: Some(&bearer),
            api,
            required_scope: "inquiry",
            accounts: vec![if round % 2 == 0 { ACCOUNT } else { OTHER }.into()],
            user: None,
            amount: None,
        };
        compare(&a, &token, &input, &mut tally)?;
        let expected = if api.len() < 12 && round % 2 == 0 {
            Ok(())
        } else {
            Err(())
        };
        assert_eq!(
            a.authorize(&input).map(|_| ()).map_err(|_| ()),
            expected,
            "{api}"
        );
    }
    Ok(())
}
