//! What one request may do: [`Grant`], and [`Denied`] for a right it lacks.

use std::sync::Arc;

use crate::claims::{Claims, ReadScope, parse_read};

/// The prefix of control actions, which only admins may dispatch.
pub const CONTROL_PREFIX: &str = "@@nodb/";

/// What a request may do.
#[derive(Clone, Debug)]
pub enum Grant {
    /// The service has no keys: everything is allowed (it refuses to listen
    /// beyond loopback this way unless told to).
    Open,
    /// What a verified token's claims allow.
    Token(Arc<Claims>),
}

/// A right the request lacks (an HTTP 403).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Denied {
    /// The right, e.g. `dispatch:stock/restock`, `client:alice`,
    /// `read:orders`, `read:orders/alice/x`, `log`, `admin`.
    pub right: String,
    /// The sentence for people.
    pub message: String,
}

impl Denied {
    fn new(right: String, message: String) -> Denied {
        Denied { right, message }
    }
}

impl Grant {
    /// A grant of these verified claims.
    pub fn token(claims: Claims) -> Grant {
        Grant::Token(Arc::new(claims))
    }

    /// The claims, unless the service is open.
    pub fn claims(&self) -> Option<&Claims> {
        match self {
            Grant::Open => None,
            Grant::Token(c) => Some(c),
        }
    }

    /// When the token expires (Unix seconds); `None` when open.
    pub fn expires(&self) -> Option<u64> {
        self.claims().map(|c| c.exp)
    }

    fn is_admin(&self) -> bool {
        self.claims().is_none_or(|c| c.admin)
    }

    /// Whether the bearer may act as `client`: its own `sub`, or
    /// `<sub>.<anything>`. Nobody, admins included, acts as another client.
    ///
    /// # Errors
    /// The `client:<client>` right.
    pub fn may_act_as(&self, client: &str) -> Result<(), Denied> {
        let Some(c) = self.claims() else { return Ok(()) };
        let own = client == c.sub || (client.starts_with(c.sub.as_str()) && client[c.sub.len()..].starts_with('.'));
        if own {
            Ok(())
        } else {
            Err(Denied::new(
                format!("client:{client}"),
                format!("this token acts as client {:?} (or {:?}.*), not {client:?}", c.sub, c.sub),
            ))
        }
    }

    /// Whether the bearer may dispatch an action of type `kind` numbered
    /// by `client`.
    ///
    /// # Errors
    /// The `client:…`, `admin` (control actions) or `dispatch:<type>` right.
    pub fn may_dispatch(&self, client: &str, kind: &str) -> Result<(), Denied> {
        self.may_act_as(client)?;
        let Some(c) = self.claims() else { return Ok(()) };
        if kind.starts_with(CONTROL_PREFIX) {
            return if c.admin {
                Ok(())
            } else {
                Err(Denied::new("admin".into(), format!("control actions ({kind:?}) need an admin token")))
            };
        }
        if c.admin || c.dispatch.iter().any(|p| kind.starts_with(p.as_str())) {
            Ok(())
        } else if c.dispatch.is_empty() {
            Err(Denied::new(format!("dispatch:{kind}"), "this token is read-only: it may dispatch nothing".into()))
        } else {
            Err(Denied::new(
                format!("dispatch:{kind}"),
                format!("this token may dispatch only types starting with {:?}, not {kind:?}", c.dispatch),
            ))
        }
    }

    /// Whether the bearer may dispatch at all (open a dispatch socket).
    ///
    /// # Errors
    /// The `dispatch` right.
    pub fn may_dispatch_some(&self) -> Result<(), Denied> {
        match self.claims() {
            Some(c) if !c.admin && c.dispatch.is_empty() => {
                Err(Denied::new("dispatch".into(), "this token is read-only: it may dispatch nothing".into()))
            }
            _ => Ok(()),
        }
    }

    /// How much of view `view` the bearer may read.
    ///
    /// # Errors
    /// The `read:<view>` right.
    pub fn may_read(&self, view: &str) -> Result<ReadScope, Denied> {
        let Some(c) = self.claims() else { return Ok(ReadScope::Whole) };
        if c.admin {
            return Ok(ReadScope::Whole);
        }
        let mut found = None;
        for entry in &c.read {
            match parse_read(entry) {
                Some(("*", _)) => return Ok(ReadScope::Whole),
                Some((v, scope)) if v == view => found = Some(scope),
                _ => {}
            }
        }
        found.ok_or_else(|| Denied::new(format!("read:{view}"), format!("this token may not read view {view:?}")))
    }

    /// Whether the bearer may read the part of view `view` at `pointer`.
    ///
    /// # Errors
    /// The `read:<view><pointer>` right.
    pub fn may_read_at(&self, view: &str, pointer: &str) -> Result<ReadScope, Denied> {
        let scope = self.may_read(view)?;
        if scope.covers(pointer) {
            Ok(scope)
        } else {
            Err(Denied::new(
                format!("read:{view}{pointer}"),
                format!("this token may read only {scope} of view {view:?}, not {pointer:?}"),
            ))
        }
    }

