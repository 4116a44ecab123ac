//! Placeholder: the detection engine (being written).
