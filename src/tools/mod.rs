//! What the binary offers besides the service, for the people who install and tune it:
//! `ptxd doctor` ([`doctor`]) and `ptxd bench --pipeline` ([`bench`](mod@bench)).

pub mod bench;
pub mod doctor;