    /// Whether the bearer may read the raw log and any client's position.
    ///
    /// # Errors
    /// The `log` right.
    pub fn may_read_log(&self) -> Result<(), Denied> {
        match self.claims() {
            Some(c) if !(c.admin || c.log) => {
                Err(Denied::new("log".into(), "reading the raw log needs a token with `log` or `admin`".into()))
            }
            _ => Ok(()),
        }
    }

    /// Whether the bearer is an admin (metrics, control actions).
    ///
    /// # Errors
    /// The `admin` right, naming `what` needed it.
    pub fn must_be_admin(&self, what: &str) -> Result<(), Denied> {
        if self.is_admin() { Ok(()) } else { Err(Denied::new("admin".into(), format!("{what} needs an admin token"))) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn grant(sub: &str, dispatch: &[&str], read: &[&str], admin: bool) -> Grant {
        Grant::token(Claims {
            sub: sub.into(),
            dispatch: dispatch.iter().map(|s| (*s).to_string()).collect(),
            read: read.iter().map(|s| (*s).to_string()).collect(),
            admin,
            exp: 1,
            ..Claims::default()
        })
    }

    #[test]
    fn examples() {
        let alice = grant("alice", &["cart/"], &["stock", "orders/alice"], false);
        assert!(alice.may_dispatch("alice", "cart/add").is_ok());
        assert!(alice.may_dispatch("alice.tab-3", "cart/add").is_ok());
        assert_eq!(alice.may_dispatch("alicex", "cart/add").unwrap_err().right, "client:alicex");
        assert_eq!(alice.may_dispatch("bob", "cart/add").unwrap_err().right, "client:bob");
        assert_eq!(alice.may_dispatch("alice", "stock/restock").unwrap_err().right, "dispatch:stock/restock");
        assert_eq!(alice.may_dispatch("alice", "@@nodb/set_state").unwrap_err().right, "admin");
        assert_eq!(alice.may_read("stock"), Ok(ReadScope::Whole));
        assert_eq!(alice.may_read("orders"), Ok(ReadScope::Subtree("/alice".into())));
        assert!(alice.may_read_at("orders", "/alice/1").is_ok());
        assert_eq!(alice.may_read_at("orders", "/bob").unwrap_err().right, "read:orders/bob");
        assert_eq!(alice.may_read("sales").unwrap_err().right, "read:sales");
        assert!(alice.may_read_log().is_err() && alice.must_be_admin("metrics").is_err());
        let admin = grant("ops", &[], &[], true);
        assert!(admin.may_dispatch("ops", "@@nodb/snapshot").is_ok());
        assert!(admin.may_dispatch("alice", "cart/add").is_err(), "admins act only as themselves");
        assert!(Grant::Open.may_dispatch("anyone", "@@nodb/set_state").is_ok());
        let reader = grant("r", &[], &["*"], false);
        assert_eq!(reader.may_dispatch_some().unwrap_err().right, "dispatch");
        assert_eq!(reader.may_read("anything"), Ok(ReadScope::Whole));
    }

    /// The rules, restated as simply as possible, for the property test.
    fn model_dispatch(c: &Claims, client: &str, kind: &str) -> bool {
        let own = client == c.sub || client.strip_prefix(&c.sub).is_some_and(|rest| rest.starts_with('.'));
        let typed = if kind.starts_with("@@nodb/") {
            c.admin
        } else {
            c.admin || c.dispatch.iter().any(|p| kind.starts_with(p.as_str()))
        };
        own && typed
    }

    fn model_read(c: &Claims, view: &str, pointer: &str) -> bool {
        c.admin
            || c.read.iter().any(|e| {
                e == "*"
                    || e == view
                    || e.strip_prefix(view).and_then(|rest| rest.strip_prefix('/')).is_some_and(|sub| {
                        let root = format!("/{sub}");
                        pointer == root || pointer.starts_with(&format!("{root}/"))
                    })
            })
    }

    proptest! {
        /// Random claims against random requests agree with the model.
        #[test]
        fn rights_follow_the_model(
            sub in "[ab]{1,2}",
            dispatch in proptest::collection::vec(prop_oneof![Just(String::new()), "[xy@]{1,3}/?", Just("@@nodb/".to_string())], 0..3),
            read in proptest::collection::vec(prop_oneof![Just("*".to_string()), "[vw]", "[vw]/[pq]{1,2}"], 0..3),
            admin in any::<bool>(),
            client in "[ab]{1,2}(\\.[ab]{1,2})?",
            kind in prop_oneof!["[xy@]{1,4}/?[a-z]{0,2}", Just("@@nodb/set_state".to_string())],
            view in "[vw]",
            pointer in prop_oneof![Just(String::new()), "(/[pq]{1,2}){1,3}"],
        ) {
            let c = Claims { sub, dispatch, read, admin, exp: 1, ..Claims::default() };
            prop_assume!(c.validate().is_ok());
            let g = Grant::token(c.clone());
            prop_assert_eq!(g.may_dispatch(&client, &kind).is_ok(), model_dispatch(&c, &client, &kind));
            prop_assert_eq!(g.may_read_at(&view, &pointer).is_ok(), model_read(&c, &view, &pointer));
            prop_assert_eq!(g.may_read_log().is_ok(), c.admin || c.log);
            prop_assert!(Grant::Open.may_dispatch(&client, &kind).is_ok());
        }
    }
}
