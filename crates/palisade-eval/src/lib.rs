//! Placeholder: dataset I/O, training, scan and eval runners (being written).
