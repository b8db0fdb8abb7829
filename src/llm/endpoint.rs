//! The chat-server settings that both explaining and scoring take, turned into a client config.

use std::time::Duration;

use anyhow::{Result, bail};

use super::{ClientConfig, parse_header};

/// The chat-server settings both commands take, borrowed from their options.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint<'a> {
    /// `--base-url` (or the refiner's own server).
    pub base_url: &'a str,
    /// Model name sent with each request.
    pub model: &'a str,
    /// `--api-key-env`.
    pub api_key_env: &'a str,
    /// `--header` values, unparsed.
    pub headers: &'a [String],
    /// `--timeout` in seconds.
    pub timeout: f64,
    /// `--retries`.
    pub retries: u32,
    /// `--sglang-multi-images`.
    pub sglang_multi_images: bool,
}

impl Endpoint<'_> {
    /// The client settings, after checking `--timeout` and parsing each `--header`; the
    /// sampling settings are left at their defaults.
    pub fn client_config(&self) -> Result<ClientConfig> {
        if !(self.timeout.is_finite() && self.timeout > 0.0) {
            bail!(
                "--timeout {} must be a positive number of seconds",
                self.timeout
            );
        }
        let headers = self
            .headers
            .iter()
            .map(|h| parse_header(h))
            .collect::<Result<Vec<_>>>()?;
        let mut image_extra = serde_json::Map::new();
        if self.sglang_multi_images {
            image_extra.insert("modalities".into(), "multi-images".into());
        }
        Ok(ClientConfig {
            base_url: self.base_url.to_string(),
            model: self.model.to_string(),
            api_key_env: self.api_key_env.to_string(),
            headers,
            timeout: Duration::from_secs_f64(self.timeout),
            retries: self.retries,
            image_extra,
            ..ClientConfig::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(headers: &[String], timeout: f64) -> Endpoint<'_> {
        Endpoint {
            base_url: "http://h:1",
            model: "m",
            api_key_env: "KEY",
            headers,
            timeout,
            retries: 2,
            sglang_multi_images: true,
        }
    }

    #[test]
    fn client_config_checks_timeout_and_headers() {
        let headers = vec!["X-A: b".to_string()];
        let c = endpoint(&headers, 1.5).client_config().unwrap();
        assert_eq!((c.base_url.as_str(), c.model.as_str()), ("http://h:1", "m"));
        assert_eq!(c.api_key_env, "KEY");
        assert_eq!(c.headers, vec![("X-A".to_string(), "b".to_string())]);
        assert_eq!((c.timeout, c.retries), (Duration::from_millis(1500), 2));
        assert_eq!(c.image_extra["modalities"], "multi-images");
        assert_eq!(c.max_tokens, ClientConfig::default().max_tokens);
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let e = endpoint(&[], bad).client_config().unwrap_err();
            assert!(e.to_string().contains("--timeout"), "{e}");
        }
        assert!(
            endpoint(&["no colon".to_string()], 1.0)
                .client_config()
                .is_err()
        );
    }
}
