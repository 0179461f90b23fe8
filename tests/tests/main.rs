//! Integration tests over real loopback sockets: one test binary with a
//! module per area, so that it links once.

/// Sizes the process's descriptor table for thousands of sockets before
/// `main`, while the process has one thread: growing it once the tests run
/// waits for an RCU grace period, which a loaded machine can delay for a
/// minute (`mux_testkit::reserve_file_descriptors`).
#[allow(unsafe_code)] // `link_section`: the standard way to run a function before `main`
#[used]
#[link_section = ".init_array"]
static RESERVE_FILE_DESCRIPTORS: extern "C" fn() = {
    extern "C" fn reserve() {
        mux_testkit::reserve_file_descriptors(8192);
    }
    reserve
};

mod addresses;
mod async_client;
mod async_handlers;
mod attacks;
mod auth;
mod backplane;
mod body_streams;
mod browser;
mod conformance;
mod direct;
mod dissector;
mod http_edge;
mod inline_calls;
mod integrity;
mod limits;
mod long_link;
mod memory;
mod patterns;
mod publications;
mod rpc;
mod runtime;
mod shutdown;
mod sidecar;
mod timeouts;
mod tls;
