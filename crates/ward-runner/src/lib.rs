//! The model runner: one model on llama.cpp ([`engine`]), served over a Unix socket in the
//! line protocol of [`protocol`]. Only the `ward-runner` program links llama.cpp; the daemon
//! and the CLI speak to it through the socket.

pub mod engine;
pub mod protocol;
