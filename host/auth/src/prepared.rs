//! The token-only part of a decision, prepared once per verified token, and
//! the per-request evaluation on top of it (ADR 0012).
//!
//! biscuit-auth's `AuthorizerBuilder::build` deserialises every block of the
//! token and translates its symbols into a fresh authoriser symbol table on
//! every call; that was about half of the per-request decision. What it
//! computes from the token alone is the same for every request, so it is kept
//! here next to the token's verification: the blocks translated into one
//! symbol table, the token's facts (with their block origins) and rules (with
//! the origins their scopes trust), each block's checks with the origins each
//! query trusts, and which blocks each third-party key signed.
//!
//! Nothing about a request is cached: every request gets a fresh world (the
//! token's facts plus the request's), runs it to a fixpoint under the run
//! limits and evaluates every check and the policy, in the order and with the
//! scoping rules of biscuit-auth's `Authorizer::authorize_with_limits`
//! (`token/authorizer.rs`, `authorize_inner`), mirrored statement by
//! statement. `policy::differential::fast_path_agrees_with_biscuit` compares both
//! on every token and request of the auth tests and many generated
//! attenuations.

use std::collections::HashMap;
use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::Mutex;
use std::time::SystemTime;

use biscuit_auth::builder::{self, CheckKind, Convert};
use biscuit_auth::datalog::{
    Check, CombineIt, ExternFunc, Fact, FactSet, MatchedVariables, Origin, Predicate, Rule,
    RunLimits, SymbolIndex, SymbolTable, TemporarySymbolTable, Term, TrustedOrigins, World,
};
use biscuit_auth::error::{self, Execution, FailedCheck, Token};
use biscuit_auth::{Biscuit, PublicKey};

use crate::blocks::Blocks;
use crate::limits::{Meter, Metered, match_cost};

/// The authoriser's origin (`usize::MAX` in biscuit-auth).
const AUTHORIZER: usize = usize::MAX;

/// Spare symbol tables kept per token for requests that bring strings the
/// token's table does not have.
const SPARE_TABLES: usize = 4;

/// A check and, per query, the origins it trusts.
#[derive(Debug)]
struct PreparedCheck {
    check: Check,
    origins: Vec<TrustedOrigins>,
}

/// Symbols the platform's facts and checks use, interned once per token.
#[derive(Debug, Clone, Copy)]
struct Names {
    api: SymbolIndex,
    operation: SymbolIndex,
    required_scope: SymbolIndex,
    scope: SymbolIndex,
    resource_user: SymbolIndex,
    user: SymbolIndex,
    amount: SymbolIndex,
    resource_account: SymbolIndex,
    account: SymbolIndex,
    bank_consent: SymbolIndex,
    time: SymbolIndex,
    query: SymbolIndex,
}

/// A unary fact the authoriser adds for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FactName {
    Api,
    Operation,
    RequiredScope,
    ResourceUser,
    ResourceAccount,
    Amount,
}

