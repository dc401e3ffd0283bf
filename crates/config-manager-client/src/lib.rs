//! Client library (WIP).
