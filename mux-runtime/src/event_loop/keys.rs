//! The handles an application keeps for what a loop owns: [`ConnKey`] for a
//! mux connection, [`PlainKey`] for a plain TCP socket. Each carries the
//! generation of its slab slot, so that a key kept after its connection
//! ended never reaches the next one in that slot (the ABA guard).

/// A connection's handle: its slab index and the generation of the slot, so
/// that a key kept after its connection ended never reaches a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnKey {
    pub(crate) index: usize,
    pub(crate) generation: u64,
}

/// A plain TCP socket's handle (for proxies such as the sidecar): its slab
/// index and generation, like [`ConnKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PlainKey {
    pub(crate) index: usize,
    pub(crate) generation: u64,
}
