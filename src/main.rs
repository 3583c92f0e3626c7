fn main() {
    std::process::exit(dg::main());
}
