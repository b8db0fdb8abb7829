//! Runs `tests/e2e_tmux.sh` against the real binary when tmux is installed (CI installs it).

use std::process::Command;

#[test]
fn tmux_drives_the_workbench() {
    let has_tmux = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_tmux {
        eprintln!("tmux is not installed; skipping the end-to-end run (.ci/run installs it)");
        return;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("bash")
        .arg(format!("{root}/tests/e2e_tmux.sh"))
        .arg(env!("CARGO_BIN_EXE_glint"))
        .current_dir(root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "e2e failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("e2e_tmux: ok"), "{stdout}");
}

#[test]
fn without_a_terminal_the_workbench_says_so_before_loading_anything() {
    let out = crate::common::glint()
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("needs a terminal")
            && err.contains("standard input")
            && !err.contains("panicked"),
        "{err}"
    );
    assert!(
        !err.contains("building the sample store"),
        "it loaded before refusing: {err}"
    );
}
