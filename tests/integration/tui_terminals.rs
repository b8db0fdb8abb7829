//! The workbench in real terminals: xterm as a VT340 (sixel) under Xvfb, directly and through
//! tmux with passthrough. A screenshot's thumbnails must hold the pixels the workbench encoded
//! (it records them with `GLINT_RECORD_PICTURES`), not blank or placeholder cells.
//!
//! Skipped, saying why, where Xvfb, xterm, xdotool, xwd or tmux is missing, unless
//! `GLINT_REQUIRE_TERMINALS=1` (CI sets it, after installing them).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use image::{RgbImage, RgbaImage};

/// Terminal size in cells, room for a feature page's six thumbnails; xterm's `fixed` font is
/// 6x13 pixels a cell, 720x520 in all.
const COLS: u16 = 120;
const ROWS: u16 = 40;

/// Mean absolute difference (0-255, over the channels of the picture's opaque pixels) below
/// which a thumbnail counts as shown: sixel's palette costs a few levels, while a blank or
/// placeholder cell is off by a hundred or more.
const SHOWN: f64 = 24.0;

/// Pictures a feature page of the small store shows.
const THUMBS: usize = 6;

/// Child processes killed when the test ends, however it ends.
struct Kill(Vec<Child>);

impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Whether the terminal tools are here; without them the test is skipped, or fails when
/// `GLINT_REQUIRE_TERMINALS=1`.
fn terminals_present(test: &str) -> bool {
    let missing: Vec<&str> = ["Xvfb", "xterm", "xdotool", "xwd", "tmux"]
        .into_iter()
        .filter(|tool| {
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .map_or(true, |s| !s.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "{test}: {} not installed (apt-get install xvfb xterm xdotool x11-apps tmux; .ci/run does)",
        missing.join(", ")
    );
    assert!(
        std::env::var("GLINT_REQUIRE_TERMINALS").as_deref() != Ok("1"),
        "GLINT_REQUIRE_TERMINALS=1 but {why}"
    );
    eprintln!("skipping {why}");
    false
}

/// A copy in `into` of the small store, built once: a store is opened by one process at a time.
fn store(into: &Path) -> PathBuf {
    static BUILT: OnceLock<tempfile::TempDir> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("store");
        crate::common::ok(
            crate::common::glint()
                .args(["--batch", "cache", "--limit", "6"])
                .args(["--top-n", "6", "--out", out.to_str().unwrap()]),
        );
        dir
    });
    let copy = into.join("store");
    crate::common::ok(
        Command::new("cp")
            .arg("-r")
            .arg(built.path().join("store"))
            .arg(&copy),
    );
    copy
}

/// A tmux server stopped when the test ends.
struct TmuxServer(String);

impl Drop for TmuxServer {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.0, "kill-server"])
            .stderr(Stdio::null())
            .status();
    }
}

