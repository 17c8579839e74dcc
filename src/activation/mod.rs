//! Destinations, activations, and (with the outbox) the payloads they send.

pub mod api;
pub mod events;
pub mod payload;

/// The five event choices of an activation.
pub const EVENTS: [&str; 5] = [
    "Audience Entered",
    "Audience Exited",
    "Audience Entered and Exited",
    "Entity Added",
    "Entity Removed",
];

/// Destination presets.
pub const PRESETS: [&str; 5] = ["segment", "braze", "iterable", "customerio", "webhook"];

pub fn is_entity_event(event: &str) -> bool {
    event == "Entity Added" || event == "Entity Removed"
}
