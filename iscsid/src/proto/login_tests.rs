//! Login state machine tests (byte-level exchanges with a scripted target).
