//! Turning silence into "offline": the timing wheel each shard keeps of its online users.

mod timing_wheel;

pub use timing_wheel::TimingWheel;
