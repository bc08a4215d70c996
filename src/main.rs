use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = ims_exporter::cli::Cli::parse();
    ExitCode::from(ims_exporter::run(cli))
}
