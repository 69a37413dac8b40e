//! Realistic, valid ContactProcessed events from a seeded random generator:
//! the load source for demos and benchmarks.
//!
//! Every event passes `ContactProcessed::from_json`. The mix covers what the
//! spec allows: all three media types; answered, unanswered, busy, machine
//! and never-dialled outcomes, each with the timestamps OCS would fill for it
//! and the others absent; optional fields (customer id, LIFO GUID, template,
//! disposition, agent, optimisation) present or absent; zero to four
//! user-defined fields; and non-ASCII text (names, lists, emoji). Chain ids
//! repeat within a calling list, so some keys carry several events.
//!
//! Pure: the RNG and the start time are arguments, so one seed and start
//! always give the same sequence (for a given `rand` version). It does no
//! I/O and reads no clock.

use std::collections::BTreeMap;

use cpn_schema::{ContactProcessed, Guid, MediaType, Timestamp};
use rand::Rng;
use rand::seq::IndexedRandom;

/// Start time used when a seed is given and no start: 2025-01-01T00:00:00Z,
/// so seeded output is the same on every run.
pub const SEEDED_START: Timestamp = match Timestamp::from_unix_millis(1_735_689_600_000) {
    Some(t) => t,
    None => Timestamp::EPOCH,
};

/// Calling lists; with the chain id they form the Kafka key.
const CALLING_LISTS: [&str; 6] = [
    "renewals_east",
    "collections_q3",
    "winback:2025",
    "Kundenliste_Zürich",
    "listes_prêts",
    "顧客リスト_東京",
];
/// Chain ids per calling list: small enough that chains recur in a long run.
const CHAINS_PER_LIST: i64 = 50_000;
const CAMPAIGNS: [&str; 4] = [
    "Spring Renewals",
    "Collections Q3",
    "Win-back 2025",
    "Rückgewinnung Süd",
];
const GROUPS: [&str; 4] = ["Sales", "Collections", "Retention", "Équipe Montréal"];
const QUEUES: [&str; 3] = ["7001", "7002", "8100"];
const TEMPLATES: [&str; 2] = ["Renewals template", "Collections template"];
const DISPOSITIONS: [&str; 5] = ["SALE", "NO_INTEREST", "CALLBACK", "PAID", "WRONG_PARTY"];
const FIRST_NAMES: [&str; 8] = [
    "Anna", "José", "Zoë", "Łukasz", "Søren", "Chloé", "Ahmed", "美咲",
];
const LAST_NAMES: [&str; 8] = [
    "Müller",
    "García",
    "O'Brien",
    "Nguyễn",
    "Dubois",
    "Kowalski",
    "山田",
    "Smith \"Jr\"",
];
const NOTES: [&str; 6] = [
    "call back after 5pm",
    "prefers e-mail — no calls",
    "disputes invoice #4711",
    "asked for Spanish: «español»",
    "happy customer 🙂",
    "line1\nline2",
];
const USER_FIELD_NAMES: [&str; 6] = [
    "Other1",
    "Other2",
    "Other3",
    "CustomerName",
    "Notes",
    "PreferredLanguage",
];

/// How the attempt ended; decides which timestamps exist.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// Customer answered and spoke to an agent.
    Answered,
    /// Rang out.
    NoAnswer,
    /// Busy tone.
    Busy,
    /// Answering machine detected and diverted.
    Machine,
    /// Dropped before an agent answered.
    Abandoned,
    /// Never dialled (pre-dial validation refused, or do-not-call).
    NotDialled,
}

/// An endless source of valid events.
#[derive(Debug)]
pub struct Generator<R> {
    rng: R,
    /// Milliseconds since the epoch of the next event's `GSW_TIMESTAMP`.
    clock_ms: i64,
    /// GUIDs of the campaign groups (one per campaign), fixed per generator.
    group_guids: [Guid; CAMPAIGNS.len()],
}

