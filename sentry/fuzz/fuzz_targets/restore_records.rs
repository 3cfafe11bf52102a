//! Hostile records through the whole of restore's validation: the input is
//! a mutation program (sentry::state::hostile::mutate) applied to the
//! object table of a real statefile (seeds/, from `cryo checkpoint`); the
//! mutated table is re-assembled with valid checksums and handed to
//! `restore_validate`, which must refuse or accept it without panicking,
//! hanging or allocating without bound. The first input byte picks the seed.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sentry::state::hostile::{run_case, ObjectTable};

const SEEDS: &[&[u8]] = &[
    include_bytes!("../seeds/counter.cryo"),
    include_bytes!("../seeds/threads.cryo"),
    include_bytes!("../seeds/waiting.cryo"),
    include_bytes!("../seeds/pty.cryo"),
];

fn seeds() -> &'static [ObjectTable] {
    static TABLES: OnceLock<Vec<ObjectTable>> = OnceLock::new();
    TABLES.get_or_init(|| {
        SEEDS
            .iter()
            .map(|s| ObjectTable::from_statefile(s).expect("a seed statefile is valid"))
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, program)) = data.split_first() else {
        return;
    };
    let seeds = seeds();
    let seed = &seeds[pick as usize % seeds.len()];
    let _ = run_case(seed, program);
});
