//! The progress bar of long jobs (caching, explaining, scoring): one look everywhere.

/// A progress bar over `len` items on stderr when `enabled`, titled `title`, counting `unit`
/// (`per_sec` shows a rate, as caching does).
pub fn bar(
    enabled: bool,
    len: usize,
    title: &str,
    unit: &str,
    per_sec: bool,
) -> Option<indicatif::ProgressBar> {
    if !enabled {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    let rate = if per_sec { " · {per_sec}" } else { "" };
    let msg = if per_sec { "" } else { " · {wide_msg}" };
    let template =
        format!("{{spinner}} {title} [{{bar:30}}] {{pos}}/{{len}} {unit}{rate} · eta {{eta}}{msg}");
    // A bad template only loses the styling, never the run.
    if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    Some(bar)
}

#[cfg(test)]
mod tests {
    #[test]
    fn bar_only_when_enabled() {
        assert!(super::bar(false, 3, "explain", "features", false).is_none());
        let bar = super::bar(true, 3, "score iou", "features", false).unwrap();
        assert_eq!(bar.length(), Some(3));
    }
}
