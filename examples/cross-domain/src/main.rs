//! Run with: `cargo xtask build-plugins && cargo run -p sfop-example-cross-domain`
//!
//! Authorisation that survives the hops between domains (ITU-T X.1149):
//!
//! 1. A **bank** has its own signing key. The platform is configured to
//!    require the bank's co-signed consent for transfers.
//! 2. A **user** (hong) authorises the **fintech app** through the OAuth pages.
//! 3. The fintech app asks the bank to co-sign consent for one account; the
//!    bank signs a third-party block, without ever seeing the platform's keys.
//! 4. The fintech app narrows the token offline for a **partner**: at most
//!    10,000 won per payment.
//! 5. The partner pays through the gateway, which enforces every block.

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let plugins =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/sfop-plugins/api");
    let outcome = runtime.block_on(sfop_example_cross_domain::run(&plugins, true))?;
    println!("\nall steps behaved as the policy says: {outcome:?}");
    Ok(())
}
