//! The `flowhook` binary: parses the command line and hands over to [`flowhook::cli`].

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: see docs/BENCHMARKS.md (a fifth of the CPU went to
/// glibc malloc under load).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = flowhook::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("flowhook: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(flowhook::cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("flowhook: {}", one_line(&e));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes on one line, skipping a cause that repeats what is already said
/// (several libraries print their source inside their own message).
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string().replace('\n', " ");
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
