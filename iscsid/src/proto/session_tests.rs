//! Session tests: a scripted target drives `Session` with PDUs.
