fn main() {
    std::process::exit(dg::cli::main());
}