impl FactName {
    /// The fact's predicate name in Datalog.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FactName::Api => "api",
            FactName::Operation => "operation",
            FactName::RequiredScope => "required_scope",
            FactName::ResourceUser => "resource_user",
            FactName::ResourceAccount => "resource_account",
            FactName::Amount => "amount",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'a> {
    Str(&'a str),
    Int(i64),
}

/// An authoriser check of a request (all `check if`, one query each).
#[derive(Debug, Clone, Copy)]
pub(crate) enum RequestCheck<'a> {
    /// `check if required_scope($s), scope($s)`
    Scope,
    /// `check if user($user)`
    User(&'a str),
    /// `check if account($account)`
    Account(&'a str),
    /// `check if bank_consent($account, $scope) trusting <bank key>`, the
    /// bank by its index in the policy's bank list.
    BankConsent {
        bank: usize,
        account: &'a str,
        scope: &'a str,
    },
}

/// Everything about a token's decision that does not depend on the request.
#[derive(Debug)]
pub(crate) struct PreparedToken {
    /// The authoriser's symbol table after loading the token (and the
    /// platform's names and bank keys).
    symbols: SymbolTable,
    /// `symbols.current_offset()`: spare tables are cut back to this.
    base_len: usize,
    /// The token's facts and rules (not run: that is per request).
    world: World,
    /// Checks of block 0, 1, ... with the origins each query trusts.
    blocks: Vec<Vec<PreparedCheck>>,
    names: Names,
    /// `check if required_scope($s), scope($s)` and its origins.
    scope_check: PreparedCheck,
    /// Origins an authoriser query without scope trusts: `{0, authoriser}`.
    authorizer_origins: TrustedOrigins,
    /// Per bank key of the policy: a rule carrying the `trusting` scope and
    /// the origins it trusts.
    banks: Vec<(Rule, TrustedOrigins)>,
    /// `allow if true` and its origins.
    allow: (Rule, TrustedOrigins),
    spare: Mutex<Vec<SymbolTable>>,
}

impl PreparedToken {
    /// Loads `biscuit` as `AuthorizerBuilder::build` does (`build_inner` and
    /// `load_and_translate_block`), once. `bank_keys` are the keys the
    /// policy's bank-consent checks trust.
    pub(crate) fn new(biscuit: &Biscuit, bank_keys: &[PublicKey]) -> Result<Self, Token> {
        Self::from_blocks(&Blocks::of(biscuit)?, bank_keys)
    }

    /// [`Self::new`] from blocks already decoded (and checked against the
    /// limits: see [`crate::token::verify`]).
    pub(crate) fn from_blocks(loaded: &Blocks, bank_keys: &[PublicKey]) -> Result<Self, Token> {
        let external = &loaded.external;
        // build_inner: the third-party signers' keys go first into the
        // authoriser's table, in block order, deduplicated.
        let mut signers: Vec<PublicKey> = Vec::new();
        let mut public_key_to_block_id: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, key) in external.iter().enumerate().skip(1) {
            if let Some(key) = key {
                let id = match signers.iter().position(|k| k == key) {
                    Some(id) => id,
                    None => {
                        signers.push(*key);
                        signers.len() - 1
                    }
                };
                public_key_to_block_id.entry(id).or_default().push(i);
            }
        }
        let mut symbols = SymbolTable::from_symbols_and_public_keys(Vec::new(), signers)?;
        let map = &public_key_to_block_id;

        // load_and_translate_block, per block.
        let mut world = World::new();
        let mut blocks = Vec::with_capacity(loaded.blocks.len());
        for (i, block) in loaded.blocks.iter().enumerate() {
            let block_symbols = loaded.symbols(i);
            let mut origin = Origin::default();
            origin.insert(i);
            let scopes = block
                .scopes
                .iter()
                .map(|s| s.convert(&mut symbols))
                .collect::<Vec<_>>();
            let block_trusted =
                TrustedOrigins::from_scopes(&scopes, &TrustedOrigins::default(), i, map);
            for fact in &block.facts {
                let fact = builder::Fact::convert_from(fact, block_symbols)?.convert(&mut symbols);
                world.facts.insert(&origin, fact);
            }
            for rule in &block.rules {
                if rule.validate_variables(block_symbols).is_err() {
                    return Err(
                        error::Logic::InvalidBlockRule(0, block_symbols.print_rule(rule)).into(),
                    );
                }
                let rule = rule.translate(block_symbols, &mut symbols)?;
                let trusted = TrustedOrigins::from_scopes(&rule.scopes, &block_trusted, i, map);
                world.rules.insert(i, &trusted, rule);
            }
            let mut checks = Vec::with_capacity(block.checks.len());
            for check in &block.checks {
                let check =
                    builder::Check::convert_from(check, block_symbols)?.convert(&mut symbols);
                // authorize_inner: a query trusts its own scopes, else the
                // block's (block 0 included: `authority_trusted_origins`).
                let origins = check
                    .queries
                    .iter()
                    .map(|q| TrustedOrigins::from_scopes(&q.scopes, &block_trusted, i, map))
                    .collect();
                checks.push(PreparedCheck { check, origins });
            }
            blocks.push(checks);
        }

        // The platform's names, so that requests intern nothing but values.
        let names = Names {
            api: symbols.insert(FactName::Api.as_str()),
            operation: symbols.insert(FactName::Operation.as_str()),
            required_scope: symbols.insert(FactName::RequiredScope.as_str()),
            scope: symbols.insert("scope"),
            resource_user: symbols.insert(FactName::ResourceUser.as_str()),
            user: symbols.insert("user"),
            amount: symbols.insert(FactName::Amount.as_str()),
            resource_account: symbols.insert(FactName::ResourceAccount.as_str()),
            account: symbols.insert("account"),
            bank_consent: symbols.insert("bank_consent"),
            time: symbols.insert("time"),
            query: symbols.insert("query"),
        };
        for value in ["read", "transfer"] {
            symbols.insert(value);
        }
        let s = Term::Variable(symbols.insert("s") as u32);

        // The authoriser block has no scopes: its queries trust
        // `from_scopes([], default, authoriser)` unless they carry their own.
        let authorizer_origins =
            TrustedOrigins::from_scopes(&[], &TrustedOrigins::default(), AUTHORIZER, map);
        let query = |body: Vec<Predicate>| Rule {
            head: Predicate::new(names.query, &[]),
            body,
            expressions: Vec::new(),
            scopes: Vec::new(),
        };
        let scope_rule = query(vec![
            Predicate::new(names.required_scope, std::slice::from_ref(&s)),
            Predicate::new(names.scope, std::slice::from_ref(&s)),
        ]);
        let scope_check = PreparedCheck {
            origins: vec![TrustedOrigins::from_scopes(
                &scope_rule.scopes,
                &authorizer_origins,
                AUTHORIZER,
                map,
            )],
            check: Check {
                queries: vec![scope_rule],
                kind: CheckKind::One,
            },
        };
        let banks = bank_keys
            .iter()
            .map(|key| {
                let mut rule = query(Vec::new());
                rule.scopes = vec![builder::Scope::PublicKey(*key).convert(&mut symbols)];
                let origins =
                    TrustedOrigins::from_scopes(&rule.scopes, &authorizer_origins, AUTHORIZER, map);
                (rule, origins)
            })
            .collect();
        let allow_rule = query(Vec::new());
        let allow_origins =
            TrustedOrigins::from_scopes(&allow_rule.scopes, &authorizer_origins, AUTHORIZER, map);

        Ok(Self {
            base_len: symbols.current_offset(),
            symbols,
            world,
            blocks,
            names,
            scope_check,
            authorizer_origins,
            banks,
            allow: (allow_rule, allow_origins),
            spare: Mutex::new(Vec::new()),
        })
    }

    /// The decision for one request, with the result (and failed checks) of
    /// `Authorizer::authorize_with_limits` for an authoriser holding
    /// `facts`, a `time` fact for now, `checks` and `allow if true`.
    pub(crate) fn authorize(
        &self,
        facts: &[(FactName, Value<'_>)],
        checks: &[RequestCheck<'_>],
        limits: &RunLimits,
        budget: u64,
    ) -> Result<usize, Token> {
        let mut strings = Interner {
            base: &self.symbols,
            extra: None,
            spare: &self.spare,
        };
        let n = self.names;
        let mut authorizer_origin = Origin::default();
        authorizer_origin.insert(AUTHORIZER);
        let mut world = self.world.clone();
        for (name, value) in facts {
            let name = match name {
                FactName::Api => n.api,
                FactName::Operation => n.operation,
                FactName::RequiredScope => n.required_scope,
                FactName::ResourceUser => n.resource_user,
                FactName::ResourceAccount => n.resource_account,
                FactName::Amount => n.amount,
            };
            let term = match value {
                Value::Str(s) => Term::Str(strings.intern(s)),
                Value::Int(i) => Term::Integer(*i),
            };
            world
                .facts
                .insert(&authorizer_origin, Fact::new(name, &[term]));
        }
        // AuthorizerBuilder::time()
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        world
            .facts
            .insert(&authorizer_origin, Fact::new(n.time, &[Term::Date(now)]));

        let mut request_checks = Vec::with_capacity(checks.len());
        for check in checks {
            let one = |body: Vec<Predicate>, scopes| Check {
                queries: vec![Rule {
                    head: Predicate::new(n.query, &[]),
                    body,
                    expressions: Vec::new(),
                    scopes,
                }],
                kind: CheckKind::One,
            };
            let prepared = match *check {
                RequestCheck::Scope => None,
                RequestCheck::User(user) => Some((
                    one(
                        vec![Predicate::new(n.user, &[Term::Str(strings.intern(user))])],
                        Vec::new(),
                    ),
                    &self.authorizer_origins,
                )),
                RequestCheck::Account(account) => Some((
                    one(
                        vec![Predicate::new(
                            n.account,
                            &[Term::Str(strings.intern(account))],
                        )],
                        Vec::new(),
                    ),
                    &self.authorizer_origins,
                )),
                RequestCheck::BankConsent {
                    bank,
                    account,
                    scope,
                } => {
                    let (template, origins) = self.banks.get(bank).ok_or(Token::InternalError)?;
                    let terms = [
                        Term::Str(strings.intern(account)),
                        Term::Str(strings.intern(scope)),
                    ];
                    Some((
                        one(
                            vec![Predicate::new(n.bank_consent, &terms)],
                            template.scopes.clone(),
                        ),
                        origins,
                    ))
                }
            };
            request_checks.push(prepared);
        }

        let meter = Meter::new(budget);
        let result = self.evaluate(world, &request_checks, strings.table(), limits, &meter);
        strings.release(self.base_len);
        result
    }

    /// `Authorizer::run` + `authorize_inner`, with the token's parts
    /// prepared.
    fn evaluate(
        &self,
        mut world: World,
        request_checks: &[Option<(Check, &TrustedOrigins)>],
        symbols: &SymbolTable,
        limits: &RunLimits,
        meter: &Meter,
    ) -> Result<usize, Token> {
        run_world(&mut world, symbols, limits, meter)?;
        let mut errors = Vec::new();
        let mut policy_result: Option<Result<usize, usize>> = None;

        // Authoriser checks.
        for (i, check) in request_checks.iter().enumerate() {
            let (check, origins) = match check {
                Some((check, origins)) => (check, std::slice::from_ref(*origins)),
                None => (&self.scope_check.check, self.scope_check.origins.as_slice()),
            };
            if !run_check(&world, check, origins, symbols, meter)? {
                errors.push(FailedCheck::Authorizer(error::FailedAuthorizerCheck {
                    check_id: i as u32,
                    rule: symbols.print_check(check),
                }));
            }
        }

        // Checks of the authority block.
        if let Some(authority) = self.blocks.first() {
            self.block_checks(&world, 0, authority, symbols, meter, &mut errors)?;
        }

        // Policies: `allow if true` only.
        let (allow, origins) = &self.allow;
        let matched = find_match(&world, allow, origins, symbols, meter)?;
        if matched {
            policy_result = Some(Ok(0));
        }

        // Checks of blocks 1..n.
        for (i, block) in self.blocks.iter().enumerate().skip(1) {
            self.block_checks(&world, i, block, symbols, meter, &mut errors)?;
        }

        match (policy_result, errors.is_empty()) {
            (Some(Ok(i)), true) => Ok(i),
            (None, _) => Err(Token::FailedLogic(error::Logic::NoMatchingPolicy {
                checks: errors,
            })),
            (Some(Ok(i)), _) => Err(Token::FailedLogic(error::Logic::Unauthorized {
                policy: error::MatchedPolicy::Allow(i),
                checks: errors,
            })),
            (Some(Err(i)), _) => Err(Token::FailedLogic(error::Logic::Unauthorized {
                policy: error::MatchedPolicy::Deny(i),
                checks: errors,
            })),
        }
    }

    fn block_checks(
        &self,
        world: &World,
        block_id: usize,
        checks: &[PreparedCheck],
        symbols: &SymbolTable,
        meter: &Meter,
        errors: &mut Vec<FailedCheck>,
    ) -> Result<(), Token> {
        for (j, prepared) in checks.iter().enumerate() {
            let ok = run_check(world, &prepared.check, &prepared.origins, symbols, meter)?;
            if !ok {
                errors.push(FailedCheck::Block(error::FailedBlockCheck {
                    block_id: block_id as u32,
                    check_id: j as u32,
                    rule: symbols.print_check(&prepared.check),
                }));
            }
        }
        Ok(())
    }
}

/// One check: true if a query succeeds (`check if`: one match; `check all`:
/// every match; `reject if`: no match).
fn run_check(
    world: &World,
    check: &Check,
    origins: &[TrustedOrigins],
    symbols: &SymbolTable,
    meter: &Meter,
) -> Result<bool, Token> {
    if origins.len() != check.queries.len() {
        return Err(Token::InternalError);
    }
    for (query, trusted) in check.queries.iter().zip(origins) {
        let res = match check.kind {
            CheckKind::One => find_match(world, query, trusted, symbols, meter)?,
            CheckKind::All => all_match(world, query, trusted, symbols, meter)?,
            CheckKind::Reject => !find_match(world, query, trusted, symbols, meter)?,
        };
        if res {
            return Ok(true);
        }
    }
    Ok(false)
}

// The engine's loops (`World::run_with_limits`, `Rule::find_match`,
// `Rule::check_match_all`, `Rule::apply`), statement by statement, with
// every fact visited and every combination evaluated charged to the meter
// (`crate::limits`, ADR 0015). A spent meter ends the loops early and turns
// the result into a run-limit refusal, so an early end never reads as
// "no match".

/// The refusal when the meter is spent.
fn spent() -> Token {
    Token::RunLimit(error::RunLimit::TooManyIterations)
}

/// Runs the world's rules to a fixpoint within the fact and iteration limits.
fn run_world(
    world: &mut World,
    symbols: &SymbolTable,
    limits: &RunLimits,
    meter: &Meter,
) -> Result<(), Token> {
    let mut index = 0;
    loop {
        let mut new_facts = FactSet::default();
        for (scope, rules) in world.rules.inner.iter() {
            for (origin, rule) in rules {
                for_each_match(
                    &world.facts,
                    rule,
                    scope,
                    symbols,
                    meter,
                    |mut found, values| {
                        if !holds(rule, &values, symbols, &world.extern_funcs)? {
                            return Ok(ControlFlow::Continue(()));
                        }
                        // `Rule::apply`: the head with the body's values.
                        let mut head = rule.head.clone();
                        for term in head.terms.iter_mut() {
                            if let Term::Variable(v) = term {
                                match values.get(v) {
                                    Some(value) => *term = value.clone(),
                                    // Refused when the token was loaded
                                    // (`validate_variables`); skipped as there.
                                    None => return Ok(ControlFlow::Continue(())),
                                }
                            }
                        }
                        found.insert(*origin);
                        new_facts.insert(&found, Fact { predicate: head });
                        Ok(ControlFlow::Continue(()))
                    },
                )?;
            }
        }
        let len = world.facts.len();
        world.facts.merge(new_facts);
        if world.facts.len() == len {
            return Ok(());
        }
        index += 1;
        if index == limits.max_iterations {
            return Err(Token::RunLimit(error::RunLimit::TooManyIterations));
        }
        if world.facts.len() >= limits.max_facts as usize {
            return Err(Token::RunLimit(error::RunLimit::TooManyFacts));
        }
    }
}

/// Visits every combination of the facts in `scope` that matches `rule`'s
/// body (`CombineIt`), each fact visited and each combination charged to
/// the meter, until `visit` breaks. A spent meter is a refusal.
fn for_each_match(
    facts: &FactSet,
    rule: &Rule,
    scope: &TrustedOrigins,
    symbols: &SymbolTable,
    meter: &Meter,
    mut visit: impl FnMut(Origin, HashMap<u32, Term>) -> Result<ControlFlow<()>, Token>,
) -> Result<(), Token> {
    let cost = match_cost(&rule.expressions);
    let facts = Metered {
        inner: facts.iterator(scope),
        meter,
    };
    let vars = MatchedVariables::new(variables(rule));
    for (origin, values) in CombineIt::new(vars, &rule.body, facts, symbols) {
        if !meter.charge(cost) || visit(origin, values)?.is_break() {
            break;
        }
    }
    if meter.spent() {
        return Err(spent());
    }
    Ok(())
}

/// Whether some combination of facts matches `rule` and its expressions
/// (`Rule::find_match`).
fn find_match(
    world: &World,
    rule: &Rule,
    scope: &TrustedOrigins,
    symbols: &SymbolTable,
    meter: &Meter,
) -> Result<bool, Token> {
    let mut found = false;
    for_each_match(&world.facts, rule, scope, symbols, meter, |_, values| {
        found = holds(rule, &values, symbols, &world.extern_funcs)?;
        Ok(if found {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        })
    })?;
    Ok(found)
}

/// Whether some combination matches `rule` and every one satisfies its
/// expressions (`check all`, `Rule::check_match_all`).
fn all_match(
    world: &World,
    rule: &Rule,
    scope: &TrustedOrigins,
    symbols: &SymbolTable,
    meter: &Meter,
) -> Result<bool, Token> {
    let (mut found, mut all) = (false, true);
    for_each_match(&world.facts, rule, scope, symbols, meter, |_, values| {
        found = true;
        all = holds(rule, &values, symbols, &world.extern_funcs)?;
        Ok(if all {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        })
    })?;
    Ok(found && all)
}

/// The variables of a rule's body (`Rule::variables_set`).
fn variables(rule: &Rule) -> HashSet<u32> {
    rule.body
        .iter()
        .flat_map(|p| {
            p.terms.iter().filter_map(|t| match t {
                Term::Variable(v) => Some(*v),
                _ => None,
            })
        })
        .collect()
}

/// Whether every expression of `rule` is true for one combination.
fn holds(
    rule: &Rule,
    values: &HashMap<u32, Term>,
    symbols: &SymbolTable,
    extern_funcs: &HashMap<String, ExternFunc>,
) -> Result<bool, Token> {
    let mut temporary = TemporarySymbolTable::new(symbols);
    for e in &rule.expressions {
        match e.evaluate(values, &mut temporary, extern_funcs) {
            Ok(Term::Bool(true)) => {}
            Ok(Term::Bool(false)) => return Ok(false),
            Ok(_) => return Err(Execution::Expression(error::Expression::InvalidType).into()),
            Err(e) => return Err(Execution::Expression(e).into()),
        }
    }
    Ok(true)
}

/// Interns a request's strings: found in the token's table (the usual case:
/// consented accounts, scopes, the user are the token's own strings) or added
/// to a copy of it, taken from the token's spares and cut back after use.
struct Interner<'a> {
    base: &'a SymbolTable,
    extra: Option<SymbolTable>,
    spare: &'a Mutex<Vec<SymbolTable>>,
}

impl Interner<'_> {
    fn intern(&mut self, s: &str) -> SymbolIndex {
        if let Some(table) = &mut self.extra {
            return table.insert(s);
        }
        if let Some(i) = self.base.get(s) {
            return i;
        }
        let mut table = self
            .spare
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_else(|| self.base.clone());
        let i = table.insert(s);
        self.extra = Some(table);
        i
    }

    fn table(&self) -> &SymbolTable {
        self.extra.as_ref().unwrap_or(self.base)
    }

    /// Returns the copy, cut back to the token's strings, to the spares.
    fn release(self, base_len: usize) {
        if let Some(mut table) = self.extra {
            drop(table.split_at(base_len));
            if table.current_offset() == base_len {
                let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
                if spare.len() < SPARE_TABLES {
                    spare.push(table);
                }
            }
        }
    }
}
