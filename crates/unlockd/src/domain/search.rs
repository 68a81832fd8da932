//! Turning a user's search text into words for a full-text index, the same way on every
//! backend: lowercase letters and digits, at most eight words, each matched as a prefix.

use std::collections::BTreeSet;

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

// ---------------------------------------------------------------------------------------
// Relevance. Both backends fetch candidates from their indexes and leave the decisions
// (which tier a match is in, which misspellings count) to the functions below, so the
// same query ranks the same way on SQLite and PostgreSQL.

/// Words a company name may end with that only say what legal form it has; a search may
/// leave them out ("Acme" finds "Acme GmbH") or name another form.
pub const LEGAL_SUFFIXES: &[&str] = &[
    "ab",
    "ag",
    "as",
    "bv",
    "co",
    "company",
    "corp",
    "corporation",
    "gmbh",
    "group",
    "inc",
    "incorporated",
    "kg",
    "kk",
    "limited",
    "llc",
    "llp",
    "ltd",
    "nv",
    "oy",
    "oyj",
    "plc",
    "pty",
    "sa",
    "sarl",
    "sas",
    "spa",
    "srl",
    "ооо",
    "зао",
    "оао",
];

/// One word folded the way every index stores it: lowercase, accents removed.
pub fn fold_word(word: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    word.to_lowercase()
        .nfd()
        .filter(|c| !('\u{300}'..='\u{36f}').contains(c))
        .nfc()
        .collect()
}

/// All the words of a text (runs of letters and digits), folded.
pub fn folded_words(text: &str) -> Vec<String> {
    use unicode_normalization::UnicodeNormalization;
    let text: String = text.nfc().collect();
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(fold_word)
        .filter(|w| !w.is_empty())
        .collect()
}

/// The words of a company name without its trailing legal-form words (at least one word
/// is always kept, so "AB" alone stays "ab").
fn core_words(mut words: Vec<String>) -> Vec<String> {
    while words.len() > 1
        && words
            .last()
            .is_some_and(|w| LEGAL_SUFFIXES.contains(&w.as_str()))
    {
        words.pop();
    }
    words
}

/// A company's identity for exact matching: its core words joined without separators, so
/// case, accents, spacing, punctuation and the legal form do not matter.
pub fn company_key(name: &str) -> String {
    core_words(folded_words(name)).concat()
}

/// How a company matched a company search, best first. Ties within a rank break on the
/// company key, then the stored name, then the person id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CompanyRank {
    /// The same name once case, accents, punctuation and legal form are ignored.
    Exact,
    /// Every searched word is a whole word of the name.
    WholeWords,
    /// Every searched word begins a word of the name.
    Prefix,
    /// Every searched word is within a few typing mistakes of a word of the name (the
    /// total number of mistakes orders these). Only used when nothing matches otherwise.
    Misspelled(u32),
}

/// A company search, prepared once.
#[derive(Debug, Clone)]
pub struct CompanyQuery {
    pub key: String,
    /// The words that must match: the query's words without trailing legal-form words.
    pub required: Vec<String>,
}

impl CompanyQuery {
    /// `None` when the text has no letter or digit (such a search matches nobody).
    pub fn parse(text: &str) -> Option<CompanyQuery> {
        let words: Vec<String> = folded_words(text)
            .into_iter()
            .take(MAX_SEARCH_WORDS)
            .collect();
        if words.is_empty() {
            return None;
        }
        let required = core_words(words);
        Some(CompanyQuery {
            key: required.concat(),
            required,
        })
    }

    /// How `name` matches, without misspellings.
    pub fn rank(&self, name: &str) -> Option<CompanyRank> {
        let words = folded_words(name);
        if core_words(words.clone()).concat() == self.key {
            return Some(CompanyRank::Exact);
        }
        if self.required.iter().all(|q| words.contains(q)) {
            return Some(CompanyRank::WholeWords);
        }
        if self
            .required
            .iter()
            .all(|q| words.iter().any(|w| w.starts_with(q.as_str())))
        {
            return Some(CompanyRank::Prefix);
        }
        None
    }

