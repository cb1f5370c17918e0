use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    ingress_authz::run(ingress_authz::cli::Cli::parse())
}
