//! Layers: unpacking a layer tar into a directory in overlayfs form, and compression detection.

pub mod apply;
pub mod compression;

pub use apply::{apply_layer, ApplyStats, LayerError};
pub use compression::{decompressed, Compression};
