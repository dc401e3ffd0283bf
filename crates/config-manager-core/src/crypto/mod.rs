//! Cryptography (WIP).
