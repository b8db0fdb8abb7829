//! `glint --batch cache` end to end on the sample world: resume after kill -9, shards + merge,
//! seed export/import, and skipped images.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::{glint, ok, root, run_ok, sample_image};
use glint::store::Store;

/// Everything a store holds, as text, for equality checks (manifest shard field excluded).
fn digest(path: &Path) -> String {
    let store = Store::open(path).unwrap();
    let mut s = String::new();
    let p = store.progress().unwrap();
    s += &format!("images {} tokens {}\n", p.images, p.tokens);
    for f in store.features() {
        let (f, stats) = f.unwrap();
        s += &format!("f{f} {stats:?}\n");
        for e in store.top_examples(f).unwrap() {
            s += &format!("  {e:?}\n");
        }
    }
    for img in store.images() {
        let img = img.unwrap();
        s += &format!("i{} {} {:?}\n", img.index, img.path, img.top_features);
    }
    s
}

fn cache_cmd(out: &Path, extra: &[&str]) -> Command {
    let mut cmd = glint();
    cmd.args([
        "--batch",
        "cache",
        "--limit",
        "6",
        "--top-n",
        "5",
        "--commit-every",
        "1",
        "--out",
    ])
    .arg(out)
    .args(extra);
    cmd
}

#[test]
fn killed_run_resumes_to_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    run_ok(&mut cache_cmd(&whole, &[]));

    let resumed = dir.path().join("resumed");
    let mut child = cache_cmd(&resumed, &[])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    for line in stderr.lines() {
        if line.unwrap().contains("2/6 images") {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let partial = Store::open(&resumed).unwrap().progress().unwrap();
    assert!(
        partial.images >= 2 && partial.images < 6,
        "killed after {} images",
        partial.images
    );

    let summary = run_ok(&mut cache_cmd(&resumed, &["--json"]));
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["images_resumed"].as_u64().unwrap(), partial.images);
    assert_eq!(digest(&whole), digest(&resumed));
}

#[test]
fn export_runs_beside_a_cache_job_without_disturbing_it() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    run_ok(&mut cache_cmd(&whole, &[]));

    let live = dir.path().join("live");
    let mut child = cache_cmd(&live, &[])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in stderr.by_ref() {
        if line.unwrap().contains("1/6 images") {
            break;
        }
    }
    // Read through the job (or, if it has just finished, on its own): either way it succeeds.
    let seed = dir.path().join("seed");
    let out = run_ok(
        glint()
            .args(["--batch", "export", "--store"])
            .arg(&live)
            .arg("--out")
            .arg(&seed),
    );
    assert!(out.contains("wrote"), "{out}");
    stderr.for_each(drop);
    assert!(child.wait().unwrap().success());
    assert_eq!(digest(&whole), digest(&live));
}

#[test]
fn merged_shards_equal_a_single_run() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    run_ok(&mut cache_cmd(&whole, &[]));
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    run_ok(&mut cache_cmd(&a, &["--shard", "0/2"]));
    // The second shard takes its rank from the launcher's environment, as under torchrun.
    run_ok(cache_cmd(&b, &[]).env("RANK", "1").env("WORLD_SIZE", "2"));
    let merged = dir.path().join("merged");
    run_ok(
        glint()
            .args(["--batch", "merge"])
            .arg(&merged)
            .arg(&a)
            .arg(&b),
    );
    assert_eq!(digest(&whole), digest(&merged));
}

#[test]
fn a_different_manifest_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s");
    run_ok(
        glint()
            .args(["--batch", "cache", "--limit", "1", "--top-n", "5", "--out"])
            .arg(&out),
    );
    let res = glint()
        .args(["--batch", "cache", "--limit", "1", "--top-n", "7", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!res.status.success());
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(err.contains("top_n"), "{err}");
}

