//! Setup shared by the batch commands that call a chat server (`explain`, `score`): the client
//! settings from their flags, the async runtime, the progress bar and the printed result.

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::client::{ClientConfig, parse_header};

/// The chat-server flags both commands take, borrowed from their arguments.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Endpoint<'a> {
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

/// Run `job` to the end on a fresh multi-threaded runtime (the CLI has no runtime of its own).
pub(crate) fn block_on<T>(job: impl Future<Output = Result<T>>) -> Result<T> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(job)
}

/// A progress bar over `len` features on stderr when `enabled`, titled `title`.
pub(crate) fn progress_bar(
    enabled: bool,
    len: usize,
    title: &str,
) -> Option<indicatif::ProgressBar> {
    if !enabled {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    let template = format!(
        "{{spinner}} {title} [{{bar:30}}] {{pos}}/{{len}} features · eta {{eta}} · {{wide_msg}}"
    );
    // A bad template only loses the styling, never the run.
    if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    Some(bar)
}

/// Print `value` as pretty JSON when `json` (for scripts), else the line(s) from `text`.
pub(crate) fn print_or_json<T: serde::Serialize>(
    json: bool,
    value: &T,
    text: impl FnOnce() -> String,
) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        println!("{}", text());
    }
    Ok(())
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

    #[test]
    fn runtime_and_bar() {
        assert_eq!(block_on(async { Ok(7) }).unwrap(), 7);
        assert!(block_on(async { Err::<(), _>(anyhow::anyhow!("x")) }).is_err());
        assert!(progress_bar(false, 3, "explain").is_none());
        let bar = progress_bar(true, 3, "score iou").unwrap();
        assert_eq!(bar.length(), Some(3));
    }
}
