//! Personnel text search within one event, the same on both backends: each backend answers
//! lookups on its per-event word index (`search_event_words`) and lists the queued people
//! not indexed yet; the ranking is `domain::search::personnel_ranks`.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;

use super::StoreResult;
use crate::domain::search::{misspelled_rank, personnel_ranks, word_lookups, Lookup, WordField};

#[async_trait]
pub(crate) trait EventWordIndex: Send {
    /// The indexed people at `event_id` that `lookup` finds.
    async fn lookup(&mut self, event_id: &str, lookup: &Lookup) -> StoreResult<BTreeSet<String>>;
    /// The people at `event_id` queued for re-indexing, with their current words.
    async fn queued(
        &mut self,
        event_id: &str,
    ) -> StoreResult<BTreeMap<String, Vec<(String, WordField)>>>;
    /// Known words within each word's typing mistakes.
    async fn corrections(&mut self, words: &[String]) -> StoreResult<Vec<Vec<String>>>;
}

/// The people at the event that `lookup` finds: the index's answer for people not queued,
/// and the queued people's current words (their index entries may be stale).
async fn find(
    index: &mut dyn EventWordIndex,
    event_id: &str,
    queued: &BTreeMap<String, Vec<(String, WordField)>>,
    lookup: &Lookup,
) -> StoreResult<BTreeSet<String>> {
    let mut ids = index.lookup(event_id, lookup).await?;
    ids.retain(|id| !queued.contains_key(id));
    for (id, words) in queued {
        if words.iter().any(|(w, f)| lookup.matches(w, *f)) {
            ids.insert(id.clone());
        }
    }
    Ok(ids)
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
        let [a, b, c] = word_lookups(word);
        found.push([
            find(index, event_id, &queued, &a).await?,
            find(index, event_id, &queued, &b).await?,
            find(index, event_id, &queued, &c).await?,
        ]);
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
            ids.extend(find(index, event_id, &queued, &lookup).await?);
        }
        per_word.push(ids);
    }
    Ok(vec![misspelled_rank(&per_word)])
}
