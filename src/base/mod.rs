//! The floor every other layer stands on, and that depends on nothing of ptxd's: the result
//! contract's words ([`outcome`]), the stop-on-drop thread and its backoff ([`worker`]), the
//! service log ([`logging`]), durable writes and digests ([`files`]) and the median of
//! repeated runs that every speed figure is taken as ([`timings`]).

pub mod files;
pub mod logging;
pub mod outcome;
pub mod timings;
pub mod worker;
