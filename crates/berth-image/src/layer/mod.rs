//! Layers: unpacking a layer tar into a directory in overlayfs form, and compression detection.

pub mod apply;
pub mod compression;
pub mod diff;

pub use apply::{apply_layer, apply_layer_known, ApplyStats, LayerError};
pub use compression::{decompressed, Compression};
pub use diff::{
    compress_layer_diff, store_layer_diff, write_layer_diff, CompressedDiff, DiffError, DiffOptions,
    DiffStats,
};
