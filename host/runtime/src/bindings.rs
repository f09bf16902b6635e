//! Host bindings for `sfop:platform@0.1.0`, generated once, here.
//!
//! Imports are `async | trappable` (docs/adr/0022-async-capabilities.md):
//! a host call may wait for a bank without holding a thread, and returns
//! `wasmtime::Result<_>` so the host can end a call with a trap. The WIT is
//! unchanged: to the guest every import still blocks.

wasmtime::component::bindgen!({
    path: "../../wit/platform@0.1.0",
    world: "sfop:platform/api",
    imports: { default: async | trappable },
    exports: { default: async },
});

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
