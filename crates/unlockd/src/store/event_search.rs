//! Personnel text search within one event, the same on both backends: each backend answers
//! lookups on its per-event word index (`search_event_words`) and lists the queued people
//! not indexed yet; the ranking is `domain::search::personnel_ranks` (computed here from the
//! entries directly, `ranks_from_entries`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use sqlx::{Database, Decode, Encode, Executor, FromRow, IntoArguments, Type};

use super::StoreResult;
use crate::domain::search::{misspelled_rank, word_begins_all, Lookup, WordField};

/// The upper bound of the words beginning with `prefix` (bytewise, as both backends'
/// word columns compare).
pub(crate) fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

/// The distinct texts (names, titles, companies) in which every one of `words` begins a
/// word, from the derived text words; `None` when some text is not derived yet (the list
/// could miss it) or more than `limit` texts hold the rarest-looking word.
pub(crate) async fn texts_with_words<DB>(
    conn: &mut DB::Connection,
    words: &[String],
    limit: usize,
) -> StoreResult<Option<Vec<String>>>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> DB::Arguments<'a>: IntoArguments<'a, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    bool: Type<DB> + for<'r> Decode<'r, DB>,
    (bool,): for<'r> FromRow<'r, DB::Row>,
    (String,): for<'r> FromRow<'r, DB::Row>,
{
    let (pending,): (bool,) =
        sqlx::query_as("SELECT EXISTS (SELECT 1 FROM search_texts WHERE indexed = FALSE)")
            .fetch_one(&mut *conn)
            .await?;
    // The longest word is the likeliest to begin few words.
    let Some(word) = words.iter().max_by_key(|w| w.len()).filter(|_| !pending) else {
        return Ok(None);
    };
    let texts: Vec<(String,)> = sqlx::query_as(
        "SELECT text FROM search_text_words WHERE word >= $1 AND word < $2 LIMIT $3",
    )
    .bind(word.as_str())
    .bind(prefix_end(word))
    .bind(limit as i64 + 1)
    .fetch_all(&mut *conn)
    .await?;
    if texts.len() > limit {
        return Ok(None);
    }
    let texts: BTreeSet<String> = texts.into_iter().map(|(t,)| t).collect();
    Ok(Some(
        texts
            .into_iter()
            .filter(|text| word_begins_all(words, text))
            .collect(),
    ))
}

/// One entry of the per-event word index found by a word beginning: whether the word is
/// exactly that beginning, its field, the person.
pub(crate) type WordEntry = (bool, WordField, String);

#[async_trait]
pub(crate) trait EventWordIndex: Send {
    /// The index's entries at `event_id` whose word begins with `prefix` (one range read).
    async fn entries(&mut self, event_id: &str, prefix: &str) -> StoreResult<Vec<WordEntry>>;
    /// The people at `event_id` queued for re-indexing, with their current words.
    async fn queued(
        &mut self,
        event_id: &str,
    ) -> StoreResult<BTreeMap<String, Vec<(String, WordField)>>>;
    /// Known words within each word's typing mistakes.
    async fn corrections(&mut self, words: &[String]) -> StoreResult<Vec<Vec<String>>>;
}

/// The entries at the event whose word begins with `prefix`: the index's for people not
/// queued, and the queued people's current words (their index entries may be stale).
async fn entries(
    index: &mut dyn EventWordIndex,
    event_id: &str,
    queued: &BTreeMap<String, Vec<(String, WordField)>>,
    prefix: &str,
) -> StoreResult<Vec<WordEntry>> {
    let mut found = index.entries(event_id, prefix).await?;
    if !queued.is_empty() {
        found.retain(|(_, _, id)| !queued.contains_key(id));
        for (id, words) in queued {
            for (word, field) in words {
                if word.starts_with(prefix) {
                    found.push((word == prefix, *field, id.clone()));
                }
            }
        }
    }
    Ok(found)
}

/// The people among entries found by `lookup.word` as a beginning that `lookup` finds.
fn select(entries: &[WordEntry], lookup: &Lookup) -> BTreeSet<String> {
    entries
        .iter()
        .filter(|(exact, field, _)| {
            (lookup.prefix || *exact)
                && (!lookup.name_or_title_only || *field == WordField::NameOrTitle)
        })
        .map(|(_, _, id)| id.clone())
        .collect()
}

