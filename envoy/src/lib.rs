//! Envoys: side effects on the outside world, triggered by live actions or
//! view changes, whose results come back as new actions through the
//! chronicler with deterministic ids.
//!
//! An envoy never acts on history that is being replayed, rebuilt or
//! restored, and a crash and retry never records an outcome twice.
//!
//! This crate is filled by the issue "Envoys"; it is empty until then.
