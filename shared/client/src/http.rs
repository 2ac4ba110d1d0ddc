//! The HTTP side shared by [`crate::Chronicler`] and [`crate::ViewClient`]:
//! a given `reqwest` client or, by default, one for the whole process made
//! on first use (so creating a client does no I/O and cannot fail), and
//! the reading of error answers.

use std::sync::OnceLock;

use crate::error::{Error, Refusal, error_chain};

/// A `reqwest` client, given or the process's default.
#[derive(Clone, Debug, Default)]
pub(crate) struct Http(Option<reqwest::Client>);

impl Http {
    /// `client`, or the default one when `None`.
    pub(crate) fn new(client: Option<reqwest::Client>) -> Http {
        Http(client)
    }

    /// The client, for a request to `url`.
    ///
    /// # Errors
    /// If the default client cannot be made (no TLS roots on this system).
    pub(crate) fn client(&self, url: &str) -> Result<&reqwest::Client, Error> {
        if let Some(client) = &self.0 {
            return Ok(client);
        }
        static DEFAULT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
        DEFAULT
            .get_or_init(|| reqwest::Client::builder().build().map_err(|e| error_chain(&e)))
            .as_ref()
            .map_err(|reason| Error::Unreachable { url: url.to_string(), reason: format!("no HTTP client: {reason}") })
    }
}

impl Http {
    /// `GET url`, whatever the status.
    ///
    /// # Errors
    /// If the request does not get through.
    pub(crate) async fn get(&self, url: &url::Url, bearer: Option<&str>) -> Result<reqwest::Response, Error> {
        let mut request = self.client(url.as_str())?.get(url.clone());
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        request.send().await.map_err(|e| Error::unreachable(url.as_str(), &e))
    }
}

/// A refusal from an error answer (reading its body).
pub(crate) async fn refusal(url: &str, resp: reqwest::Response) -> Refusal {
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap_or_default();
    Refusal::from_body(url, status, &body)
}

/// An answer that could not be read as the protocol.
pub(crate) fn protocol(url: &str, e: &reqwest::Error) -> Error {
    Error::Protocol { url: url.to_string(), reason: error_chain(e) }
}