/// Which of `personnel_ranks`' ranks one entry alone would put its person in for its word:
/// 0 the whole word in name or title, 1 a beginning there, 2 a beginning in the company.
fn entry_rank(exact: bool, field: WordField) -> usize {
    match (field, exact) {
        (WordField::NameOrTitle, true) => 0,
        (WordField::NameOrTitle, false) => 1,
        (WordField::Company, _) => 2,
    }
}

/// `personnel_ranks` computed from each word's entries without building its three sets:
/// a person's rank is the worst over the words of their best entry for that word. The
/// candidates come from the word with the fewest entries and only shrink, so each other
/// word's entries are only checked against them.
pub(crate) fn ranks_from_entries(per_word: &[Vec<WordEntry>]) -> Vec<Vec<String>> {
    let mut ranks = vec![Vec::new(); 3];
    let Some(rarest) = (0..per_word.len()).min_by_key(|&i| per_word[i].len()) else {
        return ranks;
    };
    let mut best: HashMap<&str, usize> = HashMap::new();
    for (exact, field, id) in &per_word[rarest] {
        let rank = entry_rank(*exact, *field);
        best.entry(id.as_str())
            .and_modify(|r| *r = (*r).min(rank))
            .or_insert(rank);
    }
    for (i, entries) in per_word.iter().enumerate() {
        if i == rarest || best.is_empty() {
            continue;
        }
        let mut kept: HashMap<&str, usize> = HashMap::with_capacity(best.len());
        for (exact, field, id) in entries {
            if let Some(&so_far) = best.get(id.as_str()) {
                let rank = so_far.max(entry_rank(*exact, *field));
                kept.entry(id.as_str())
                    .and_modify(|r| *r = (*r).min(rank))
                    .or_insert(rank);
            }
        }
        best = kept;
    }
    for (id, rank) in best {
        ranks[rank].push(id.to_string());
    }
    for rank in &mut ranks {
        rank.sort_unstable();
    }
    ranks
}

/// The ranks of a text search at the event, best first, each in id order (see
/// `personnel_ranks`); when none matches, one rank of misspellings.
pub(crate) async fn ranked_people(
    index: &mut dyn EventWordIndex,
    event_id: &str,
    words: &[String],
) -> StoreResult<Vec<Vec<String>>> {
    let queued = index.queued(event_id).await?;
    let mut per_word = Vec::new();
    for word in words {
        per_word.push(entries(index, event_id, &queued, word).await?);
    }
    let ranks = ranks_from_entries(&per_word);
    if ranks.iter().any(|r| !r.is_empty()) {
        return Ok(ranks);
    }
    let fixes = index.corrections(words).await?;
    let mut found = Vec::new();
    for (i, fixes) in fixes.iter().enumerate() {
        let mut ids: BTreeSet<String> = per_word[i].iter().map(|(_, _, id)| id.clone()).collect();
        for fix in fixes {
            let lookup = Lookup {
                word: fix.clone(),
                prefix: false,
                name_or_title_only: false,
            };
            ids.extend(select(
                &entries(index, event_id, &queued, fix).await?,
                &lookup,
            ));
        }
        found.push(ids);
    }
    Ok(vec![misspelled_rank(&found)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::search::{personnel_ranks, word_lookups};
    use proptest::prelude::*;

    fn entry() -> impl Strategy<Value = WordEntry> {
        (any::<bool>(), any::<bool>(), 0..12u8).prop_map(|(exact, company, id)| {
            let field = if company {
                WordField::Company
            } else {
                WordField::NameOrTitle
            };
            (exact, field, format!("p{id}"))
        })
    }

    proptest! {
        /// The ranks from entries are exactly the ranks of the three lookups' sets.
        #[test]
        fn ranks_from_entries_equal_the_set_ranks(
            per_word in prop::collection::vec(prop::collection::vec(entry(), 0..20), 1..4)
        ) {
            let found: Vec<[BTreeSet<String>; 3]> = per_word
                .iter()
                .map(|entries| word_lookups("w").map(|lookup| select(entries, &lookup)))
                .collect();
            prop_assert_eq!(ranks_from_entries(&per_word), personnel_ranks(&found));
        }
    }
}
