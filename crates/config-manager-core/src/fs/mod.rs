//! File-system helpers shared by the service, its CLI and the client library.
//!
//! Why one place: "temporary file, fsync, rename, directory fsync, 0600" was
//! written by hand in six places whose copies disagreed on the directory
//! fsync and the temporary file's name (issue 27).

pub mod atomic;
