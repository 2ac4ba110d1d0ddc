//! The history page's files (`web/inspect/`), compiled into the binary and
//! served at `/inspect` and `/inspect/<file>`. Public, like the client
//! library: the page holds no data, and every read it makes carries the
//! token from its `#token=` fragment.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::server::AppState;

/// The page's files: URL path, `Content-Type`, body.
pub const PAGE_FILES: &[(&str, &str, &str)] = &[
    ("/inspect", HTML, include_str!("../../../web/inspect/index.html")),
    ("/inspect/inspect.css", CSS, include_str!("../../../web/inspect/inspect.css")),
    ("/inspect/main.js", JS, include_str!("../../../web/inspect/main.js")),
    ("/inspect/api.js", JS, include_str!("../../../web/inspect/api.js")),
    ("/inspect/actions.js", JS, include_str!("../../../web/inspect/actions.js")),
    ("/inspect/tree.js", JS, include_str!("../../../web/inspect/tree.js")),
];

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// A file; browsers revalidate it on every load, so a new binary's page is
/// picked up at once.
fn file(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// The routes of the page's files.
pub fn router() -> Router<AppState> {
    let mut router = Router::new();
    for &(path, content_type, body) in PAGE_FILES {
        router = router.route(path, get(move || async move { file(content_type, body) }));
    }
    router
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_page_loads_is_served() {
        let served: Vec<&str> = PAGE_FILES.iter().map(|&(path, _, _)| path).collect();
        let mut found = 0;
        for &(path, _, source) in PAGE_FILES {
            // `from './x.js'` in modules, `src="/inspect/x.js"` and
            // `href="/inspect/x.css"` in the page.
            let imports =
                source.split(" from './").skip(1).map(|rest| format!("/inspect/{}", &rest[..rest.find('\'').unwrap()]));
            let linked = source
                .split("=\"/inspect/")
                .skip(1)
                .map(|rest| format!("/inspect/{}", &rest[..rest.find('"').unwrap()]));
            for target in imports.chain(linked) {
                assert!(served.contains(&target.as_str()), "{path} loads {target}, which is not served");
                found += 1;
            }
        }
        assert!(found >= 5, "only {found} imports found: does the test still read the files?");
    }
}