/// An X server on a free display, e.g. `:57`.
fn xvfb(procs: &mut Kill) -> String {
    // The tests of this binary run at once: each takes its own number.
    static TAKEN: AtomicU32 = AtomicU32::new(0);
    let mut n = 50 + std::process::id() % 400 + 10 * TAKEN.fetch_add(1, Ordering::Relaxed);
    while Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
        || Path::new(&format!("/tmp/.X{n}-lock")).exists()
    {
        n += 1;
    }
    let display = format!(":{n}");
    let child = Command::new("Xvfb")
        .args([&display, "-screen", "0", "800x600x24", "-nolisten", "tcp"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    procs.0.push(child);
    let socket = format!("/tmp/.X11-unix/X{n}");
    wait_until(Duration::from_secs(20), || {
        Path::new(&socket).exists().then_some(())
    })
    .unwrap_or_else(|| panic!("Xvfb {display} did not start"));
    display
}

/// Poll `ready` until it gives something or `limit` passes.
fn wait_until<T>(limit: Duration, mut ready: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = ready() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The screen of `display`, read from `xwd`'s dump (32-bit TrueColor, as Xvfb's depth 24 is).
fn screenshot(display: &str) -> Option<RgbImage> {
    let out = Command::new("xwd")
        .args(["-root", "-silent", "-display", display])
        .output()
        .ok()?;
    parse_xwd(&out.stdout)
}

/// An XWD file: a header of 25 big-endian words, the window name, the colour map, then rows.
fn parse_xwd(b: &[u8]) -> Option<RgbImage> {
    let word = |i: usize| -> Option<u32> {
        Some(u32::from_be_bytes(
            b.get(i * 4..i * 4 + 4)?.try_into().ok()?,
        ))
    };
    let (header, width, height) = (word(0)? as usize, word(4)?, word(5)?);
    let (lsb_first, bpp, stride) = (word(7)? == 0, word(11)?, word(12)? as usize);
    let masks = [word(14)?, word(15)?, word(16)?];
    let colours = word(19)? as usize;
    if bpp != 32 {
        return None;
    }
    let data = b.get(header + colours * 12..)?;
    let mut img = RgbImage::new(width, height);
    for (x, y, px) in img.enumerate_pixels_mut() {
        let at = y as usize * stride + x as usize * 4;
        let raw: [u8; 4] = data.get(at..at + 4)?.try_into().ok()?;
        let v = if lsb_first {
            u32::from_le_bytes(raw)
        } else {
            u32::from_be_bytes(raw)
        };
        let channel = |m: u32| ((v & m) >> m.trailing_zeros()) as u8;
        *px = image::Rgb([channel(masks[0]), channel(masks[1]), channel(masks[2])]);
    }
    Some(img)
}

/// A picture the workbench sent: its pixels and where (pixels from the screen's corner).
struct Sent {
    pixels: RgbaImage,
    at: (u32, u32),
    protocol: String,
}

/// The status line and the pictures on screen (the last one sent at each position).
fn recorded(dir: &Path) -> Option<(String, Vec<Sent>)> {
    let list = std::fs::read_to_string(dir.join("pictures.tsv")).ok()?;
    let mut status = None;
    let mut sent: Vec<Sent> = Vec::new();
    for line in list.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if let ["graphics", s] = f[..] {
            status = Some(s.to_string());
            continue;
        }
        let [n, x, y, cw, ch, protocol] = f[..] else {
            continue;
        };
        let num = |s: &str| s.parse::<u32>().ok();
        let at = (num(x)? * num(cw)?, num(y)? * num(ch)?);
        let pixels = image::open(dir.join(format!("{n}.png"))).ok()?.to_rgba8();
        sent.retain(|s| s.at != at);
        sent.push(Sent {
            pixels,
            at,
            protocol: protocol.to_string(),
        });
    }
    Some((status?, sent))
}

/// Mean absolute difference between the picture's opaque pixels and the screen under them.
fn difference(shot: &RgbImage, sent: &Sent) -> f64 {
    let (mut sum, mut n) = (0u64, 0u64);
    for (x, y, p) in sent.pixels.enumerate_pixels() {
        let (sx, sy) = (sent.at.0 + x, sent.at.1 + y);
        if p[3] == 0 || sx >= shot.width() || sy >= shot.height() {
            continue;
        }
        let s = shot.get_pixel(sx, sy);
        sum += (0..3).map(|c| u64::from(p[c].abs_diff(s[c]))).sum::<u64>();
        n += 3;
    }
    if n == 0 { 255.0 } else { sum as f64 / n as f64 }
}

/// Start xterm (as a VT340) on `display` running `command`, open feature 125 with keys, and wait
/// until the screen holds its thumbnails; returns the status line.
fn shows_thumbnails(
    case: &str,
    display: &str,
    record: &Path,
    command: &[&str],
    procs: &mut Kill,
) -> String {
    let geometry = format!("{COLS}x{ROWS}+0+0");
    let mut xterm = Command::new("xterm");
    xterm
        .args([
            "-ti",
            "vt340",
            "-fn",
            "fixed",
            "-b",
            "0",
            "-bw",
            "0",
            "-geometry",
            &geometry,
        ])
        .args(["-xrm", "XTerm*allowWindowOps: false", "-e"])
        .args(command)
        .env("DISPLAY", display)
        .env("GLINT_RECORD_PICTURES", record)
        .env("XDG_CONFIG_HOME", record.join("config"))
        .env_remove("TMUX")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for var in [
        "GLINT_MODEL",
        "GLINT_SAE",
        "GLINT_CACHE",
        "RANK",
        "WORLD_SIZE",
    ] {
        xterm.env_remove(var);
    }
    let xterm = xterm.spawn().unwrap();
    let pid = xterm.id().to_string();
    procs.0.push(xterm);
    // The status line is recorded once the terminal has been asked: keys typed before then
    // would be read as answers.
    let saved = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{case}.png"));
    let save = |shot: &RgbImage| {
        let _ = shot.save(&saved);
    };
    if wait_until(Duration::from_secs(60), || recorded(record)).is_none() {
        screenshot(display).inspect(save);
        panic!("{case}: the workbench did not start ({})", saved.display());
    }
    let xdotool = |args: &[&str]| {
        Command::new("xdotool")
            .args(args)
            .env("DISPLAY", display)
            .output()
            .unwrap()
    };
    let window = wait_until(Duration::from_secs(20), || {
        let out = xdotool(&["search", "--pid", &pid]);
        let id = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()?
            .to_string();
        Some(id)
    })
    .unwrap_or_else(|| panic!("{case}: no xterm window"));
    xdotool(&["windowfocus", "--sync", &window]);
    xdotool(&["type", "--delay", "50", ":125"]);
    xdotool(&["key", "Return"]);
    let mut last = (String::new(), vec![], None);
    let shown = wait_until(Duration::from_secs(30), || {
        let (status, sent) = recorded(record)?;
        let shot = screenshot(display)?;
        let diffs: Vec<(String, f64)> = sent
            .iter()
            .map(|s| (s.protocol.clone(), difference(&shot, s)))
            .collect();
        let ok = diffs.len() >= THUMBS && diffs.iter().all(|(_, d)| *d < SHOWN);
        last = (status.clone(), diffs, Some(shot));
        ok.then_some(status)
    });
    let (status, diffs, shot) = last;
    eprintln!("{case}: {status}; (protocol, mean difference) per picture: {diffs:?}");
    shot.as_ref().inspect(|s| save(s));
    shown.unwrap_or_else(|| {
        panic!(
            "{case}: the thumbnails are not on screen ({}); status {status:?}; (protocol, mean \
             difference) per picture: {diffs:?}, {SHOWN} or more is not shown",
            saved.display()
        )
    })
}

#[test]
fn xterm_shows_the_thumbnails_in_sixel() {
    if !terminals_present("xterm_shows_the_thumbnails_in_sixel") {
        return;
    }
    let mut procs = Kill(vec![]);
    let display = xvfb(&mut procs);
    let record = tempfile::tempdir().unwrap();
    let store = store(record.path());
    let bin = env!("CARGO_BIN_EXE_glint");
    let command = [bin, "--cache", store.to_str().unwrap()];
    let status = shows_thumbnails("xterm", &display, record.path(), &command, &mut procs);
    assert_eq!(status, "graphics: sixel");
}

#[test]
fn tmux_in_xterm_passes_the_thumbnails_through_in_sixel() {
    if !terminals_present("tmux_in_xterm_passes_the_thumbnails_through_in_sixel") {
        return;
    }
    let mut procs = Kill(vec![]);
    let display = xvfb(&mut procs);
    let record = tempfile::tempdir().unwrap();
    let store = store(record.path());
    let conf = record.path().join("tmux.conf");
    std::fs::write(&conf, "set -g allow-passthrough on\n").unwrap();
    let socket = format!("glint-terminals-{}", std::process::id());
    let _server = TmuxServer(socket.clone());
    let glint = format!(
        "'{}' --cache '{}'",
        env!("CARGO_BIN_EXE_glint"),
        store.display()
    );
    let command = [
        "tmux",
        "-L",
        &socket,
        "-f",
        conf.to_str().unwrap(),
        "new-session",
        &glint,
    ];
    let status = shows_thumbnails("tmux", &display, record.path(), &command, &mut procs);
    assert_eq!(status, "graphics: sixel through tmux");
}
