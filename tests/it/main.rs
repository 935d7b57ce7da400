//! The one integration-test binary: every module starts the real server through `support`.

mod smoke;
mod support;
