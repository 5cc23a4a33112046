//! evctl: the operator's command line for an ev game. See `ev::ctl`.

fn main() {
    std::process::exit(ev::ctl::main());
}
