//! Host bindings for `sfop:platform`, generated once, here.
//!
//! One world serves components of both versions: the `0.2.0` world imports
//! `0.1.0`'s interfaces unchanged (plus `http` and `config`, new in 0.2.0)
//! and exports `0.1.0`'s handler, so a `0.1.0` component is a `0.2.0`
//! component that imports less (docs/adr/0027-outbound-http-and-variables.md).
//!
//! Imports are `async | trappable` (docs/adr/0022-async-capabilities.md):
//! a host call may wait for a bank without holding a thread, and returns
//! `wasmtime::Result<_>` so the host can end a call with a trap. The WIT is
//! unchanged: to the guest every import still blocks.

wasmtime::component::bindgen!({
    path: "../../wit/platform@0.2.0",
    world: "sfop:platform/api@0.2.0",
    imports: { default: async | trappable },
    exports: { default: async },
});

/// The interfaces by the version that defines them.
pub mod platform {
    /// `sfop:platform@0.1.0`: types, handler and the first five capabilities.
    pub use super::sfop::platform0_1_0::*;
    /// `sfop:platform@0.2.0`: `http` and `config`.
    pub use super::sfop::platform0_2_0::{config, http};
}

/// Instantiates on the calling thread (the instance thread, or a worker
/// that found no instance ready). With async imports wasmtime asks for
/// `instantiate_async`; an sfop instantiation never waits for a host call
/// (no import runs at start, and the epoch callback never yields before
/// the call begins), so its future is ready at the first poll.
pub(crate) fn instantiate_now(
    pre: &ApiPre<crate::host::HostState>,
    store: &mut wasmtime::Store<crate::host::HostState>,
) -> wasmtime::Result<Api> {
    use std::future::Future;
    let mut instantiating = std::pin::pin!(pre.instantiate_async(store));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match instantiating.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(instance) => instance,
        std::task::Poll::Pending => {
            Err(wasmtime::Error::msg("instantiation waited for a host call"))
        }
    }
}
