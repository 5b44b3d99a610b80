//! Model files: what a GGUF file says about its model (architecture, size, quantisation,
//! context length, chat template), read without llama.cpp, as hostile input; and the protocol
//! the daemon speaks with a model's runner.

pub mod convert;
pub mod gguf;
pub mod runner;
pub mod schema;
pub mod tools;
