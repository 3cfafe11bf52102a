//! statefile
