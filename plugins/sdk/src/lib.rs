//! Write sfop API plugins as plain Rust functions over typed requests and responses.
//!
//! A plugin is one function from [`Request`] to [`Result<Response, ApiError>`],
//! exported with [`api!`]:
//!
//! ```ignore
//! use sfop_sdk::{api, ledger, ApiError, Request, Response};
//!
//! fn handle(_req: &Request) -> Result<Response, ApiError> {
//!     let banks = ledger::bank_status()?;
//!     Ok(Response::success(&serde_json::json!({ "res_cnt": banks.len().to_string() })))
//! }
//!
//! api!(handle);
//! ```
//!
//! Capabilities (`log`, `clock`, `auth_context`, `kv`, `ledger`, and since
//! `sfop:platform@0.2.0` [`http`] and [`config`]) are the WIT imports of
//! `sfop:platform`; a plugin may only use those its manifest declares, or
//! the gateway refuses to load it. A plugin imports only what it calls, so
//! one that uses none of 0.2.0's capabilities is a 0.1.0 plugin.

// The guest's global allocator (see the module for why).
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod alloc;
mod envelope;
pub mod fields;
mod outbound;
mod request;
mod unique;

pub use envelope::{ApiError, Response, bank_answer_fields, bank_success, rsp, yn};
pub use fields::Fields;
pub use request::Request;

/// Raw bindings generated from `wit/platform@0.2.0` (whose world imports
/// 0.1.0's interfaces unchanged). Plugins rarely need them.
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/platform@0.2.0",
        world: "sfop:platform/api@0.2.0",
        pub_export_macro: true,
        default_bindings_module: "sfop_sdk::bindings",
        generate_all,
    });
}

/// The raw interfaces, each at the version that defines it.
pub mod platform {
    pub use crate::bindings::exports::sfop::platform0_1_0::handler;
    pub use crate::bindings::sfop::platform0_1_0::{auth_context, clock, kv, ledger, log, types};
    pub use crate::bindings::sfop::platform0_2_0::{config as raw_config, http as raw_http};
}

pub use outbound::{config, http};
pub use platform::{auth_context, clock, kv, ledger, log};

/// Exports a handler function `fn(&Request) -> Result<Response, ApiError>` as
/// the plugin's `sfop:platform/handler`.
///
/// `api!(handle, log_panics)` also logs the message of a panic through the
/// `log` capability before the instance traps, so that the operator's fault
/// line says what went wrong (the manifest must declare `log`).
#[macro_export]
macro_rules! api {
    ($handler:path, log_panics) => {
        struct __SfopApi;

        impl $crate::platform::handler::Guest for __SfopApi {
            fn handle(raw: $crate::platform::types::Request) -> $crate::platform::types::Response {
                $crate::__private::log_panics();
                $crate::__private::dispatch(raw, $handler)
            }
        }

        $crate::bindings::export!(__SfopApi);
    };
    ($handler:path) => {
        struct __SfopApi;

        impl $crate::platform::handler::Guest for __SfopApi {
            fn handle(raw: $crate::platform::types::Request) -> $crate::platform::types::Response {
                $crate::__private::dispatch(raw, $handler)
            }
        }

        $crate::bindings::export!(__SfopApi);
    };
}

#[doc(hidden)]
pub mod __private {
    use crate::platform::types;
    use crate::{ApiError, Request, Response};

    /// Logs a panic's message and place (`panicked at FILE:LINE:COL:\nMESSAGE`,
    /// the prefix the host looks for) at error level before the trap. Only
    /// plugins that ask for it (`api!(handle, log_panics)`) import `log`.
    pub fn log_panics() {
        std::panic::set_hook(Box::new(|info| {
            let message = format!("{info}");
            crate::log::log(crate::log::Level::Error, &message);
        }));
    }

    /// Runs a typed handler over the raw WIT request and turns its outcome,
    /// success or [`ApiError`], into the raw WIT response.
    pub fn dispatch(
        raw: types::Request,
        handler: impl FnOnce(&Request) -> Result<Response, ApiError>,
    ) -> types::Response {
        let request = Request::from_raw(raw);
        // A query that names a field twice is ambiguous: refused before the
        // handler reads either value (the gateway refuses it too).
        let response = match request.repeated_query() {
            Some(name) => Response::from(ApiError::format(format!(
                "{name}: query parameter given more than once"
            ))),
            None => handler(&request).unwrap_or_else(Response::from),
        };
        response.into_raw()
    }
}
