//! What a request used, in tokens: the one data type the admission, accounting and spend
//! modules share.
//!
//! It sits below all three so their imports form a DAG: usage ← spend ← reservation ←
//! {admission, accounting}. It must not import any of them, nor hold logic beyond
//! arithmetic on its own fields.

use palisade_ledger::UsageSource;

/// Tokens a request used, as far as the gateway knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ActualUsage {
    pub(crate) prompt: u64,
    pub(crate) completion: u64,
    pub(crate) cached: Option<u64>,
    pub(crate) reasoning: Option<u64>,
    pub(crate) source: UsageSource,
}

impl Default for ActualUsage {
    fn default() -> Self {
        Self {
            prompt: 0,
            completion: 0,
            cached: None,
            reasoning: None,
            source: UsageSource::Estimated,
        }
    }
}

impl ActualUsage {
    /// Only the prompt, as estimated: what a request cancelled mid-flight is charged (the
    /// upstream may well have processed its prompt).
    pub(crate) fn prompt_only(prompt: u64) -> Self {
        Self {
            prompt,
            ..Self::default()
        }
    }

    /// Prompt plus completion tokens.
    pub(crate) fn total(&self) -> u64 {
        self.prompt.saturating_add(self.completion)
    }
}
