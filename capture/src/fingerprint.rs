//! Query fingerprints as pt-query-digest users know them, and their stable 64-bit ids.