    /// Whether every required word begins a word of each of these names, so that a
    /// full-text index may narrow by the company words (a name found by its key or as a
    /// misspelling may not hold them).
    pub fn words_begin_all(&self, names: &[String]) -> bool {
        names.iter().all(|name| {
            let words = folded_words(name);
            self.required
                .iter()
                .all(|q| words.iter().any(|w| w.starts_with(q.as_str())))
        })
    }

    /// How `name` matches, allowing misspelled words.
    pub fn rank_misspelled(&self, name: &str) -> Option<CompanyRank> {
        if let Some(rank) = self.rank(name) {
            return Some(rank);
        }
        let words = folded_words(name);
        let mut total = 0;
        for q in &self.required {
            let best = words
                .iter()
                .filter_map(|w| {
                    if w.starts_with(q.as_str()) {
                        Some(0)
                    } else {
                        within_typos(q, w)
                    }
                })
                .min()?;
            total += best;
        }
        Some(CompanyRank::Misspelled(total))
    }
}

/// Whether every one of `words` begins a word of `text` (how a full-text index matches
/// prefix terms).
pub fn word_begins_all(words: &[String], text: &str) -> bool {
    let folded = folded_words(text);
    words
        .iter()
        .all(|q| folded.iter().any(|w| w.starts_with(q.as_str())))
}

/// A contact search's role words when the role is its only person filter (a person-name
/// filter present, or a role without any word, gives `None`).
pub fn role_only_words(role: Option<&str>, person_name: Option<&str>) -> Option<Vec<String>> {
    if person_name.is_some_and(|t| !t.trim().is_empty()) {
        return None;
    }
    let words: Vec<String> = folded_words(role?)
        .into_iter()
        .take(MAX_SEARCH_WORDS)
        .collect();
    (!words.is_empty()).then_some(words)
}

/// How many typing mistakes a searched word may contain: none in short words or words with
/// digits (so "6" never finds "8" and "ab" never finds "an"), one from four letters, two
/// from eight.
pub fn allowed_typos(word: &str) -> u32 {
    let len = word.chars().count();
    if word.chars().any(|c| c.is_numeric()) || len < 4 {
        0
    } else if len < 8 {
        1
    } else {
        2
    }
}

/// The mistakes between a searched word and a stored word, if within what the searched
/// word allows: wrong, missing, extra and swapped adjacent characters each count one.
pub fn within_typos(query: &str, word: &str) -> Option<u32> {
    let allowed = allowed_typos(query);
    if allowed == 0 {
        return None;
    }
    let distance = edit_distance(query, word, allowed)?;
    (distance <= allowed).then_some(distance)
}

/// Optimal-string-alignment distance, or `None` once it must exceed `limit`.
fn edit_distance(a: &str, b: &str, limit: u32) -> Option<u32> {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.len().abs_diff(b.len()) > limit as usize {
        return None;
    }
    let width = b.len() + 1;
    let mut rows = vec![vec![0u32; width]; a.len() + 1];
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j as u32;
    }
    for i in 1..=a.len() {
        rows[i][0] = i as u32;
        let mut row_min = rows[i][0];
        for j in 1..=b.len() {
            let cost = u32::from(a[i - 1] != b[j - 1]);
            let mut d = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = d;
            row_min = row_min.min(d);
        }
        if row_min > limit {
            return None;
        }
    }
    Some(rows[a.len()][b.len()])
}

/// The trigrams a vocabulary word is indexed under (padded, so short words have some). A
/// word within `allowed_typos` of another shares at least `min_shared_grams` of them.
pub fn word_grams(word: &str) -> Vec<String> {
    let chars: Vec<char> = format!("  {word} ").chars().collect();
    let mut grams: Vec<String> = chars.windows(3).map(|w| w.iter().collect()).collect();
    grams.sort();
    grams.dedup();
    grams
}

/// A wrong, missing or extra character changes at most three trigrams, two swapped ones at
/// most four.
pub fn min_shared_grams(word: &str) -> i64 {
    let grams = word_grams(word).len() as i64;
    (grams - 4 * i64::from(allowed_typos(word))).max(1)
}

/// Which of a person's fields a word came from, as the per-event word index stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WordField {
    /// Full name or title.
    NameOrTitle,
    Company,
}

