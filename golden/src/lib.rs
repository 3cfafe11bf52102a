//! Golden statefiles: regression data for every released format version.
