//! `ev-test-server`: the demo for the test suite only, with the test
//! build's failpoints, storage faults, Link-version lie and `@crash`/`@hang`
//! commands (see `ev_server::test_main`). Built only with the `test-build`
//! feature, which `cargo test --workspace` turns on and a plain `cargo
//! build` does not. Never ship it.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    ev_server::test_main(ev_demo::Demo::default())
}
