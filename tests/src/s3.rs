//! A real S3-compatible server on loopback for the snapshot tests: moto's
//! `moto_server` (from `$MOTO_SERVER`, else `PATH`; `./test` installs it in
//! `target/venv`), on a port chosen at run time, killed when dropped.
//!
//! A data view reaches it through `--snapshots s3://BUCKET/PREFIX` and the
//! environment of [`S3Server::env`].

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{get, send};

/// The S3-compatible server, killed when dropped.
pub struct S3Server {
    child: Child,
    url: String,
}

impl S3Server {
    /// Starts `moto_server` and waits (up to 10 s) until it answers.
    ///
    /// # Panics
    /// If it cannot be started or does not answer.
    pub fn start() -> S3Server {
        let bin = std::env::var_os("MOTO_SERVER").unwrap_or_else(|| "moto_server".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server (pip install 'moto[server]'; ./test installs it in target/venv)");
        let server = S3Server { child, url: format!("http://127.0.0.1:{port}") };
        for _ in 0..200 {
            if get(&server.url).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("moto_server did not start on port {port}");
    }

    /// Its endpoint, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Creates the bucket `name`.
    ///
    /// # Panics
    /// If the server does not create it.
    pub fn create_bucket(&self, name: &str) {
        let put = send("PUT", &format!("{}/{name}", self.url), &[], b"").unwrap();
        assert_eq!(put.status, 200, "create the bucket {name}: {}", put.body);
    }

    /// The environment a data view needs to reach this server with
    /// `--snapshots s3://…`.
    pub fn env(&self) -> [(&'static str, &str); 5] {
        [
            ("AWS_ENDPOINT", self.url.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
        ]
    }

    /// The keys in `bucket`, from a ListObjectsV2 answer (the first 1000).
    ///
    /// # Panics
    /// If the server does not answer.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let body = get(&format!("{}/{bucket}?list-type=2", self.url)).unwrap().body;
        body.split("<Key>").skip(1).filter_map(|s| s.split_once("</Key>")).map(|(k, _)| k.to_string()).collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
