//! The `reco` binary: see `reco --help`.

fn main() -> std::process::ExitCode {
    reco_supervisors::cli::main()
}
