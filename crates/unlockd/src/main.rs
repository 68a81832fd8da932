fn main() -> std::process::ExitCode {
    unlockd::cli::main()
}
