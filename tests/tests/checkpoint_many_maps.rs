//! Checkpoint and restore of an address space with 60,000 mappings (the
//! `ckpt_many_maps` guest): restored twice, each restored sandbox finds
//! every mapping's byte and protection as they were and prints what an
//! uninterrupted run prints.

use cryo_tests::sandbox::{ticking_guest_restores_twice, Scratch};
use cryo_tests::{guest, Libc};

#[test]
fn sixty_thousand_mappings_checkpointed_and_restored_twice() {
    let s = Scratch::new("cryo-many-maps-");
    let bin = guest("ckpt_many_maps", Libc::Glibc);
    ticking_guest_restores_twice(&s.root(), &bin, &["60000"], 4, &s.path("img"));
}
