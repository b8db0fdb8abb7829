//! With `GLINT_RECORD_PICTURES=DIR`, every picture sent with a terminal protocol is also written
//! to `DIR` as the exact pixels encoded, so a screenshot of the terminal can be checked against
//! what the workbench meant to show (the end-to-end terminal tests do).
//!
//! `DIR/pictures.tsv` gets a `graphics` line with the start-up status line first, then one line
//! per picture: `N  column  row  cell-width  cell-height  protocol`, its pixels in `DIR/N.png`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use image::DynamicImage;
use ratatui::layout::Rect;
use ratatui_image::FontSize;
use ratatui_image::picker::ProtocolType;

/// The environment variable naming the folder.
pub const RECORD_VAR: &str = "GLINT_RECORD_PICTURES";

static NEXT: AtomicUsize = AtomicUsize::new(0);
static LIST: Mutex<()> = Mutex::new(());

fn dir() -> Option<PathBuf> {
    std::env::var_os(RECORD_VAR).map(PathBuf::from)
}

fn append(line: &str) {
    let Some(dir) = dir() else { return };
    let _one_writer = LIST.lock();
    // A recording is a test aid: a folder that cannot be written only loses the recording.
    let _ = std::fs::create_dir_all(&dir).and_then(|()| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("pictures.tsv"))?;
        writeln!(f, "{line}")
    });
}

/// Note the start-up status line (the graphics chosen).
pub fn status(line: &str) {
    append(&format!("graphics\t{line}"));
}

/// Note `img`, about to be sent with `protocol` at `area`'s top-left cell.
pub fn picture(img: &DynamicImage, area: Rect, cell: FontSize, protocol: ProtocolType) {
    let Some(dir) = dir() else { return };
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let _ = std::fs::create_dir_all(&dir);
    if img.save(dir.join(format!("{n}.png"))).is_ok() {
        let p = format!("{protocol:?}").to_lowercase();
        append(&format!(
            "{n}\t{}\t{}\t{}\t{}\t{p}",
            area.x, area.y, cell.width, cell.height
        ));
    }
}
