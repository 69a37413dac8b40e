//! The Kafka record key: which chain an event belongs to.
//!
//! DESIGN invariant 4 (order per chain) rests on every event of one chain
//! having the same key, so it lands in one partition. A chain is identified by
//! its calling list and chain id, so the key is
//!
//! ```text
//! <GSW_CALLING_LIST>:<GSW_CHAIN_ID>
//! ```
//!
//! as UTF-8, with the chain id in decimal (`-` sign if negative, no leading
//! zeros), e.g. `renewals:17`. A calling-list name may itself contain `:`, so
//! a reader splits at the **last** `:` ([`split_chain_key`]); the chain id
//! never contains one.

use crate::event::ContactProcessed;

impl ContactProcessed {
    /// The Kafka record key, `<GSW_CALLING_LIST>:<GSW_CHAIN_ID>` (see the
    /// module documentation for the exact format).
    #[must_use]
    pub fn chain_key(&self) -> String {
        format!("{}:{}", self.calling_list, self.chain_id)
    }
}

/// Splits a key written by [`ContactProcessed::chain_key`] back into calling
/// list and chain id, or `None` if it is not of that form.
#[must_use]
pub fn split_chain_key(key: &str) -> Option<(&str, i64)> {
    let (calling_list, chain_id) = key.rsplit_once(':')?;
    Some((calling_list, chain_id.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::full_event;

    #[test]
    fn key_is_calling_list_colon_chain_id() {
        let mut event = full_event();
        event.calling_list = "renewals".into();
        event.chain_id = 17;
        assert_eq!(event.chain_key(), "renewals:17");
    }

    #[test]
    fn chain_id_is_after_the_last_colon_even_when_the_list_has_colons() {
        for (list, chain_id) in [
            ("renewals:east", 17),
            ("a:b:c", -4),
            ("", 0),
            (":", i64::MAX),
            ("ünïcode", i64::MIN),
        ] {
            let mut event = full_event();
            event.calling_list = list.into();
            event.chain_id = chain_id;
            let key = event.chain_key();
            assert_eq!(split_chain_key(&key), Some((list, chain_id)), "{key}");
        }
    }

    #[test]
    fn split_rejects_keys_without_a_chain_id() {
        for key in ["", "renewals", "renewals:", "renewals:x", "renewals:1.5"] {
            assert_eq!(split_chain_key(key), None, "{key:?}");
        }
    }
}
