//! End-to-end tests: guests run natively and under cryo, outputs compared.