#[test]
fn seed_export_then_import_keeps_the_top_examples() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    run_ok(
        glint()
            .args([
                "--batch",
                "cache",
                "--limit",
                "4",
                "--top-n",
                "50",
                "--rank",
                "mean-base",
                "--out",
            ])
            .arg(&store),
    );
    let seed = dir.path().join("seed");
    run_ok(
        glint()
            .args([
                "--batch",
                "export",
                "--format",
                "seed",
                "--n-splits",
                "4",
                "--store",
            ])
            .arg(&store)
            .arg("--out")
            .arg(&seed),
    );
    let files: Vec<_> = std::fs::read_dir(seed.join("model.layers.2"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(files.len(), 4);
    // A 4-image dataset in the same order as the cache.
    let manifest = dir.path().join("four.jsonl");
    let lines: Vec<String> =
        std::fs::read_to_string(root().join("sample-data/shapes/manifest.jsonl"))
            .unwrap()
            .lines()
            .take(4)
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                let p = root()
                    .join("sample-data/shapes")
                    .join(v["path"].as_str().unwrap());
                v["path"] = serde_json::Value::String(p.display().to_string());
                v.to_string()
            })
            .collect();
    std::fs::write(&manifest, lines.join("\n")).unwrap();
    let imported = dir.path().join("imported");
    run_ok(
        glint()
            .args([
                "--batch", "import", "--format", "seed", "--top-n", "50", "--from",
            ])
            .arg(&seed)
            .arg("--dataset")
            .arg(&manifest)
            .arg("--out")
            .arg(&imported),
    );
    let a = Store::open(&store).unwrap();
    let b = Store::open(&imported).unwrap();
    let mut compared = 0;
    for f in a.features() {
        let (f, _) = f.unwrap();
        let ea = a.top_examples(f).unwrap();
        let eb = b.top_examples(f).unwrap();
        let ia: Vec<u32> = ea.iter().map(|e| e.image).collect();
        let ib: Vec<u32> = eb.iter().map(|e| e.image).collect();
        assert_eq!(ia, ib, "feature {f}");
        for (x, y) in ea.iter().zip(&eb) {
            assert_eq!(x.tokens.len(), y.tokens.len(), "feature {f}");
            assert!(
                (x.score - y.score).abs() <= 1e-3 * x.score.abs().max(1.0),
                "feature {f}"
            );
        }
        compared += 1;
    }
    assert!(compared > 10, "only {compared} features");
}

#[test]
fn broken_images_are_skipped_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::copy(sample_image("shape-0000.png"), data.join("a.png")).unwrap();
    std::fs::write(data.join("b.png"), b"\x89PNG\r\n\x1a\n truncated").unwrap();
    std::fs::write(data.join("c.jpg"), b"not an image at all").unwrap();
    let out = dir.path().join("s");
    let summary = run_ok(
        glint()
            .args(["--batch", "cache", "--json", "--dataset"])
            .arg(&data)
            .arg("--out")
            .arg(&out),
    );
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["images_done"], 1);
    let skipped = summary["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 2);
    assert!(
        skipped
            .iter()
            .all(|s| !s["reason"].as_str().unwrap().is_empty())
    );
    assert_eq!(Store::open(&out).unwrap().progress().unwrap().images, 1);
    // A rerun over the complete store reports the same skips: they are committed with it.
    let rerun = run_ok(
        glint()
            .args(["--batch", "cache", "--json", "--dataset"])
            .arg(&data)
            .arg("--out")
            .arg(&out),
    );
    let rerun: serde_json::Value = serde_json::from_str(&rerun).unwrap();
    assert_eq!(rerun["images_done"], 0);
    assert_eq!(rerun["skipped"], summary["skipped"]);
}

#[test]
fn a_disk_without_room_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s");
    let no_room = |cmd: &mut Command| {
        let o = cmd
            .env("GLINT_MIN_FREE_BYTES", u64::MAX.to_string())
            .output()
            .unwrap();
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let err = no_room(&mut cache_cmd(&out, &[]));
    assert!(
        err.contains("not enough free space") && err.contains("nothing was written"),
        "{err}"
    );
    assert!(!out.exists(), "a refused creation leaves no folder");
    run_ok(&mut cache_cmd(&out, &[]));
    let before = digest(&out);
    let err = no_room(&mut cache_cmd(&out, &[]));
    assert!(err.contains(&out.display().to_string()), "{err}");
    assert_eq!(digest(&out), before, "a refused rerun changed the store");
    run_ok(&mut cache_cmd(&out, &[]));
    assert_eq!(digest(&out), before);
}