impl WordField {
    pub fn code(self) -> &'static str {
        match self {
            WordField::NameOrTitle => "n",
            WordField::Company => "c",
        }
    }

    /// The field a stored code names (anything but "c" is name or title).
    pub fn from_code(code: &str) -> WordField {
        if code == "c" {
            WordField::Company
        } else {
            WordField::NameOrTitle
        }
    }
}

/// A person's indexed words: `(word, field)`, without repeats.
pub fn person_words(
    full_name: Option<&str>,
    title: Option<&str>,
    company: Option<&str>,
) -> Vec<(String, WordField)> {
    let mut words: Vec<(String, WordField)> = Vec::new();
    for (text, field) in [
        (full_name, WordField::NameOrTitle),
        (title, WordField::NameOrTitle),
        (company, WordField::Company),
    ] {
        for word in folded_words(text.unwrap_or_default()) {
            words.push((word, field));
        }
    }
    words.sort();
    words.dedup();
    words
}

/// One question to the per-event word index: who has `word` (or a word beginning with it)
/// in name or title only, or in any field.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lookup {
    pub word: String,
    pub prefix: bool,
    pub name_or_title_only: bool,
}

impl Lookup {
    pub fn matches(&self, word: &str, field: WordField) -> bool {
        (!self.name_or_title_only || field == WordField::NameOrTitle)
            && if self.prefix {
                word.starts_with(self.word.as_str())
            } else {
                word == self.word
            }
    }
}

/// The lookups a personnel text search needs for each word: whole in name or title, a
/// beginning in name or title, a beginning anywhere.
pub fn word_lookups(word: &str) -> [Lookup; 3] {
    let lookup = |prefix, name_or_title_only| Lookup {
        word: word.to_string(),
        prefix,
        name_or_title_only,
    };
    [lookup(false, true), lookup(true, true), lookup(true, false)]
}

fn intersect_all<'a>(sets: impl Iterator<Item = &'a BTreeSet<String>>) -> BTreeSet<String> {
    let mut result: Option<BTreeSet<String>> = None;
    for set in sets {
        result = Some(match result {
            None => set.clone(),
            Some(r) => r.intersection(set).cloned().collect(),
        });
    }
    result.unwrap_or_default()
}

/// The ranks of a personnel text search, best first, each in id order: every word whole in
/// the name or title; then as word beginnings there; then anywhere in name, title or
/// company. `found[i]` answers `word_lookups(words[i])`.
pub fn personnel_ranks(found: &[[BTreeSet<String>; 3]]) -> Vec<Vec<String>> {
    let whole = intersect_all(found.iter().map(|f| &f[0]));
    let begins = intersect_all(found.iter().map(|f| &f[1]));
    let anywhere = intersect_all(found.iter().map(|f| &f[2]));
    vec![
        whole.iter().cloned().collect(),
        begins.difference(&whole).cloned().collect(),
        anywhere.difference(&begins).cloned().collect(),
    ]
}

/// The last resort when no rank matched: people with, for every word, a word beginning
/// with it or one of its corrections (`found[i]`: the union for `words[i]`), in id order.
pub fn misspelled_rank(found: &[BTreeSet<String>]) -> Vec<String> {
    intersect_all(found.iter()).into_iter().collect()
}

