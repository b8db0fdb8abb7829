//! Runs `glint --batch steer`: the job from the flags, progress lines on stderr, the summary.

use std::io::{IsTerminal, Write};

use anyhow::Result;

use crate::cli::args::{ModelArgs, SteerArgs};
use crate::dataset::Shard;
use crate::generate::{GenerateOptions, Generation, Sampling, StrengthUnit, TokenEvent};
use crate::jobs::steer::{
    RunSettings, SteerJob, SteerRecord, parse_features, run_steer_job, shard_path, store_max_act,
};
use crate::sae::intervene::Scope;
use crate::session::Session;

/// `glint --batch steer`.
pub fn run(model: &ModelArgs, args: &SteerArgs) -> Result<()> {
    let session = Session::open(&model.spec()?, None)?;
    let features = parse_features(&args.features, session.sae.hookpoint())?;
    let shard = match &args.shard {
        Some(s) => Some(Shard::parse(s)?),
        None => Shard::from_env(|k| std::env::var(k).ok())?,
    };
    let sampling = Sampling::new(args.temperature, args.top_p, args.seed)?;
    let settings = RunSettings {
        mode: args.mode,
        strength: args.strength,
        unit: args.unit,
        direction: args.direction,
        phase: args.phase.unwrap_or_else(|| args.mode.default_phase()),
        scope: args.tokens,
        prompt: args.prompt.clone(),
        image: args.image.as_ref().map(|p| p.display().to_string()),
        sampling,
        max_new_tokens: args.max_new_tokens,
    };
    Scope {
        phase: settings.phase,
        tokens: settings.scope,
    }
    .check()?;
    let options = GenerateOptions {
        max_new_tokens: args.max_new_tokens,
        sampling,
        stop_ids: None,
    };
    let job = SteerJob {
        settings,
        features,
        options,
        out: shard_path(&args.out, shard),
        shard,
    };
    let mut lookup: Box<dyn FnMut(u32) -> Result<Option<f32>>> = match args.unit {
        StrengthUnit::Max => Box::new(store_max_act(&args.store, &session)?),
        StrengthUnit::Raw => Box::new(|_| Ok(None)),
    };
    let quiet = args.json;
    let stream = args.stream;
    let mut err = std::io::stderr();
    let mut on_event = |who: Option<u32>, e: TokenEvent| {
        if !stream {
            return;
        }
        let _ = match e {
            TokenEvent::Prefilled { .. } => write!(
                err,
                "{}: ",
                who.map_or("default".into(), |f| format!("feature {f}"))
            ),
            TokenEvent::Token { text, .. } => write!(err, "{text}"),
            TokenEvent::Finished { tail, .. } => writeln!(err, "{tail}"),
        };
    };
    let tty = std::io::stderr().is_terminal();
    let mut on_row = |row: &SteerRecord, g: &Generation| {
        if quiet {
            return;
        }
        let same = if row.identical {
            " (same as default)"
        } else {
            ""
        };
        eprintln!(
            "feature {}: {} tokens, {:.1} tokens/s{same}",
            row.feature,
            row.tokens.len(),
            g.tokens_per_second()
        );
        for w in &row.warnings {
            eprintln!("  warning: {w}");
        }
        if tty {
            let _ = std::io::stderr().flush();
        }
    };
    let sum = run_steer_job(&session, &job, &mut *lookup, &mut on_row, &mut on_event)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&sum)?);
    } else {
        println!(
            "steered {} features into {} ({} resumed, {} unchanged, {} with warnings) · {:.1} tokens/s",
            sum.written, sum.out, sum.resumed, sum.identical, sum.warned, sum.tokens_per_second
        );
    }
    Ok(())
}
