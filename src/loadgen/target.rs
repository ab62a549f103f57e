//! Where the load goes. A load generator pointed at the wrong host is a
//! denial of service, so only loopback is accepted unless the caller says
//! `--allow-remote`.

use std::net::IpAddr;

/// A service's base URL (`http://host:port`, no path), checked once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub base: String,
    /// `Authorization: Bearer` for the relay's operator endpoints (`/stats`).
    pub operator_token: Option<String>,
}

impl Target {
    /// Parses `url`; refuses anything but plain HTTP to a loopback host
    /// unless `allow_remote`.
    pub fn parse(url: &str, allow_remote: bool) -> anyhow::Result<Target> {
        let uri: hyper::Uri = url.parse().map_err(|e| {
            anyhow::anyhow!("`{url}` is not a URL ({e}): give e.g. http://127.0.0.1:3000")
        })?;
        anyhow::ensure!(
            uri.scheme_str() == Some("http"),
            "`{url}`: only http:// targets (no TLS stack: run it beside the relay)"
        );
        let Some(host) = uri.host() else {
            anyhow::bail!("`{url}` names no host: give e.g. http://127.0.0.1:3000");
        };
        anyhow::ensure!(
            uri.path() == "/" || uri.path().is_empty(),
            "`{url}`: give the base URL only (the load goes to <base>/relay)"
        );
        anyhow::ensure!(
            allow_remote || is_loopback(host),
            "`{url}` is not on this host: the load generator sends only to loopback \
             (127.0.0.1, ::1, localhost) unless given --allow-remote"
        );
        let authority = uri.authority().map_or(host, |a| a.as_str());
        Ok(Target {
            base: format!("http://{authority}"),
            operator_token: None,
        })
    }

    pub fn with_token(mut self, token: Option<String>) -> Target {
        self.operator_token = token;
        self
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_unless_allowed() {
        let t = Target::parse("http://127.0.0.1:3000", false).expect("loopback");
        assert_eq!(t.base, "http://127.0.0.1:3000");
        assert!(Target::parse("http://[::1]:3000/", false).is_ok());
        assert!(Target::parse("http://localhost:3000", false).is_ok());
        let err = Target::parse("http://10.0.0.1:3000", false).expect_err("remote");
        assert!(err.to_string().contains("--allow-remote"), "{err}");
        assert!(Target::parse("http://10.0.0.1:3000", true).is_ok());
        assert!(Target::parse("https://127.0.0.1:3000", false).is_err());
        assert!(Target::parse("http://127.0.0.1:3000/relay", false).is_err());
        assert!(Target::parse("not a url", false).is_err());
    }
}
