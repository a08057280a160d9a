//! `factory-supervise REQUEST`: Factory's process supervisor as a program of its own (see
//! `factory_agents::supervise`). Started by Factory, not by hand.

use std::process::ExitCode;

fn main() -> ExitCode {
    factory_agents::supervise::main_from_args(std::env::args_os().skip(1))
}