impl<R: Rng> Generator<R> {
    /// A generator drawing from `rng`, its first event stamped near `start`.
    pub fn new(mut rng: R, start: Timestamp) -> Self {
        let group_guids = std::array::from_fn(|_| random_guid(&mut rng));
        Self {
            rng,
            clock_ms: start.unix_millis(),
            group_guids,
        }
    }

    /// The next event.
    pub fn next_event(&mut self) -> ContactProcessed {
        // Events are a few milliseconds apart, as from a busy dialer.
        self.clock_ms += self.rng.random_range(0..=20);
        let now = self.clock_ms;
        let rng = &mut self.rng;

        let media_type = match rng.random_range(0..10) {
            0..=6 => MediaType::Voice,
            7..=8 => MediaType::Sms,
            _ => MediaType::Email,
        };
        let outcome = match media_type {
            MediaType::Voice => match rng.random_range(0..100) {
                0..=39 => Outcome::Answered,
                40..=64 => Outcome::NoAnswer,
                65..=77 => Outcome::Busy,
                78..=89 => Outcome::Machine,
                90..=94 => Outcome::Abandoned,
                _ => Outcome::NotDialled,
            },
            MediaType::Sms | MediaType::Email => {
                if rng.random_bool(0.9) {
                    Outcome::Answered
                } else {
                    Outcome::NotDialled
                }
            }
        };
        let campaign = rng.random_range(0..CAMPAIGNS.len());
        let list = pick(rng, &CALLING_LISTS);
        let chain_id = rng.random_range(1..=CHAINS_PER_LIST);
        let dial_mode = *pick(rng, &[1i64, 2, 3, 5, 6, 8, 11]);
        let predictive = matches!(dial_mode, 1 | 5 | 10);

        // Attempt timeline, backwards from the notification time.
        let started = now - rng.random_range(20_000..180_000);
        let mut t = started + rng.random_range(50..2_000);
        let mut step = |rng: &mut R, lo: i64, hi: i64| {
            t += rng.random_range(lo..hi);
            Some(ts(t.min(now)))
        };
        let dialled = !matches!(outcome, Outcome::NotDialled);
        let call_time = if dialled { step(rng, 0, 50) } else { None };
        let dialing = if dialled { step(rng, 10, 200) } else { None };
        let voice = media_type == MediaType::Voice;
        let ringing = if dialled && voice && !matches!(outcome, Outcome::Busy) {
            step(rng, 500, 3_000)
        } else {
            None
        };
        let answered = if matches!(
            outcome,
            Outcome::Answered | Outcome::Machine | Outcome::Abandoned
        ) {
            step(rng, 2_000, 20_000)
        } else {
            None
        };
        let cpd_completed = if answered.is_some() && voice {
            step(rng, 300, 2_500)
        } else {
            None
        };
        let diverted = if matches!(outcome, Outcome::Machine) {
            step(rng, 10, 300)
        } else {
            None
        };
        let talking = matches!(outcome, Outcome::Answered) && voice;
        let queued = if talking || matches!(outcome, Outcome::Abandoned) {
            step(rng, 10, 200)
        } else {
            None
        };
        let abandoned = if matches!(outcome, Outcome::Abandoned) {
            step(rng, 1_000, 8_000)
        } else {
            None
        };
        let agent_ringing = if talking { step(rng, 10, 3_000) } else { None };
        let agent_answered = if talking { step(rng, 500, 4_000) } else { None };
        let agent_released = if talking {
            step(rng, 20_000, 60_000)
        } else {
            None
        };
        let acw_completed = if talking && rng.random_bool(0.8) {
            step(rng, 2_000, 30_000)
        } else {
            None
        };
        let released = if matches!(outcome, Outcome::NoAnswer | Outcome::Busy) {
            step(rng, 100, 30_000)
        } else {
            None
        };
        let complete_processing = if rng.random_bool(0.9) {
            step(rng, 10, 500)
        } else {
            None
        };

        let (call_result, record_type, record_status) = match outcome {
            Outcome::Answered => (33, 2, 3),
            Outcome::NoAnswer => (7, 3, 2),
            Outcome::Busy => (6, 3, 2),
            Outcome::Machine => (9, 3, 2),
            Outcome::Abandoned => (21, 3, 3),
            Outcome::NotDialled => (*pick(rng, &[51i64, 52, 28]), 7, 3),
        };
        let rescheduled = record_type == 3;
        let scheduled_time = if rescheduled {
            Some(ts(now + rng.random_range(3_600_000..172_800_000)))
        } else {
            None
        };
        let agent = matches!(outcome, Outcome::Answered) && (voice || rng.random_bool(0.3));
        let (phone, phone_type) = contact(rng, media_type);

        let mut user_fields = BTreeMap::new();
        for _ in 0..rng.random_range(0..=4) {
            let name = *pick(rng, &USER_FIELD_NAMES);
            let value = match name {
                "CustomerName" => {
                    format!("{} {}", pick(rng, &FIRST_NAMES), pick(rng, &LAST_NAMES))
                }
                "Notes" => (*pick(rng, &NOTES)).to_owned(),
                "PreferredLanguage" => {
                    (*pick(rng, &["de-CH", "fr-CA", "ja-JP", "es-MX"])).to_owned()
                }
                _ => format!("value-{}", rng.random_range(0..10_000)),
            };
            user_fields.insert(name.to_owned(), value);
        }

        ContactProcessed {
            message_guid: random_guid(rng),
            timestamp: ts(now),
            call_attempt_guid: random_guid(rng),
            phone,
            phone_type,
            chain_id,
            chain_n: if rng.random_bool(0.8) {
                0
            } else {
                rng.random_range(1..4)
            },
            record_handle: rng.random_range(1..10_000_000),
            reason: *pick(rng, &[1i64, 2, 3]),
            chain_lifo_guid: rng.random_bool(0.1).then(|| random_guid(rng)),
            customer_id: rng
                .random_bool(0.6)
                .then(|| format!("CUST-{:07}", rng.random_range(0..10_000_000))),
            call_result,
            disposition_code: (agent && rng.random_bool(0.7))
                .then(|| (*pick(rng, &DISPOSITIONS)).to_owned()),
            campaign_name: CAMPAIGNS[campaign].to_owned(),
            campaign_template_name: rng
                .random_bool(0.3)
                .then(|| (*pick(rng, &TEMPLATES)).to_owned()),
            media_type,
            calling_list: (*list).to_owned(),
            campaign_group_name: format!("{}@{}", CAMPAIGNS[campaign], GROUPS[campaign]),
            campaign_group_guid: self.group_guids[campaign],
            group_name: GROUPS[campaign].to_owned(),
            queue_name: (*pick(rng, &QUEUES)).to_owned(),
            dial_mode,
            agent_id: agent.then(|| format!("agent{:03}", rng.random_range(1..200))),
            record_type,
            record_status,
            optimize_by: predictive.then(|| rng.random_range(1..=3)),
            optimize_goal: predictive.then(|| rng.random_range(2..=95)),
            start_processing: ts(started),
            call_time,
            scheduled_time,
            dialing,
            ringing,
            released,
            answered,
            cpd_completed,
            queued,
            agent_ringing,
            agent_answered,
            diverted,
            abandoned,
            agent_released,
            acw_completed,
            complete_processing,
            user_fields,
        }
    }
}

