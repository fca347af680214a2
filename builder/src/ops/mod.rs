//! Build operations: COPY/ADD, RUN and user resolution, each in its own module.
//!
//! - [`copy`] plans the layer of a COPY/ADD step ([`copy::plan_copy`]) and writes it;
//! - [`add`] holds ADD's extras (local archives, URLs), [`archive`] archive detection and safe
//!   unpacking, [`fetch`] the URL [`fetch::Fetcher`], [`chmod`] `--chmod` parsing;
//! - [`users`] resolves USER and `--chown` against a rootfs's passwd and group files;
//! - [`run`] executes a RUN step and [`mounts`] prepares its `--mount`s.
pub mod add;
pub mod archive;
pub mod chmod;
pub mod copy;
pub mod fetch;
pub mod mounts;
pub mod run;
pub mod users;
