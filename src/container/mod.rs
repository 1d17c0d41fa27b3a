//! What the emissary does inside a user container besides running the command, one concern a
//! module: [`supervision`] (signals, reaping, a sidecar's stop), [`log_capture`] (the child's
//! output teed to the log files) and [`output_capture`] (main's outputs handed to `wait`).
//! `artifact-plugin-sidecar` supervises its plugin with the same [`supervision`].

pub mod log_capture;
pub mod output_capture;
pub mod supervision;
