//! PLACEHOLDER (owned by the messages helper): OpenFlow messages.
