//! The `rowstream` binary: parse the command line, set up logging, run.

use clap::Parser;

#[global_allocator]
static GLOBAL: rowstream::alloc::MiMalloc = rowstream::alloc::MiMalloc;

fn main() -> std::process::ExitCode {
    rowstream::alloc::without_huge_pages();
    let cli = rowstream::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ROWSTREAM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rowstream: cannot start the runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match rt.block_on(rowstream::cli::run(cli)) {
        Ok(code) => std::process::ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("rowstream: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
