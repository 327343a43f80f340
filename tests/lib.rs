//! Helpers for the end-to-end tests (which live in `tests/`).
