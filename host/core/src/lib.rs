//! The shared vocabulary of the sfop data plane: API manifests, the common
//! response envelope, who-is-to-blame errors and the backend traits that the
//! runtime offers to plugins as capabilities.

pub mod access;
pub mod audit;
pub mod backend;
pub mod contract;
pub mod envelope;
pub mod files;
pub mod form;
pub mod html;
pub mod ledger;
pub mod manifest;
pub mod origin;
pub mod outbound;
pub mod outcome;
pub mod package;
pub mod time;

pub use backend::{BankBackend, BankDirectory, Claims, KvError, KvStore};
pub use envelope::{ApiTranId, rsp};
pub use ledger::{Bank, BankCall, BankError, Refusal};
pub use manifest::{
    Access, Budget, Capability, Docs, FieldRef, Limits, Manifest, ManifestError, Route, Variable,
};
pub use outcome::Outcome;
