//! Where the client says what it is doing that a user would otherwise take for a hang (a long
//! wait that the server asked for).

use std::sync::Arc;
use std::time::Duration;

use super::ChatClient;

/// A wait this long (or one cut short of what the server asked) is announced.
const ANNOUNCED_WAIT: Duration = Duration::from_secs(10);

/// What receives a notice line.
type Sink = dyn Fn(&str) + Send + Sync;

/// A sink for one-line notices; the default says nothing (the workbench owns its screen).
#[derive(Clone, Default)]
pub struct Notices(Option<Arc<Sink>>);

impl Notices {
    /// Notices passed to `f`.
    pub fn to(f: impl Fn(&str) + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(f)))
    }

    /// Notices printed on stderr (batch commands).
    pub fn stderr() -> Self {
        Self::to(|line| eprintln!("{line}"))
    }

    /// Say `line`, if anyone listens.
    pub fn say(&self, line: &str) {
        if let Some(f) = &self.0 {
            f(line);
        }
    }
}

impl std::fmt::Debug for Notices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Notices(on)"
        } else {
            "Notices(off)"
        })
    }
}

/// Two sinks are equal when both are off or both are the same sink.
impl PartialEq for Notices {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl ChatClient {
    /// Say so when the wait before the next attempt is long, or shorter than the server asked.
    pub(super) fn announce(
        &self,
        pause: Duration,
        hint: Option<Duration>,
        attempt: u32,
        tag: Option<&str>,
    ) {
        let capped = hint.is_some_and(|h| h > pause);
        if pause < ANNOUNCED_WAIT && !capped {
            return;
        }
        let who = tag.map_or_else(|| "request".to_string(), |t| format!("feature {t}"));
        let asked = match hint {
            Some(h) if capped => format!(
                "the server asked to wait {:.0} s (Retry-After), more than the longest wait of {:.0} s; ",
                h.as_secs_f64(),
                self.cfg.max_wait.as_secs_f64()
            ),
            Some(_) => "the server asked to wait (Retry-After); ".into(),
            None => String::new(),
        };
        self.cfg.notices.say(&format!(
            "{who}: {asked}waiting {:.1} s before attempt {}",
            pause.as_secs_f64(),
            attempt + 1
        ));
    }
}
