//! Personnel text search within one event, the same on both backends: each backend answers
//! lookups on its per-event word index (`search_event_words`) and lists the queued people
//! not indexed yet; the ranking is `domain::search::personnel_ranks`.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;

use super::StoreResult;
use crate::domain::search::{misspelled_rank, personnel_ranks, word_lookups, Lookup, WordField};

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

/// The ranks of a text search at the event, best first, each in id order (see
/// `personnel_ranks`); when none matches, one rank of misspellings.
pub(crate) async fn ranked_people(
    index: &mut dyn EventWordIndex,
    event_id: &str,
    words: &[String],
) -> StoreResult<Vec<Vec<String>>> {
    let queued = index.queued(event_id).await?;
    let mut found = Vec::new();
    for word in words {
        let beginning = entries(index, event_id, &queued, word).await?;
        found.push(word_lookups(word).map(|lookup| select(&beginning, &lookup)));
    }
    let ranks = personnel_ranks(&found);
    if ranks.iter().any(|r| !r.is_empty()) {
        return Ok(ranks);
    }
    let fixes = index.corrections(words).await?;
    let mut per_word = Vec::new();
    for (i, fixes) in fixes.iter().enumerate() {
        let mut ids = found[i][2].clone();
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
        per_word.push(ids);
    }
    Ok(vec![misspelled_rank(&per_word)])
}