impl<R: Rng> Iterator for Generator<R> {
    type Item = ContactProcessed;

    fn next(&mut self) -> Option<ContactProcessed> {
        Some(self.next_event())
    }
}

fn pick<'a, R: Rng, T>(rng: &mut R, items: &'a [T]) -> &'a T {
    // Every table passed here is a non-empty constant; the fallback to the
    // first item keeps this total without a panic path.
    items.choose(rng).unwrap_or(&items[0])
}

fn ts(millis: i64) -> Timestamp {
    // Generated times are all after 1970 (the start is, and offsets back from
    // it are at most minutes); clamp rather than fail if a caller starts at 0.
    Timestamp::from_unix_millis(millis.max(0)).unwrap_or(Timestamp::EPOCH)
}

fn random_guid<R: Rng>(rng: &mut R) -> Guid {
    Guid::from_uuid(uuid::Builder::from_random_bytes(rng.random()).into_uuid())
}

fn contact<R: Rng>(rng: &mut R, media: MediaType) -> (String, i64) {
    match media {
        MediaType::Email => (
            format!(
                "{}.{}@example.{}",
                pick(rng, &["anna", "jose", "zoe", "lukasz", "chloe"]),
                rng.random_range(1..10_000),
                pick(rng, &["com", "ch", "de", "co.jp"])
            ),
            10,
        ),
        MediaType::Sms => (format!("+4179{:07}", rng.random_range(0..10_000_000)), 4),
        MediaType::Voice => (
            format!(
                "+1{}555{:04}",
                pick(rng, &["415", "212", "617", "303"]),
                rng.random_range(0..10_000)
            ),
            *pick(rng, &[1i64, 2, 4, 4, 3]),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn sample(seed: u64, n: usize) -> Vec<ContactProcessed> {
        Generator::new(StdRng::seed_from_u64(seed), SEEDED_START)
            .take(n)
            .collect()
    }

    #[test]
    fn every_generated_event_passes_strict_validation_and_round_trips() {
        for event in sample(7, 5_000) {
            let body = event.to_json_vec();
            let back = ContactProcessed::from_json(&body)
                .unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&body)));
            assert_eq!(back, event);
        }
    }

    #[test]
    fn same_seed_same_events_different_seed_different_events() {
        let a: Vec<Vec<u8>> = sample(42, 200).iter().map(|e| e.to_json_vec()).collect();
        let b: Vec<Vec<u8>> = sample(42, 200).iter().map(|e| e.to_json_vec()).collect();
        let c: Vec<Vec<u8>> = sample(43, 200).iter().map(|e| e.to_json_vec()).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn covers_the_variety_the_spec_allows() {
        let events = sample(1, 5_000);
        for media in MediaType::ALL {
            assert!(events.iter().any(|e| e.media_type == media), "{media:?}");
        }
        let has = |f: fn(&ContactProcessed) -> bool| events.iter().any(f);
        let lacks = |f: fn(&ContactProcessed) -> bool| events.iter().any(|e| !f(e));
        let optional: [fn(&ContactProcessed) -> bool; 8] = [
            |e| e.customer_id.is_some(),
            |e| e.chain_lifo_guid.is_some(),
            |e| e.agent_id.is_some(),
            |e| e.call_time.is_some(),
            |e| e.answered.is_some(),
            |e| e.optimize_by.is_some(),
            |e| e.scheduled_time.is_some(),
            |e| !e.user_fields.is_empty(),
        ];
        for (i, f) in optional.into_iter().enumerate() {
            assert!(
                has(f) && lacks(f),
                "optional field #{i} is always or never set"
            );
        }
        assert!(has(|e| e.user_fields.values().any(|v| !v.is_ascii())));
        assert!(has(|e| !e.calling_list.is_ascii()));
        // Some chains recur, so ordering within a key is exercised.
        let mut keys: Vec<String> = events.iter().map(ContactProcessed::chain_key).collect();
        keys.sort();
        keys.dedup();
        assert!(keys.len() < events.len());
    }

    #[test]
    fn typical_bodies_are_about_the_spec_size() {
        let events = sample(3, 2_000);
        let total: usize = events.iter().map(|e| e.to_json_vec().len()).sum();
        let mean = total / events.len();
        assert!((700..=1_600).contains(&mean), "mean body {mean} bytes");
    }

    #[test]
    fn timestamps_advance_and_follow_the_start() {
        let events = sample(9, 500);
        assert!(events.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
        assert!(events[0].timestamp >= SEEDED_START);
        assert!(events.iter().all(|e| e.start_processing <= e.timestamp));
    }
}
