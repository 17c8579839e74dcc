//! Destinations, activations, and (with the outbox) the payloads they send.

pub mod api;
pub mod events;
pub mod outbox;
pub mod payload;

/// The five event choices of an activation, as Segment names them now.
pub const EVENTS: [&str; 5] = [
    "Audience Entered",
    "Audience Exited",
    "Audience Membership Changed",
    "Entity Added",
    "Entity Removed",
];

/// The identify event's earlier name, still accepted (stored and shown as the new one).
pub const MEMBERSHIP_CHANGED_ALIAS: &str = "Audience Entered and Exited";

/// The stored name of an event choice: an alias becomes the name it stands for.
pub fn canonical_event(event: &str) -> &str {
    if event == MEMBERSHIP_CHANGED_ALIAS {
        "Audience Membership Changed"
    } else {
        event
    }
}

/// Whether "send events for current profiles and entities" applies: Segment offers it
/// for the events that say something is in, not for exits and removals.
pub fn may_send_existing(event: &str) -> bool {
    matches!(
        event,
        "Audience Entered" | "Audience Membership Changed" | "Entity Added"
    )
}

/// Destination presets.
pub const PRESETS: [&str; 5] = ["segment", "braze", "iterable", "customerio", "webhook"];

pub fn is_entity_event(event: &str) -> bool {
    event == "Entity Added" || event == "Entity Removed"
}
