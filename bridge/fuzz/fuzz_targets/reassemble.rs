//! Fuzz target: arbitrary bytes, cut into MQTT payloads, through the reassembler and the
//! message parsers. Nothing may panic, and memory held stays within the budget.
#![no_main]

use bridge::wire::{Limits, Reassembler};
use bridge::{DevMessage, Presence, StubMessage};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        budget: 4 * 1024 * 1024,
        timeout: Duration::from_secs(30),
        ..Limits::default()
    };
    let mut reassembler = Reassembler::new(limits);
    let start = Instant::now();
    let mut rest = data;
    let mut step = 0u64;
    // Each payload is preceded by a 4-byte length; the time advances a little per payload.
    while rest.len() >= 4 {
        let len = (u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize).min(rest.len() - 4);
        let payload = Bytes::copy_from_slice(&rest[4..4 + len]);
        rest = &rest[4 + len..];
        step += 1;
        let now = start + Duration::from_millis(step * 997);
        if let Ok(Some(frame)) = reassembler.push(payload, now) {
            let _ = frame.parse::<StubMessage>();
            let _ = frame.parse::<DevMessage>();
            let _ = frame.parse::<Presence>();
        }
        let _ = reassembler.expire(now);
        assert!(reassembler.held() <= limits.budget);
    }
});