/// A copy of the sample folder `name` under `dir`.
fn copy_sample(dir: &Path, name: &str) -> std::path::PathBuf {
    fn copy(src: &Path, dst: &Path) {
        std::fs::create_dir_all(dst).unwrap();
        for entry in std::fs::read_dir(src).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &dst.join(entry.file_name()));
            } else {
                std::fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
            }
        }
    }
    let dst = dir.join(name);
    copy(&root().join("sample-data").join(name), &dst);
    dst
}

/// Change the last byte of `file` in place, keeping its size and modification time.
fn flip_last_byte(file: &Path) {
    use std::io::{Seek, SeekFrom, Write};
    let mtime = std::fs::metadata(file).unwrap().modified().unwrap();
    let len = std::fs::metadata(file).unwrap().len();
    let last = std::fs::read(file).unwrap()[len as usize - 1];
    let mut f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    f.seek(SeekFrom::Start(len - 1)).unwrap();
    f.write_all(&[last ^ 0x01]).unwrap();
    f.set_modified(mtime).unwrap();
}

#[test]
fn weights_changed_in_place_are_refused_when_resuming() {
    let dir = tempfile::tempdir().unwrap();
    let model = copy_sample(dir.path(), "llava-next-tiny");
    let sae = copy_sample(dir.path(), "sae-tiny");
    let run = |out: &Path| {
        cache_cmd(out, &[])
            .arg("--model")
            .arg(&model)
            .arg("--sae")
            .arg(&sae)
            .output()
            .unwrap()
    };
    let store = dir.path().join("store");
    let first = run(&store);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );

    flip_last_byte(&model.join("model.safetensors"));
    let again = run(&store);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        !again.status.success() && err.contains("model_fingerprint"),
        "{err}"
    );

    let store = dir.path().join("store2");
    let first = run(&store);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    flip_last_byte(&sae.join("model.layers.2/sae.safetensors"));
    let again = run(&store);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        !again.status.success() && err.contains("sae_fingerprint"),
        "{err}"
    );
}

#[test]
fn newline_tokens_are_cached_when_asked_for() {
    use glint::model::anyres::TokenKind;
    use glint::session::encode::kind_of;
    let dir = tempfile::tempdir().unwrap();
    let (image, newline) = (dir.path().join("image"), dir.path().join("newline"));
    run_ok(&mut cache_cmd(&image, &[]));
    run_ok(&mut cache_cmd(&newline, &["--tokens", "image+newline"]));
    let (a, b) = (Store::open(&image).unwrap(), Store::open(&newline).unwrap());
    assert!(b.progress().unwrap().tokens > a.progress().unwrap().tokens);
    // Some feature's strongest example peaks on a newline token, which the default never stores.
    let peaks_on_newline = |s: &Store| {
        s.features()
            .map(|f| f.unwrap().0)
            .filter(|&f| {
                s.top_examples(f).unwrap().iter().any(|e| {
                    let layout = s.image(e.image).unwrap().unwrap().layout().unwrap().clone();
                    let (t, _) = e
                        .tokens
                        .iter()
                        .max_by(|x, y| x.1.to_f32().total_cmp(&y.1.to_f32()))
                        .unwrap();
                    kind_of(&layout, *t) == Some(TokenKind::Newline)
                })
            })
            .count()
    };
    assert_eq!(peaks_on_newline(&a), 0);
    assert!(
        peaks_on_newline(&b) > 0,
        "no feature peaks on a newline token"
    );
    drop((a, b));
    // The selection is part of the manifest: a rerun with another one is refused, naming it.
    let o = cache_cmd(&newline, &[]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("`tokens`"), "{err}");
}

