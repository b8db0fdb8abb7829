//! Runs `glint sample-data`.

use anyhow::Result;

use crate::cli::args::SampleDataArgs;

/// Regenerate the sample world and say what was written.
pub fn run(args: &SampleDataArgs) -> Result<()> {
    let summary = crate::sample::generate_sample_world(&args.out, args.seed, args.random_sae)?;
    println!(
        "wrote {}: {} images, {} objects, {:.1} MB",
        args.out.display(),
        summary.images,
        summary.objects,
        summary.bytes as f64 / 1e6
    );
    if args.train_model {
        let spec = crate::sample::train_model::TrainModelSpec {
            seed: args.seed,
            vision_steps: args.vision_steps,
            steps: args.train_steps,
            batch: args.train_batch,
            lr: args.train_lr,
            probe_weight: args.probe_weight,
        };
        let dir = args.out.join(crate::sample::MODEL_DIR);
        keep_freed_memory();
        let report = crate::sample::train_model::train_sample_model(
            &dir,
            &spec,
            args.eval_questions,
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
        )?;
        println!("trained {}", dir.display());
        for (name, stage) in [("vision", &report.vision), ("answers", &report.answers)] {
            if stage.steps > 0 {
                println!(
                    "  {name}: {} images in {:.0} s, loss {:.3} -> {:.3}; patches read right: \
                     colour {:.0}%, shape {:.0}%",
                    stage.images,
                    stage.seconds,
                    stage.first_loss,
                    stage.last_loss,
                    100.0 * stage.colour_accuracy,
                    100.0 * stage.shape_accuracy
                );
            }
        }
        println!(
            "  held out: {}",
            crate::sample::model_eval::format_scores(&report.scores)
        );
    }
    Ok(())
}

/// Keep freed memory in the heap rather than handing it back: every training step allocates
/// and frees the same large activations, and a fresh mapping each time costs the kernel's page
/// zeroing (a quarter of the step's time on the 2-core machine).
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation thresholds; it takes no pointers and
    // glibc serialises it with allocation.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
