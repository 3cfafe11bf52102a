//! gofer
