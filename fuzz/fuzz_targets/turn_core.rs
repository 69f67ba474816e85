//! The TURN core as a state machine: a run of client requests (valid REST
//! credentials included), raw datagrams, ChannelData, Send indications, peer
//! datagrams, relay binds that fail, revocations, closed streams and a clock
//! that moves, decoded from the input by `turn::sim::codec`. The simulator
//! checks the core's invariants after every step and a full release of
//! ports, quotas and sockets at the end; any violation panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use natbridge::turn::sim::{Sim, codec};

fuzz_target!(|data: &[u8]| {
    let (cfg, ops) = codec::decode(data);
    if let Err(e) = Sim::run(&cfg, &ops) {
        panic!("{e}");
    }
});
