//! The shipped models: what each file is ([`manifest`]), how an image becomes its input
//! ([`preprocess`]), running it through tract ([`infer`]), onnxruntime's outputs that tract
//! must reproduce ([`reference`](mod@reference)) and which shipped variant this CPU runs
//! ([`variant`]).

pub mod infer;
pub mod manifest;
pub mod preprocess;
pub mod reference;
pub mod variant;
