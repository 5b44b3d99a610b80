//! The model runner: one model on llama.cpp ([`engine`]), or a BERT embedding model on Ward's
//! own encoder ([`bert`]), served over a Unix socket in the line protocol of [`protocol`]. Only the `ward-runner` program links llama.cpp; the daemon
//! and the CLI speak to it through the socket.

pub mod bert;
pub mod engine;
pub mod protocol;
