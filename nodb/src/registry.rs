//! The applications a `nodb` binary can run with `--app NAME`: each app's
//! views (`nodb dataview`, `nodb up`), and the envoys (`nodb envoy`) and
//! cascades (`nodb cascade`) that go with them. The built-in apps are
//! registered already; an application adds its own and runs the whole
//! command line with [`crate::main_with`] (see `docs/apps.md`).

use nodb_cascade::Cascade;
use nodb_dataview::app::App;
use nodb_dataview::web::Asset;
use nodb_envoy::{Config, Envoy};

/// Makes an app's envoys from the settings given with `--set KEY=VALUE`
/// (`nodb up` adds what its [`MakeServices`] says); an error is a sentence
/// naming a missing or bad setting.
pub type MakeEnvoys = fn(&Config) -> Result<Vec<Envoy>, String>;

/// Makes an app's cascaded views.
pub type MakeCascades = fn() -> Vec<Cascade>;

/// Makes the outside services an app's envoys talk to, for `nodb up` to
/// serve on its own address (the warehouse's demo supplier): the path to
/// nest them under, their routes, and the settings that point the app's
/// envoys at them, given the address's URL (`http://HOST:PORT`).
pub type MakeServices = fn(&str) -> (&'static str, axum::Router, Config);

/// One application: everything `--app NAME` runs, registered in one place.
#[derive(Clone)]
pub struct Bundle {
    /// The name given to `--app`.
    pub name: String,
    /// Its views (`nodb dataview`, `nodb up`).
    pub views: Option<fn() -> App>,
    /// Its envoys (`nodb envoy`, `nodb up`).
    pub envoys: Option<MakeEnvoys>,
    /// Its cascaded views (`nodb cascade`, `nodb up`).
    pub cascades: Option<MakeCascades>,
    /// The services `nodb up` runs beside it for its envoys.
    pub services: Option<MakeServices>,
    /// Its page and files, served by its data view (`/` and beside it).
    pub assets: &'static [Asset],
    /// Its version, from its crate (`env!("CARGO_PKG_VERSION")`), which
    /// its data views report in `/views` and `/health`, so that a new
    /// version of the reducers can be told from the old.
    pub version: Option<&'static str>,
}

impl Bundle {
    /// An app called `name` with nothing registered yet.
    pub fn new(name: &str) -> Bundle {
        Bundle {
            name: name.to_string(),
            views: None,
            envoys: None,
            cascades: None,
            services: None,
            assets: &[],
            version: None,
        }
    }
}

/// The applications this binary knows, by name.
#[derive(Clone)]
pub struct Registry {
    apps: Vec<Bundle>,
}

/// The warehouse demo, from its own crate.
fn warehouse() -> Bundle {
    Bundle {
        name: nodb_warehouse::NAME.to_string(),
        views: Some(nodb_warehouse::views::app),
        envoys: Some(nodb_warehouse::envoys::envoys),
        cascades: Some(nodb_warehouse::cascades::cascades),
        services: Some(warehouse_services),
        assets: nodb_warehouse::ASSETS,
        version: Some(nodb_warehouse::VERSION),
    }
}

/// The demo supplier under `/supplier`, and the reorder envoy pointed at it.
fn warehouse_services(base: &str) -> (&'static str, axum::Router, Config) {
    let router = nodb_warehouse::supplier::Supplier::new().router();
    let config = Config::from([("supplier".to_string(), format!("{base}/supplier"))]);
    ("/supplier", router, config)
}

impl Registry {
    /// The built-in applications: `warehouse` (views, the `reorder` envoy
    /// and its demo supplier, the `marketing` and `lowstock` cascades) and
    /// `json` (a JSON document).
    pub fn built_in() -> Registry {
        let json = Bundle {
            views: Some(nodb_dataview::json_doc::app as fn() -> App),
            version: Some(env!("CARGO_PKG_VERSION")),
            ..Bundle::new("json")
        };
        Registry { apps: vec![warehouse(), json] }
    }

    /// This registry with `bundle` (replacing an app of that name).
    #[must_use]
    pub fn with_bundle(mut self, bundle: Bundle) -> Registry {
        match self.apps.iter_mut().find(|b| b.name == bundle.name) {
            Some(b) => *b = bundle,
            None => self.apps.push(bundle),
        }
        self
    }

    /// The app called `name`, to change (created if missing).
    fn entry(&mut self, name: &str) -> &mut Bundle {
        if let Some(i) = self.apps.iter().position(|b| b.name == name) {
            return &mut self.apps[i];
        }
        self.apps.push(Bundle::new(name));
        self.apps.last_mut().expect("just pushed")
    }

    /// This registry with the views of one more application (replacing
    /// those of an app of that name).
    #[must_use]
    pub fn with(mut self, name: &str, make: fn() -> App) -> Registry {
        self.entry(name).views = Some(make);
        self
    }

    /// This registry with `name`'s envoys made by `make` (replacing any).
    #[must_use]
    pub fn with_envoys(mut self, name: &str, make: MakeEnvoys) -> Registry {
        self.entry(name).envoys = Some(make);
        self
    }

    /// This registry with `name`'s cascades made by `make` (replacing any).
    #[must_use]
    pub fn with_cascades(mut self, name: &str, make: MakeCascades) -> Registry {
        self.entry(name).cascades = Some(make);
        self
    }

    fn bundle(&self, name: &str) -> Option<&Bundle> {
        self.apps.iter().find(|b| b.name == name)
    }

    /// The version of the application called `name`, if it gave one.
    pub fn version(&self, name: &str) -> Option<&'static str> {
        self.bundle(name)?.version
    }

    /// The views of the application called `name`.
    pub fn get(&self, name: &str) -> Option<App> {
        self.bundle(name)?.views.map(|make| make())
    }

    /// The names of the applications with views, in order.
    pub fn names(&self) -> Vec<&str> {
        self.apps.iter().filter(|b| b.views.is_some()).map(|b| b.name.as_str()).collect()
    }

    /// The envoys of `name`, made with `config`: none for an app without.
    ///
    /// # Errors
    /// A missing or bad setting, named.
    pub fn envoys(&self, name: &str, config: &Config) -> Result<Vec<Envoy>, String> {
        match self.bundle(name).and_then(|b| b.envoys) {
            Some(make) => make(config),
            None => Ok(Vec::new()),
        }
    }

    /// The names of the applications with envoys.
    pub fn envoy_apps(&self) -> Vec<&str> {
        self.apps.iter().filter(|b| b.envoys.is_some()).map(|b| b.name.as_str()).collect()
    }

    /// The cascades of `name`, if it has any.
    pub fn cascades(&self, name: &str) -> Option<Vec<Cascade>> {
        let make = self.bundle(name)?.cascades?;
        Some(make()).filter(|c| !c.is_empty())
    }

    /// The names of the applications with cascades.
    pub fn cascade_apps(&self) -> Vec<&str> {
        self.apps.iter().filter(|b| b.cascades.is_some()).map(|b| b.name.as_str()).collect()
    }

    /// The page and files of `name`, served by its data view.
    pub fn assets(&self, name: &str) -> &'static [Asset] {
        self.bundle(name).map_or(&[], |b| b.assets)
    }

    /// The services `nodb up` runs beside `name` for its envoys, if any.
    pub fn services(&self, name: &str) -> Option<MakeServices> {
        self.bundle(name)?.services
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("views", &self.names())
            .field("envoys", &self.envoy_apps())
            .field("cascades", &self.cascade_apps())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_envoys(_: &Config) -> Result<Vec<Envoy>, String> {
        Err("needs --set x=1".into())
    }

    #[test]
    fn apps_add_views_envoys_and_cascades_by_name() {
        let r = Registry::built_in();
        assert!(r.get("warehouse").is_some());
        assert_eq!(r.cascades("warehouse").map(|c| c.len()), Some(2));
        assert!(r.cascades("json").is_none());
        assert!(r.envoys("warehouse", &Config::new()).is_err(), "reorder needs a supplier");
        assert!(r.envoys("json", &Config::new()).unwrap().is_empty());

        let r = r.with_envoys("json", no_envoys).with_cascades("warehouse", Vec::new);
        assert_eq!(r.envoys("json", &Config::new()).err().as_deref(), Some("needs --set x=1"));
        assert!(r.cascades("warehouse").is_none(), "replaced by none");
        assert_eq!(r.envoy_apps(), ["warehouse", "json"]);
        // An app with envoys only has no views to run.
        let r = r.with_envoys("notify", no_envoys);
        assert!(r.get("notify").is_none() && !r.names().contains(&"notify"));
        assert!(r.services("warehouse").is_some() && r.services("json").is_none());
    }
}
