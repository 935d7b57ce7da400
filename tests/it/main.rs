//! The one integration-test binary: every module starts the real server through `support`.

mod clients;
mod smoke;
mod support;
