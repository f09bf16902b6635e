//! Packages on the wire: the admin API's JSON form of sfop-core's
//! [`Package`](sfop_core::package::Package) (the manifest text, the
//! component in base64, the cases), defined in sfop-admin-api.

pub use sfop_admin_api::Upload;
