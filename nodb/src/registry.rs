//! The applications a `nodb` binary can run with `--app NAME`: each app's
//! views (`nodb dataview`, `nodb up`), and the envoys (`nodb envoy`) and
//! cascades (`nodb cascade`) that go with them. The built-in apps are
//! registered already; an application adds its own and runs the whole
//! command line with [`crate::main_with`] (see `docs/apps.md`).

use nodb_cascade::Cascade;
use nodb_dataview::apps::App;
use nodb_envoy::Envoy;
use nodb_envoy::apps::Config;

/// Makes an app's envoys from the settings given with `--set KEY=VALUE`
/// (`nodb up` sets `supplier`); an error is a sentence naming a missing or
/// bad setting.
pub type MakeEnvoys = fn(&Config) -> Result<Vec<Envoy>, String>;

/// Makes an app's cascaded views.
pub type MakeCascades = fn() -> Vec<Cascade>;

/// The applications this binary knows, by name.
#[derive(Clone)]
pub struct Registry {
    views: nodb_dataview::apps::Registry,
    envoys: Vec<(String, MakeEnvoys)>,
    cascades: Vec<(String, MakeCascades)>,
}

fn warehouse_envoys(config: &Config) -> Result<Vec<Envoy>, String> {
    nodb_envoy::apps::built_in("warehouse", config)
}

fn warehouse_cascades() -> Vec<Cascade> {
    nodb_cascade::apps::built_in("warehouse").unwrap_or_default()
}

/// Puts `(name, value)` in `list`, replacing an entry of that name.
fn put<T>(list: &mut Vec<(String, T)>, name: &str, value: T) {
    list.retain(|(n, _)| n != name);
    list.push((name.to_string(), value));
}

impl Registry {
    /// The built-in applications: `warehouse` (views, the `reorder` envoy,
    /// the `marketing` and `lowstock` cascades) and `json`.
    pub fn built_in() -> Registry {
        Registry {
            views: nodb_dataview::apps::Registry::built_in(),
            envoys: vec![("warehouse".into(), warehouse_envoys as MakeEnvoys)],
            cascades: vec![("warehouse".into(), warehouse_cascades as MakeCascades)],
        }
    }

    /// This registry with the views of one more application (replacing
    /// those of an app of that name).
    #[must_use]
    pub fn with(mut self, name: &str, make: fn() -> App) -> Registry {
        self.views = self.views.with(name, make);
        self
    }

    /// This registry with `name`'s envoys made by `make` (replacing any).
    #[must_use]
    pub fn with_envoys(mut self, name: &str, make: MakeEnvoys) -> Registry {
        put(&mut self.envoys, name, make);
        self
    }

    /// This registry with `name`'s cascades made by `make` (replacing any).
    #[must_use]
    pub fn with_cascades(mut self, name: &str, make: MakeCascades) -> Registry {
        put(&mut self.cascades, name, make);
        self
    }

    /// The views of the application called `name`.
    pub fn get(&self, name: &str) -> Option<App> {
        self.views.get(name)
    }

    /// The names of the applications with views, in order.
    pub fn names(&self) -> Vec<&str> {
        self.views.names()
    }

    /// The envoys of `name`, made with `config`: none for an app without.
    ///
    /// # Errors
    /// A missing or bad setting, named.
    pub fn envoys(&self, name: &str, config: &Config) -> Result<Vec<Envoy>, String> {
        match self.envoys.iter().find(|(n, _)| n == name) {
            Some((_, make)) => make(config),
            None => Ok(Vec::new()),
        }
    }

    /// The names of the applications with envoys.
    pub fn envoy_apps(&self) -> Vec<&str> {
        self.envoys.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The cascades of `name`, if it has any.
    pub fn cascades(&self, name: &str) -> Option<Vec<Cascade>> {
        let (_, make) = self.cascades.iter().find(|(n, _)| n == name)?;
        Some(make()).filter(|c| !c.is_empty())
    }

    /// The names of the applications with cascades.
    pub fn cascade_apps(&self) -> Vec<&str> {
        self.cascades.iter().map(|(n, _)| n.as_str()).collect()
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
    }
}
