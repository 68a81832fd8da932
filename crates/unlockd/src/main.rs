// mimalloc instead of the system allocator: in a perf profile of task polls, glibc's
// malloc and free took about a tenth of the server's CPU (many small, short-lived
// allocations per request across the runtime's threads).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    unlockd::cli::main()
}