/// Where a page starting at `offset` with `size` rows falls in consecutive groups of
/// `counts` rows: `(group, offset in group, rows from it)` for every group it touches.
pub fn page_slices(counts: &[i64], offset: i64, size: i64) -> Vec<(usize, i64, i64)> {
    let mut slices = Vec::new();
    let mut skip = offset.max(0);
    let mut want = size.max(0);
    for (group, &count) in counts.iter().enumerate() {
        if want == 0 {
            break;
        }
        if skip >= count {
            skip -= count;
            continue;
        }
        let take = (count - skip).min(want);
        slices.push((group, skip, take));
        want -= take;
        skip = 0;
    }
    slices
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

    #[test]
    fn company_keys_ignore_case_accents_punctuation_and_legal_form() {
        assert_eq!(
            company_key("Müller-Werke GmbH"),
            company_key("muller werke")
        );
        assert_eq!(company_key("ACME, Inc."), "acme");
        assert_eq!(company_key("AB"), "ab");
        assert_ne!(
            company_key("Company 6 GmbH"),
            company_key("Company 60 GmbH")
        );
    }

    #[test]
    fn company_ranks() {
        let q = CompanyQuery::parse("Company 6 GmbH").unwrap();
        assert_eq!(q.rank("company 6 gmbh"), Some(CompanyRank::Exact));
        assert_eq!(q.rank("Company 6 Inc"), Some(CompanyRank::Exact));
        assert_eq!(q.rank("Company 60 GmbH"), Some(CompanyRank::Prefix));
        assert_eq!(
            q.rank("Holding Company 6 Group GmbH"),
            Some(CompanyRank::WholeWords)
        );
        assert_eq!(q.rank("Company 16 GmbH"), None);
        assert_eq!(q.rank_misspelled("Company 8 GmbH"), None);
        let q = CompanyQuery::parse("Nordic Robotcs").unwrap();
        assert_eq!(q.rank("Nordic Robotics AB"), None);
        assert_eq!(
            q.rank_misspelled("Nordic Robotics AB"),
            Some(CompanyRank::Misspelled(1))
        );
        assert!(CompanyQuery::parse("!!! --").is_none());
    }

    #[test]
    fn typos_are_bounded_by_word_length() {
        assert_eq!(within_typos("robotcs", "robotics"), Some(1));
        assert_eq!(within_typos("robtoics", "robotics"), Some(1));
        assert_eq!(within_typos("logstcis", "logistics"), Some(2));
        assert_eq!(within_typos("ab", "an"), None);
        assert_eq!(within_typos("blue", "blues"), Some(1));
        assert_eq!(within_typos("blue", "glue"), Some(1));
        assert_eq!(within_typos("blue", "black"), None);
        assert_eq!(within_typos("6", "8"), None);
    }

    #[test]
    fn misspellings_share_enough_grams() {
        for (query, word) in [
            ("robotcs", "robotics"),
            ("logstcis", "logistics"),
            ("blue", "glue"),
        ] {
            let stored = word_grams(word);
            let shared = word_grams(query)
                .iter()
                .filter(|g| stored.contains(g))
                .count() as i64;
            assert!(shared >= min_shared_grams(query), "{query} {word}");
        }
    }

    #[test]
    fn personnel_ranks_from_word_sets() {
        let set = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        // "sales": whole for b, d; beginning for a, b, d, e; anywhere also c.
        let found = [[
            set(&["b", "d"]),
            set(&["a", "b", "d", "e"]),
            set(&["a", "b", "c", "d", "e"]),
        ]];
        assert_eq!(
            personnel_ranks(&found),
            [vec!["b", "d"], vec!["a", "e"], vec!["c"]]
        );
        let two = [
            found[0].clone(),
            [set(&["d"]), set(&["d", "e"]), set(&["c", "d", "e"])],
        ];
        assert_eq!(personnel_ranks(&two), [vec!["d"], vec!["e"], vec!["c"]]);
        assert_eq!(misspelled_rank(&[set(&["a", "b"]), set(&["b"])]), ["b"]);
        let words = person_words(Some("Sales Léa"), Some("Head of Sales"), Some("Sales AB"));
        assert!(words.contains(&("lea".into(), WordField::NameOrTitle)));
        assert!(words.contains(&("sales".into(), WordField::Company)));
        assert_eq!(words.iter().filter(|(w, _)| w == "sales").count(), 2);
        let [whole, begins, anywhere] = word_lookups("sal");
        assert!(!whole.matches("sales", WordField::NameOrTitle));
        assert!(begins.matches("sales", WordField::NameOrTitle));
        assert!(!begins.matches("sales", WordField::Company));
        assert!(anywhere.matches("sales", WordField::Company));
    }

    #[test]
    fn pages_span_groups() {
        assert_eq!(page_slices(&[3, 5, 2], 0, 2), [(0, 0, 2)]);
        assert_eq!(page_slices(&[3, 5, 2], 2, 4), [(0, 2, 1), (1, 0, 3)]);
        assert_eq!(page_slices(&[3, 5, 2], 7, 10), [(1, 4, 1), (2, 0, 2)]);
        assert!(page_slices(&[3], 5, 2).is_empty());
    }
}
