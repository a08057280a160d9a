//! Library examples live in this package's `examples` target.
