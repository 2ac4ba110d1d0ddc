//! The browser side, built into the binary: the client library `/nodb.js`
//! and its modules `/nodb/*.js` (with `/nodb.d.ts`) for every app, and an
//! application's own page and files ([`Asset`]s, such as the warehouse's demo
//! page at `/`), or else a small index of the views.
//!
//! The client's files live in the repository's `web/` folder and are compiled in, so
//! a single `nodb` binary serves them with nothing else to install. A page
//! imports `/nodb.js`, which imports its modules by relative paths
//! (`./nodb/store.js`), so they are served at the paths they have in `web/`.

use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

/// The client library's entry point.
pub const NODB_JS: &str = include_str!("../../web/nodb.js");
/// The client library's ES modules by URL path: the entry point and the
/// modules it imports (`web/nodb/`), each served as JavaScript.
pub const CLIENT_MODULES: &[(&str, &str)] = &[
    ("/nodb.js", NODB_JS),
    ("/nodb/patch.js", include_str!("../../web/nodb/patch.js")),
    ("/nodb/connection.js", include_str!("../../web/nodb/connection.js")),
    ("/nodb/outbox.js", include_str!("../../web/nodb/outbox.js")),
    ("/nodb/store.js", include_str!("../../web/nodb/store.js")),
    ("/nodb/redux.js", include_str!("../../web/nodb/redux.js")),
    ("/nodb/devtools.js", include_str!("../../web/nodb/devtools.js")),
];
/// Its TypeScript declarations.
pub const NODB_D_TS: &str = include_str!("../../web/nodb.d.ts");

/// A file an application serves from the data view (its page, say),
/// compiled into the binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Asset {
    /// The URL path (`/` for the page).
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// The file.
    pub body: &'static str,
}

/// A file with its content type; browsers revalidate it on every load, so a
/// new binary's files are picked up at once.
fn file(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// The routes for the client library and the app's `assets`; an app
/// without a page of its own (no asset at `/`) gets a small index of its
/// views there.
pub fn router<S: Clone + Send + Sync + 'static>(assets: &'static [Asset], views: Vec<String>) -> Router<S> {
    let js = "text/javascript; charset=utf-8";
    let mut router =
        Router::new().route("/nodb.d.ts", get(|| async { file("application/typescript; charset=utf-8", NODB_D_TS) }));
    for &(path, body) in CLIENT_MODULES {
        router = router.route(path, get(move || async move { file(js, body) }));
    }
    for asset in assets {
        router = router.route(asset.path, get(move || async move { file(asset.content_type, asset.body) }));
    }
    if assets.iter().any(|a| a.path == "/") {
        router
    } else {
        let page = index_page(&views);
        router.route("/", get(move || async move { Html(page) }))
    }
}

/// A page listing the views, for apps without a page of their own.
fn index_page(views: &[String]) -> String {
    let items: String = views
        .iter()
        .map(|v| {
            let v = escape(v);
            format!("<li><a href=\"/views/{v}\">{v}</a></li>")
        })
        .collect();
    format!(
        "<!doctype html><meta charset=utf-8><title>nodb</title>\
         <style>body{{font:16px system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}}</style>\
         <h1>nodb</h1><p>This data view serves these views; the client library is at \
         <a href=\"/nodb.js\">/nodb.js</a>.</p><ul>{items}</ul>"
    )
}

/// Escapes text for HTML.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The relative imports (`from './x.js'`) of a module's source.
    fn relative_imports(source: &str) -> Vec<&str> {
        source
            .lines()
            .filter(|line| line.starts_with("import ") || line.starts_with("export "))
            .filter_map(|line| line.split(" from ").nth(1))
            .map(|s| s.trim().trim_end_matches(';').trim_matches(|c| c == '\'' || c == '"'))
            .filter(|s| s.starts_with("./"))
            .collect()
    }

    #[test]
    fn every_module_the_client_imports_is_served() {
        let served: Vec<&str> = CLIENT_MODULES.iter().map(|&(path, _)| path).collect();
        let mut imported = 0;
        for &(path, source) in CLIENT_MODULES {
            let dir = &path[..=path.rfind('/').unwrap()];
            for import in relative_imports(source) {
                let target = format!("{dir}{}", &import[2..]);
                assert!(served.contains(&target.as_str()), "{path} imports {import}, which is not served");
                imported += 1;
            }
        }
        assert!(imported >= 5, "only {imported} imports found: does relative_imports still read the modules?");
    }

    #[test]
    fn the_index_escapes_view_names() {
        let page = index_page(&["a<b".into()]);
        assert!(page.contains("a&lt;b") && !page.contains("a<b"), "{page}");
    }
}
