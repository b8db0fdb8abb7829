//! The `glint` binary: everything happens in [`glint::cli`].

fn main() -> std::process::ExitCode {
    glint::cli::main()
}
