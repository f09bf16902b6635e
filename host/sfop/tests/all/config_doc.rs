//! docs/configuration.md tells the truth: its TOML block is read by the
//! platform's own parser (a renamed or removed key fails), and every key of
//! the defaults is named in it.

use anyhow::{Context, Result};

fn doc() -> Result<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
    std::fs::read_to_string(path).context("docs/configuration.md")
}

fn toml_block(doc: &str) -> Result<&str> {
    let start = doc.find("```toml\n").context("no ```toml block")? + "```toml\n".len();
    let len = doc[start..].find("```").context("unterminated block")?;
    Ok(&doc[start..start + len])
}

#[test]
fn the_documented_file_is_the_default_configuration() -> Result<()> {
    let doc = doc()?;
    let parsed: sfop::Config =
        toml::from_str(toml_block(&doc)?).context("the documented file does not parse")?;
    assert_eq!(parsed, sfop::Config::default());
    Ok(())
}

#[test]
fn every_default_key_is_documented() -> Result<()> {
    let doc = doc()?;
    let defaults = toml::Value::try_from(sfop::Config::default())?;
    let mut missing = Vec::new();
    let mut stack = vec![(String::new(), defaults)];
    while let Some((prefix, value)) = stack.pop() {
        let toml::Value::Table(table) = value else {
            continue;
        };
        for (key, value) in table {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            let named = match &value {
                toml::Value::Table(_) => doc.contains(&format!("[{path}]")) || doc.contains(&path),
                toml::Value::Array(_) => doc.contains(&format!("[[{path}]]")),
                _ => doc.contains(&format!("\n{key} = ")) || doc.contains(&format!("# {key} = ")),
            };
            if !named {
                missing.push(path.clone());
            }
            stack.push((path, value));
        }
    }
    assert!(
        missing.is_empty(),
        "not in docs/configuration.md: {missing:?}"
    );
    Ok(())
}
