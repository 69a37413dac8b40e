//! Parse + validate of the typical ~1.3 KB event (target: under 5 µs on one
//! core; figures in `BENCHMARKS.md`). Also the other hot path of the producer,
//! writing the canonical body, and a serde_json `Value` parse of the same
//! bytes as a yardstick for what a generic parse costs.
//!
//! `cargo bench -p cpn-schema --bench validate`

use std::hint::black_box;

use cpn_schema::ContactProcessed;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// The typical event as the README describes it (pretty-printed on disk).
const TYPICAL: &[u8] = include_bytes!("../examples/valid/voice-answered-agent.json");

fn validate(c: &mut Criterion) {
    // Benchmark the wire form (compact, canonical), as the relay and a
    // well-behaved producer client see it.
    let event = ContactProcessed::from_json(TYPICAL).expect("the typical example is valid");
    let wire = event.to_json_vec();
    let bytes = u64::try_from(wire.len()).expect("a 1.3 KB body fits in u64");

    let mut group = c.benchmark_group("typical_event");
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("from_json", |b| {
        b.iter(|| ContactProcessed::from_json(black_box(&wire)))
    });
    group.bench_function("to_json_vec", |b| {
        b.iter(|| black_box(&event).to_json_vec())
    });
    group.bench_function("serde_json_value_baseline", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&wire)))
    });
    group.finish();
}

criterion_group!(benches, validate);
criterion_main!(benches);
