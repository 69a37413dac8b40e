//! `Record`: an event as it goes to Kafka — key, value and GUID, serialized
//! once.
//!
//! DESIGN invariant 3 ("bytes are relayed as produced") starts here: the value
//! is [`ContactProcessed::to_json_vec`], computed exactly once, and it is the
//! body the relay will POST. The key is [`ContactProcessed::chain_key`]
//! (`<calling list>:<chain id>`), so one chain stays in one partition. The
//! GUID travels in the `cpn.guid` header so the relay can set `ETag` without
//! parsing. Pure: no Kafka types here.

use cpn_schema::{ContactProcessed, Guid};

/// One event ready to hand to Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The event's `GSW_MESSAGE_GUID`, exactly as written; the `cpn.guid`
    /// header and the identity used in logs.
    pub guid: Guid,
    /// The Kafka key: `<GSW_CALLING_LIST>:<GSW_CHAIN_ID>`.
    pub key: String,
    /// The Kafka value: the canonical JSON body.
    pub value: Vec<u8>,
}

impl Record {
    /// Serializes `event` (once) into key, value and GUID.
    #[must_use]
    pub fn from_event(event: &ContactProcessed) -> Self {
        Self {
            guid: event.message_guid,
            key: event.chain_key(),
            value: event.to_json_vec(),
        }
    }
}

impl From<&ContactProcessed> for Record {
    fn from(event: &ContactProcessed) -> Self {
        Record::from_event(event)
    }
}
