//! Support code for porch multi-process tests lives in tests/tests/support.
