//! The `glint` binary: parse the command line and dispatch.

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use glint::cli::{Cli, Command, ProbeArgs, SampleDataArgs};
use glint::commands;
use glint::pipeline::probe::{format_report, probe, write_dump};
use glint::pipeline::session::Session;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Some(Command::Probe(args)) => run_probe(&cli.model, &args),
        Some(Command::SampleData(args)) => run_sample_data(&args),
        Some(Command::Cache(args)) => commands::cache(&cli.model, &args).map(|_| ExitCode::SUCCESS),
        Some(Command::Merge(args)) => commands::merge(&args).map(|_| ExitCode::SUCCESS),
        Some(Command::Export(args)) => commands::export(&args).map(|_| ExitCode::SUCCESS),
        Some(Command::Import(args)) => {
            commands::import(&cli.model, &args).map(|_| ExitCode::SUCCESS)
        }
        Some(Command::Explain(args)) => glint::explain::command::run(&cli.model, &args),
        Some(Command::Bench(args)) => commands::bench(&cli.model, &args).map(|_| ExitCode::SUCCESS),
        Some(Command::Train(args)) => {
            let report = glint::pipeline::train::run_train(&cli.model, &args)?;
            print!("{}", glint::pipeline::train::format_report(&report));
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Score(args)) => glint::score::command::run(&cli.model, &args),
        Some(Command::Attribute(args)) => {
            glint::pipeline::attribute::command(&cli.model, &args).map(|_| ExitCode::SUCCESS)
        }
        Some(Command::Steer(args)) => {
            glint::pipeline::steer::command(&cli.model, &args).map(|_| ExitCode::SUCCESS)
        }
        None => {
            glint::tui::launch::main(&cli.model, cli.cache.as_deref(), &cli.graphics, &cli.theme)
                .map(|_| ExitCode::SUCCESS)
        }
    }
}

fn run_probe(model: &glint::cli::ModelArgs, args: &ProbeArgs) -> Result<ExitCode> {
    let session = Session::open(model, args.layer)?;
    let result = probe(&session, &args.image, args.prompt.as_deref(), args.top)?;
    if let Some(path) = &args.dump {
        write_dump(&result, path, session.model.config.image_token_index)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result.report)?);
    } else {
        print!("{}", format_report(&result.report, args.top));
        if let Some(path) = &args.dump {
            println!("\nwrote {}", path.display());
        }
    }
    if args.show {
        glint::tui::show::print_strongest(&result, &args.image, "dark")?;
    }
    Ok(ExitCode::SUCCESS)
}

fn run_sample_data(args: &SampleDataArgs) -> Result<ExitCode> {
    let summary = glint::sample::generate_sample_world(&args.out, args.seed, args.random_sae)?;
    println!(
        "wrote {}: {} images, {} objects, {:.1} MB",
        args.out.display(),
        summary.images,
        summary.objects,
        summary.bytes as f64 / 1e6
    );
    Ok(ExitCode::SUCCESS)
}
