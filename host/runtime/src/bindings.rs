//! Host bindings for `sfop:platform@0.1.0`, generated once, here.

wasmtime::component::bindgen!({
    path: "../../wit/platform@0.1.0",
    world: "sfop:platform/api",
    exports: { default: async },
});
