//! Model files: what a GGUF file says about its model (architecture, size, quantisation,
//! context length, chat template), read without llama.cpp, as hostile input.

pub mod gguf;
