//! The Berth image store: image references, a content-addressed blob store, unpacked layers,
//! image metadata, and the archive formats (`docker save`/`load`, OCI layouts, rootfs imports).
//!
//! Nothing here knows about HTTP; the daemon drives it through [`ImageStore`].

mod archive;
pub mod config;
pub mod content;
pub mod derive;
pub mod digest;
pub mod error;
mod import;
pub mod layer;
pub mod layers;
pub mod manifest;
pub mod meta;
pub mod pull;
pub mod reference;
mod store;
pub mod time;

pub use config::{ContainerConfig, ImageConfig};
pub use derive::DerivedLayer;
pub use digest::{Digest, DigestError, DigestReader, DigestWriter};
pub use error::{ErrorKind, ImageError, Result};
pub use import::ImportOptions;
pub use reference::{Reference, ReferenceError};
pub use store::{DeleteItem, ImageInfo, ImageStore};
