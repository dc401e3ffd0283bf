//! Signed MQTT envelope (WIP).