#[test]
fn an_sae_in_bf16_finds_nearly_the_same_features_and_is_a_run_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let (f32_out, bf16_out) = (dir.path().join("f32"), dir.path().join("bf16"));
    run_ok(&mut cache_cmd(&f32_out, &[]));
    run_ok(&mut cache_cmd(&bf16_out, &["--sae-dtype", "bf16"]));
    let (a, b) = (
        Store::open(&f32_out).unwrap(),
        Store::open(&bf16_out).unwrap(),
    );
    let tops = |s: &Store| -> Vec<std::collections::BTreeSet<u32>> {
        s.images()
            .map(|i| i.unwrap().top_features.iter().map(|t| t.0).collect())
            .collect()
    };
    let (ta, tb) = (tops(&a), tops(&b));
    assert_eq!(ta.len(), tb.len());
    for (x, y) in ta.iter().zip(&tb) {
        let shared = x.intersection(y).count() as f64;
        let jaccard = shared / x.union(y).count().max(1) as f64;
        assert!(
            jaccard >= 0.8,
            "bf16 and f32 top features differ: {x:?} vs {y:?}"
        );
    }
    drop((a, b));
    // Codes of another precision are not mixed into a store: the rerun names the field.
    let o = cache_cmd(&bf16_out, &[]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("preprocessing"),
        "{err}"
    );
    let o = cache_cmd(&bf16_out, &["--sae-dtype", "f8"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--sae-dtype f8"),
        "{err}"
    );
}

#[test]
fn batch_help_lists_only_the_commands_own_flags() {
    let help = run_ok(glint().args(["--batch", "cache", "--help"]));
    for workbench_only in ["--graphics", "--theme", "--cache "] {
        assert!(
            !help.contains(workbench_only),
            "{workbench_only} in:\n{help}"
        );
    }
    assert!(
        help.contains("--dataset") && help.contains("manifest.jsonl"),
        "{help}"
    );
}

#[test]
fn a_feature_list_leaves_as_a_filter_file_that_drives_caching_and_comes_back() {
    let tmp = tempfile::tempdir().unwrap();
    let store_dir = tmp.path().join("store");
    ok(&mut cache_cmd(&store_dir, &[]));
    let store = Store::open(&store_dir).unwrap();
    store.add_to_list("picked", 40, Some("stripes")).unwrap();
    store.add_to_list("picked", 7, None).unwrap();
    drop(store);
    let file = tmp.path().join("picked.json");
    ok(glint()
        .args([
            "--batch", "export", "--format", "filter", "--list", "picked", "--store",
        ])
        .arg(&store_dir)
        .arg("--out")
        .arg(&file));
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text, "{\"model.layers.2\":[40,7]}\n");
    // The file drives another command's feature selection, as the original's filter files do.
    let only = tmp.path().join("only");
    let f = file.to_str().unwrap();
    ok(&mut cache_cmd(&only, &["--features", f]));
    let kept: Vec<u32> = Store::open(&only)
        .unwrap()
        .features()
        .map(|r| r.unwrap().0)
        .collect();
    assert!(kept.iter().all(|f| [7, 40].contains(f)), "{kept:?}");
    // And back in, as a list of the store.
    let out = run_ok(
        glint()
            .args([
                "--batch", "import", "--format", "filter", "--list", "again", "--from",
            ])
            .arg(&file)
            .arg("--out")
            .arg(&store_dir),
    );
    assert!(out.contains("2 features"), "{out}");
    let again = Store::open(&store_dir)
        .unwrap()
        .list("again")
        .unwrap()
        .unwrap();
    let ids: Vec<u32> = again.entries.iter().map(|e| e.feature).collect();
    assert_eq!(ids, [40, 7]);
    // A list that is not there is named with the ones that are.
    let err = glint()
        .args([
            "--batch", "export", "--format", "filter", "--list", "nope", "--out", "-", "--store",
        ])
        .arg(&store_dir)
        .output()
        .unwrap();
    let msg = String::from_utf8_lossy(&err.stderr);
    assert!(
        !err.status.success() && msg.contains("\"nope\"") && msg.contains("again, picked"),
        "{msg}"
    );
}
