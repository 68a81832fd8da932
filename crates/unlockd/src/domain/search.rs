//! Turning a user's search text into words for a full-text index, the same way on every
//! backend: lowercase letters and digits, at most eight words, each matched as a prefix.

pub const MAX_SEARCH_WORDS: usize = 8;

pub fn search_words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .take(MAX_SEARCH_WORDS)
        .collect()
}

/// The form in which exact-match filters (department, level) are stored and compared:
/// trimmed and lowercased, so matching ignores case in every script.
pub fn filter_key(text: &str) -> String {
    text.trim().to_lowercase()
}

/// The full-text token standing for an event (any id becomes one alphanumeric word).
pub fn event_token(event_id: &str) -> String {
    format!("ev{}", hex::encode(event_id.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_alphanumeric_lowercase_and_bounded() {
        assert_eq!(
            search_words("  Acme-Retail, Inc. "),
            ["acme", "retail", "inc"]
        );
        assert_eq!(search_words("\"; DROP TABLE x; --"), ["drop", "table", "x"]);
        assert_eq!(search_words("Müller"), ["müller"]);
        assert!(search_words("!!! ***").is_empty());
        assert_eq!(search_words(&"a ".repeat(20)).len(), MAX_SEARCH_WORDS);
    }

    #[test]
    fn event_tokens_are_single_words() {
        for id in ["1001", "E-1", "ä b"] {
            assert_eq!(search_words(&event_token(id)), [event_token(id)]);
        }
        assert_ne!(event_token("1"), event_token("11"));
    }
}
