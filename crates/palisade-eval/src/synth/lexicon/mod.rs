//! The word lists and templates the generators draw from, split by which side of the
//! classifier they feed. Data only: no randomness and no composition happen here.

pub(crate) mod attacks;
pub(crate) mod benign;
pub(crate) mod tool_docs;
