//! `/portal/search?q=…`: the APIs and documented fields whose name or
//! description holds every word of the query (case-insensitive), over each
//! API's current version, read from the catalogue like every page.

use super::*;

/// What matched in one API.
struct Hit {
    api: String,
    version: String,
    /// The API's own name or description matched.
    api_matched: bool,
    description: String,
    /// (anchor, name, type, description) of each matching field.
    fields: Vec<(String, String, String, String)>,
}

/// Whether `text` holds every one of `words` (already lowercase).
fn holds(text: &str, words: &[String]) -> bool {
    let text = text.to_lowercase();
    words.iter().all(|w| text.contains(w.as_str()))
}

fn search(apis: &[ApiEntry], words: &[String]) -> Vec<Hit> {
    let mut hits = Vec::new();
    for api in apis {
        let Some(v) = api.current().or(api.versions.first()) else {
            continue;
        };
        let m = &v.manifest;
        let docs = m.docs.clone().unwrap_or_default();
        let fields = docs
            .request
            .iter()
            .map(|f| ("req", f))
            .chain(docs.response.iter().map(|f| ("res", f)))
            .filter(|(_, f)| holds(&format!("{} {}", f.name, f.description), words))
            .map(|(side, f)| {
                (
                    format!("{side}-{}", field_anchor(&f.name)),
                    f.name.clone(),
                    f.kind.clone(),
                    f.description.clone(),
                )
            })
            .collect::<Vec<_>>();
        let routes: Vec<&str> = m.routes.iter().map(|r| r.path.as_str()).collect();
        let api_matched = holds(
            &format!("{} {} {}", api.name, m.description, routes.join(" ")),
            words,
        );
        if api_matched || !fields.is_empty() {
            hits.push(Hit {
                api: api.name.clone(),
                version: m.version.to_string(),
                api_matched,
                description: m.description.clone(),
                fields,
            });
        }
    }
    // APIs that match by name or description first, then by fields found.
    hits.sort_by_key(|h| (!h.api_matched, std::cmp::Reverse(h.fields.len())));
    hits
}

pub(super) fn search_page(ctx: &Ctx<'_>) -> PortalResponse {
    let q = parse_form(ctx.req.query.as_bytes());
    let query = form_get(&q, "q")
        .trim()
        .chars()
        .take(200)
        .collect::<String>();
    let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
    let mut body = format!(
        "<h1>Search</h1><form method=\"get\" action=\"/portal/search\" role=\"search\">\
         <label for=\"search-q\">APIs and fields <small>(names and descriptions; every word must match)</small></label>\
         <input type=\"text\" id=\"search-q\" name=\"q\" value=\"{value}\">\
         <p><button class=\"primary\" type=\"submit\">Search</button></p></form>",
        value = escape(&query),
    );
    if words.is_empty() {
        body.push_str("<p class=\"muted\">Try a field such as <code>bank_tran_id</code>, or a word such as <em>balance</em> or <em>잔액</em>.</p>");
        return ctx.page("Search", "", &body);
    }
    let hits = search(&ctx.portal.catalog.apis(), &words);
    let fields: usize = hits.iter().map(|h| h.fields.len()).sum();
    let _ = write!(
        body,
        "<p id=\"search-summary\">{} APIs and {fields} fields match <b>{}</b>.</p><div id=\"search-results\">",
        hits.len(),
        escape(&query),
    );
    for h in &hits {
        let href = encode(&h.api);
        let _ = write!(
            body,
            "<section class=\"hit\"><h3><a href=\"/portal/apis/{href}\">{name}</a> <small>{version}</small></h3><p>{description}</p>",
            name = escape(&h.api),
            version = escape(&h.version),
            description = escape(&h.description),
        );
        if !h.fields.is_empty() {
            body.push_str("<ul>");
            for (anchor, name, kind, description) in &h.fields {
                let _ = write!(
                    body,
                    "<li><a class=\"field-hit\" href=\"/portal/apis/{href}#{anchor}\"><code>{name}</code></a> <small>{kind}</small> — {description}</li>",
                    anchor = escape(anchor),
                    name = escape(name),
                    kind = escape(kind),
                    description = escape(description),
                );
            }
            body.push_str("</ul>");
        }
        body.push_str("</section>");
    }
    body.push_str("</div>");
    if hits.is_empty() {
        body.push_str("<p class=\"muted\">Nothing matches. Fewer or shorter words find more.</p>");
    }
    ctx.page("Search", "", &body)
}
