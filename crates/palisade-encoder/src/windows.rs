//! Input formatting: channels, windows over a text's tokens, pair encoding.
//!
//! Must stay identical to `python/encoder_ref.py` (`format_windows`), which
//! the trainer uses: a model scored on inputs formatted differently from
//! its training data is a different model. Token ids in, token ids out; no
//! tokenizer and no tensors here.

use crate::EncoderError;

/// `[CLS]` in the uncased BERT vocabulary.
pub const CLS_ID: u32 = 101;
/// `[SEP]` in the uncased BERT vocabulary.
pub const SEP_ID: u32 = 102;

/// Where a text comes from; its name is the first segment of every window,
/// so the model can judge a user turn and a retrieved document differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// A user (or other author-role) message.
    User = 0,
    /// The system prompt.
    System = 1,
    /// A retrieved document.
    Retrieved = 2,
    /// A tool call's result.
    ToolOutput = 3,
}

impl Channel {
    /// Every channel, in the order of the Python mirror's `CHANNELS`
    /// (`ALL[c as usize] == c`).
    pub const ALL: [Channel; 4] = [
        Channel::User,
        Channel::System,
        Channel::Retrieved,
        Channel::ToolOutput,
    ];

    /// The exact text the model sees for this channel.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::User => "user",
            Channel::System => "system",
            Channel::Retrieved => "retrieved",
            Channel::ToolOutput => "tool_output",
        }
    }

    /// The channel named `name` (exact, lowercase).
    pub fn parse(name: &str) -> Result<Self, EncoderError> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == name)
            .ok_or_else(|| EncoderError::Channel(name.to_owned()))
    }
}

/// One model input row: `[CLS] channel [SEP] text… [SEP]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Token ids, specials included.
    pub input_ids: Vec<u32>,
    /// 0 for `[CLS] channel [SEP]`, 1 for the text and the final `[SEP]`.
    pub token_type_ids: Vec<u32>,
}

/// Text tokens per window once `[CLS]`, the channel and two `[SEP]`s are in
/// (`None` when nothing is left for text).
pub fn text_width(max_tokens: usize, channel_len: usize) -> Option<usize> {
    max_tokens
        .checked_sub(3 + channel_len)
        .filter(|&width| width > 0)
}

/// Windows of `width` ids starting every `stride` ids, until one reaches the
/// end (the last may be shorter; no ids give one empty window). Past
/// `max_windows`, the first `max_windows / 2` and the last
/// `max_windows - max_windows / 2` are kept: injected instructions are
/// often at a document's end. `width`, `stride`, `max_windows` are ≥ 1.
pub fn split(ids: &[u32], width: usize, stride: usize, max_windows: usize) -> Vec<&[u32]> {
    debug_assert!(width > 0 && stride > 0 && max_windows > 0);
    let mut windows = Vec::new();
    let mut start = 0;
    loop {
        windows.push(&ids[start..ids.len().min(start + width)]);
        if start + width >= ids.len() {
            break;
        }
        start += stride;
    }
    if windows.len() > max_windows {
        let head = max_windows / 2;
        let tail = max_windows - head;
        windows.drain(head..windows.len() - tail);
    }
    windows
}

/// The pair encoding of each window of `text_ids`.
pub fn format(
    channel_ids: &[u32],
    text_ids: &[u32],
    width: usize,
    stride: usize,
    max_windows: usize,
) -> Vec<Window> {
    split(text_ids, width, stride, max_windows)
        .into_iter()
        .map(|text| {
            let first = channel_ids.len() + 2;
            let mut input_ids = Vec::with_capacity(first + text.len() + 1);
            input_ids.push(CLS_ID);
            input_ids.extend_from_slice(channel_ids);
            input_ids.push(SEP_ID);
            input_ids.extend_from_slice(text);
            input_ids.push(SEP_ID);
            let mut token_type_ids = vec![0; first];
            token_type_ids.resize(input_ids.len(), 1);
            Window {
                input_ids,
                token_type_ids,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(n: u32, width: usize, stride: usize, max_windows: usize, expected: &[(u32, u32)]) {
        let ids: Vec<u32> = (0..n).collect();
        let got: Vec<(u32, u32)> = split(&ids, width, stride, max_windows)
            .iter()
            .map(|w| (w.first().copied().unwrap_or(0), w.len() as u32))
            .collect();
        assert_eq!(got, expected, "n={n} width={width} stride={stride}");
    }

    #[test]
    fn windows_cover_the_text_and_stop_at_its_end() {
        // (first id, length) per window.
        check(0, 4, 3, 8, &[(0, 0)]);
        check(3, 4, 3, 8, &[(0, 3)]);
        check(4, 4, 3, 8, &[(0, 4)]);
        check(5, 4, 3, 8, &[(0, 4), (3, 2)]);
        check(7, 4, 3, 8, &[(0, 4), (3, 4)]);
        check(8, 4, 3, 8, &[(0, 4), (3, 4), (6, 2)]);
        // A stride equal to the width: no overlap.
        check(8, 4, 4, 8, &[(0, 4), (4, 4)]);
    }

    #[test]
    fn too_many_windows_keep_head_and_tail() {
        // 10 windows (starts 0, 2, …, 18), 4 kept: 2 first, 2 last.
        check(21, 3, 2, 4, &[(0, 3), (2, 3), (16, 3), (18, 3)]);
        // Odd cap: the tail gets the extra window.
        check(21, 3, 2, 3, &[(0, 3), (16, 3), (18, 3)]);
        check(21, 3, 2, 1, &[(18, 3)]);
    }

    #[test]
    fn pair_encoding_marks_the_text_segment() {
        let windows = format(&[5, 6], &[7, 8, 9], 2, 1, 8);
        assert_eq!(windows.len(), 2);
        assert_eq!(windows[0].input_ids, [101, 5, 6, 102, 7, 8, 102]);
        assert_eq!(windows[0].token_type_ids, [0, 0, 0, 0, 1, 1, 1]);
        assert_eq!(windows[1].input_ids, [101, 5, 6, 102, 8, 9, 102]);
        let empty = format(&[5], &[], 4, 4, 8);
        assert_eq!(empty[0].input_ids, [101, 5, 102, 102]);
        assert_eq!(empty[0].token_type_ids, [0, 0, 0, 1]);
    }

    #[test]
    fn channels_are_exact_names() {
        for (i, channel) in Channel::ALL.into_iter().enumerate() {
            assert_eq!(Channel::parse(channel.as_str()).unwrap(), channel);
            assert_eq!(channel as usize, i);
        }
        for bad in ["User", "tool", "tool-output", "", "assistant"] {
            assert!(matches!(Channel::parse(bad), Err(EncoderError::Channel(c)) if c == bad));
        }
        assert_eq!(text_width(10, 3), Some(4));
        assert_eq!(text_width(6, 3), None);
        assert_eq!(text_width(2, 3), None);
    }
}
