//! Unit tests of the virtual bank through its Rust API and the backend trait.

use super::*;
