//! Loading executables (being written).
