//! Key management at run time: the master-key rotation job and its progress.

pub mod env_file;
pub mod rotation;
