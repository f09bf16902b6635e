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
    let hits = if words.is_empty() {
        Vec::new()
    } else {
        search(&ctx.portal.catalog.apis(), &words)
    };
    let fields: usize = hits.iter().map(|h| h.fields.len()).sum();
    let body = maud::html! {
        h1 { "Search" }
        form method="get" action="/portal/search" role="search" {
            label for="search-q" {
                "APIs and fields " small { "(names and descriptions; every word must match)" }
            }
            input type="text" id="search-q" name="q" value=(query);
            p { button.primary type="submit" { "Search" } }
        }
        @if words.is_empty() {
            p.muted {
                "Try a field such as " code { "bank_tran_id" } ", or a word such as "
                em { "balance" } " or " em { "잔액" } "."
            }
        } @else {
            p #search-summary { (hits.len()) " APIs and " (fields) " fields match " b { (query) } "." }
            div #search-results {
                @for h in &hits {
                    @let href = encode(&h.api);
                    section.hit {
                        h3 { a href={ "/portal/apis/" (href) } { (h.api) } " " small { (h.version) } }
                        p { (h.description) }
                        @if !h.fields.is_empty() {
                            ul {
                                @for (anchor, name, kind, description) in &h.fields {
                                    li {
                                        a.field-hit href={ "/portal/apis/" (href) "#" (anchor) } { code { (name) } }
                                        " " small { (kind) } " — " (description)
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if hits.is_empty() {
                p.muted { "Nothing matches. Fewer or shorter words find more." }
            }
        }
    };
    ctx.page("Search", "", body)
}
