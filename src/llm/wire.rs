//! Reading what servers send: chat-completion bodies, `Retry-After` values, and error text.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::store::TokenUsage;

/// The causes of an error on one line, without reqwest's outer "error sending request for url"
/// (the caller names the URL), e.g. "client error (Connect): tcp connect error: Connection refused".
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut src = e.source();
    while let Some(c) = src {
        parts.push(c.to_string());
        src = c.source();
    }
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}

/// The start of a body, on one line, for error messages.
pub(super) fn snippet(text: &str) -> String {
    let one: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &one[..i]),
        None if one.is_empty() => "(empty body)".into(),
        None => one,
    }
}

/// Content, usage and finish reason of a chat-completion body.
pub fn parse_completion(text: &str) -> Result<(String, Option<TokenUsage>, Option<String>)> {
    let v: Value = serde_json::from_str(text).context("not JSON")?;
    let choice = v
        .get("choices")
        .and_then(|c| c.get(0))
        .context("no choices[0]")?;
    let message = choice.get("message").context("no choices[0].message")?;
    let content = match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        // Some gateways answer with content parts.
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        Some(Value::Null) | None => String::new(),
        Some(other) => bail!("choices[0].message.content is {other}"),
    };
    let usage = v.get("usage").filter(|u| u.is_object()).map(|u| {
        let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
        let (p, c) = (n("prompt_tokens"), n("completion_tokens"));
        TokenUsage {
            prompt_tokens: p,
            completion_tokens: c,
            total_tokens: u
                .get("total_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(p + c),
        }
    });
    let finish = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .map(String::from);
    Ok((content, usage, finish))
}

/// A `Retry-After` value (delay seconds, fractional accepted, or an HTTP date) as a wait from `now`.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e7)));
    }
    let at = http_date(value)?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(at.saturating_sub(now)))
}

/// Seconds since the epoch of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn http_date(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, mon, year, hms, "GMT"] = parts.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = MONTHS.iter().position(|x| x == mon)? as i64 + 1;
    let (d, y): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let t: Vec<i64> = hms
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let [hh, mm, ss] = t.as_slice() else {
        return None;
    };
    // Days from 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    let yy = if m <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}
