//! Key management at run time: the master-key rotation job and its progress.

pub mod rotation;
