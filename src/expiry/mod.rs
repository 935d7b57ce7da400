//! Turning silence into "offline": the timing wheel each shard keeps of its online users, and
//! the histogram of how late each offline was declared.

mod lag;
mod timing_wheel;

pub use lag::LagHistogram;
pub use timing_wheel::{TICK_MS, TimingWheel};
