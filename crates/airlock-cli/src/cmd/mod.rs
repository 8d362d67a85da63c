//! One module per command (or per family of small ones); each has its clap `Args` and a
//! `run`. They import only the leaf modules (`context`, `options`, `output`, `progress`,
//! `hints`, `sink`) and `request`, never each other.

pub mod copy;
pub mod docs;
pub mod fsck;
pub mod load;
pub mod registry;
pub mod request;
pub mod review;
pub mod save;
pub mod serve;
pub mod sign;
pub mod snapshots;
pub mod store;
pub mod sync;
pub mod verify;
