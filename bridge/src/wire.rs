//! Framing on the wire: one message becomes one or more MQTT payloads of at most
//! [`MAX_MQTT_PAYLOAD`] bytes, and a [`Reassembler`] turns them back into messages.
//!
//! Every MQTT payload starts with a 4-byte prefix: the magic `LV`, the protocol version and
//! the frame kind.
//!
//! ```text
//! whole: "LV" version 0x01 | header_len: u32 BE | header (JSON) | body (raw bytes)
//! chunk: "LV" version 0x02 | message_id: u64 | index: u16 | count: u16 | total: u32 | data
//! ```
//!
//! The chunks of a message carry, concatenated, exactly what follows the prefix of its whole
//! frame. A retained record (presence) is one MQTT message, so it is always one whole frame
//! ([`encode_whole`]), never chunks. The body is copied, never re-encoded: bytes that are not
//! UTF-8, numbers beyond 2^53 and anything else pass unchanged.

use crate::protocol::{
    MAX_MESSAGE_BYTES, MAX_MQTT_PAYLOAD, PROTOCOL_VERSION, REASSEMBLY_BUDGET, REASSEMBLY_TIMEOUT,
};
use bytes::{BufMut, Bytes, BytesMut};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const MAGIC: &[u8; 2] = b"LV";
const KIND_WHOLE: u8 = 0x01;
const KIND_CHUNK: u8 = 0x02;
const PREFIX_LEN: usize = 4;
const CHUNK_HEADER_LEN: usize = PREFIX_LEN + 8 + 2 + 2 + 4;

/// Bytes of message data one chunk carries.
pub const CHUNK_DATA: usize = MAX_MQTT_PAYLOAD - CHUNK_HEADER_LEN;

/// Why a payload or a message was refused. Each is data for the caller: nothing panics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The payload is not a bridge frame at all.
    #[error("not a live bridge frame: {0}")]
    Garbage(&'static str),
    /// The sender speaks another protocol version.
    #[error(
        "bridge protocol mismatch: the peer speaks v{theirs}, this side v{ours}; update {}",
        if theirs > ours { "this side" } else { "the peer" }
    )]
    VersionMismatch {
        /// The version in the received frame.
        theirs: u8,
        /// [`PROTOCOL_VERSION`].
        ours: u8,
    },
    /// The frame's JSON header does not describe a message of the expected kind.
    #[error("bad message header: {0}")]
    BadHeader(String),
    /// A message larger than [`MAX_MESSAGE_BYTES`] (or a chunk larger than one payload).
    #[error("message of {size} bytes exceeds the bridge limit of {limit} bytes")]
    TooLarge {
        /// The size offered.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A chunk whose index is not below its count, or a count of zero.
    #[error("chunk {index} of {count} of message {id:016x} is out of range")]
    ChunkOutOfRange {
        /// The message.
        id: u64,
        /// The chunk's index.
        index: u16,
        /// The chunk's count.
        count: u16,
    },
    /// A chunk that arrived before: dropped, the partial message is kept.
    #[error("chunk {index} of message {id:016x} arrived twice")]
    DuplicateChunk {
        /// The message.
        id: u64,
        /// The chunk's index.
        index: u16,
    },
    /// A chunk whose count or total disagrees with the message's first chunk.
    #[error("chunk of message {id:016x} disagrees with its first chunk on count or size")]
    ChunkMismatch {
        /// The message.
        id: u64,
    },
    /// All chunks arrived but their sizes do not add up to the declared total.
    #[error("chunks of message {id:016x} hold {got} bytes, {expected} were declared")]
    SizeMismatch {
        /// The message.
        id: u64,
        /// Bytes received.
        got: usize,
        /// Bytes declared.
        expected: usize,
    },
    /// Accepting the message would hold more than the receiver's reassembly budget.
    #[error("reassembly budget exceeded: {held} bytes held, {wanted} more wanted, limit {limit}")]
    BudgetExceeded {
        /// Bytes already reserved by partial messages.
        held: usize,
        /// Bytes the new message declares.
        wanted: usize,
        /// The budget.
        limit: usize,
    },
    /// A chunked message did not complete in time: chunks are missing.
    #[error("message {id:016x} incomplete after {waited:?}: {got} of {count} chunks arrived")]
    ChunkTimeout {
        /// The message.
        id: u64,
        /// Chunks received.
        got: u16,
        /// Chunks declared.
        count: u16,
        /// How long it waited.
        waited: Duration,
    },
}

/// One received message: its JSON header and its raw body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The serialized message.
    pub header: Bytes,
    /// The raw body, exactly as sent.
    pub body: Bytes,
}

impl Frame {
    /// Parse the header as a message of type `M`.
    pub fn parse<M: DeserializeOwned>(&self) -> Result<M, ProtocolError> {
        serde_json::from_slice(&self.header).map_err(|e| ProtocolError::BadHeader(e.to_string()))
    }

    fn from_content(content: Bytes) -> Result<Frame, ProtocolError> {
        if content.len() < 4 {
            return Err(ProtocolError::Garbage(
                "frame shorter than its header length",
            ));
        }
        let header_len = u32::from_be_bytes(content[..4].try_into().expect("4 bytes")) as usize;
        if header_len > content.len() - 4 {
            return Err(ProtocolError::Garbage("header length beyond the frame"));
        }
        Ok(Frame {
            header: content.slice(4..4 + header_len),
            body: content.slice(4 + header_len..),
        })
    }
}

/// Encode `message` with `body` into MQTT payloads, each at most [`MAX_MQTT_PAYLOAD`] bytes.
pub fn encode<M: Serialize>(message: &M, body: &[u8]) -> Result<Vec<Bytes>, ProtocolError> {
    let header = header_of(message)?;
    let content_len = 4 + header.len() + body.len();
    if content_len > MAX_MESSAGE_BYTES {
        return Err(ProtocolError::TooLarge {
            size: content_len,
            limit: MAX_MESSAGE_BYTES,
        });
    }
    if PREFIX_LEN + content_len <= MAX_MQTT_PAYLOAD {
        return Ok(vec![whole(&header, body)]);
    }
    let mut content = BytesMut::with_capacity(content_len);
    content.put_u32(header.len() as u32);
    content.put_slice(&header);
    content.put_slice(body);
    let id = next_message_id();
    let count = content_len.div_ceil(CHUNK_DATA);
    let chunks = content
        .chunks(CHUNK_DATA)
        .enumerate()
        .map(|(index, data)| {
            let mut out = BytesMut::with_capacity(CHUNK_HEADER_LEN + data.len());
            put_prefix(&mut out, KIND_CHUNK);
            out.put_u64(id);
            out.put_u16(index as u16);
            out.put_u16(count as u16);
            out.put_u32(content_len as u32);
            out.put_slice(data);
            out.freeze()
        })
        .collect();
    Ok(chunks)
}

/// Encode `message` with `body` as one whole frame in one MQTT payload, never chunked: for a
/// retained record (presence), which is one MQTT message, so that its chunks could not be
/// kept together. [`ProtocolError::TooLarge`] when it does not fit [`MAX_MQTT_PAYLOAD`].
pub fn encode_whole<M: Serialize>(message: &M, body: &[u8]) -> Result<Bytes, ProtocolError> {
    let header = header_of(message)?;
    let size = PREFIX_LEN + 4 + header.len() + body.len();
    if size > MAX_MQTT_PAYLOAD {
        return Err(ProtocolError::TooLarge {
            size,
            limit: MAX_MQTT_PAYLOAD,
        });
    }
    Ok(whole(&header, body))
}

fn header_of<M: Serialize>(message: &M) -> Result<Vec<u8>, ProtocolError> {
    serde_json::to_vec(message).map_err(|e| ProtocolError::BadHeader(e.to_string()))
}

/// A whole frame of `header` and `body`, which the caller has checked fit one payload.
fn whole(header: &[u8], body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(PREFIX_LEN + 4 + header.len() + body.len());
    put_prefix(&mut out, KIND_WHOLE);
    out.put_u32(header.len() as u32);
    out.put_slice(header);
    out.put_slice(body);
    out.freeze()
}

fn put_prefix(out: &mut BytesMut, kind: u8) {
    out.put_slice(MAGIC);
    out.put_u8(PROTOCOL_VERSION);
    out.put_u8(kind);
}

/// A process-unique, randomly started message id, so that chunks of different senders and
/// restarts do not collide.
fn next_message_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    // Without an OS random source (none seen on Linux), the process id keeps apart at least
    // the senders running at one time.
    let seed = *SEED
        .get_or_init(|| getrandom::u64().unwrap_or_else(|_| u64::from(std::process::id()) << 32));
    seed.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Limits that bound a [`Reassembler`] in memory and time.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest message accepted.
    pub max_message: usize,
    /// The most bytes held across partial messages.
    pub budget: usize,
    /// How long a partial message may wait for its missing chunks.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message: MAX_MESSAGE_BYTES,
            budget: REASSEMBLY_BUDGET,
            timeout: REASSEMBLY_TIMEOUT,
        }
    }
}

struct Partial {
    count: u16,
    total: usize,
    chunks: Vec<Option<Bytes>>,
    got: u16,
    started: Instant,
}

/// Turns MQTT payloads back into [`Frame`]s: whole frames at once, chunked ones when their
/// last chunk arrives, in any order.
#[derive(Default)]
pub struct Reassembler {
    limits: Limits,
    partial: HashMap<u64, Partial>,
    held: usize,
}

impl Reassembler {
    /// A reassembler with the given limits.
    pub fn new(limits: Limits) -> Self {
        Reassembler {
            limits,
            ..Default::default()
        }
    }

    /// Bytes reserved by partial messages now.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Take one MQTT payload received at `now`. Returns the frame it completes, if any.
    pub fn push(&mut self, payload: Bytes, now: Instant) -> Result<Option<Frame>, ProtocolError> {
        check_magic(&payload)?;
        if payload[2] != PROTOCOL_VERSION {
            return Err(ProtocolError::VersionMismatch {
                theirs: payload[2],
                ours: PROTOCOL_VERSION,
            });
        }
        if payload.len() > MAX_MQTT_PAYLOAD {
            return Err(ProtocolError::TooLarge {
                size: payload.len(),
                limit: MAX_MQTT_PAYLOAD,
            });
        }
        match payload[3] {
            KIND_WHOLE => Frame::from_content(payload.slice(PREFIX_LEN..)).map(Some),
            KIND_CHUNK => self.push_chunk(payload, now),
            _ => Err(ProtocolError::Garbage("unknown frame kind")),
        }
    }

    /// A whole-message frame of any protocol version: presence records keep one layout
    /// across versions (the prefix, a header length, a JSON header), so that a stub can read
    /// a session of another version (the record names it) and name the side to update.
    pub fn whole_of_any_version(payload: Bytes) -> Result<Frame, ProtocolError> {
        check_magic(&payload)?;
        if payload.len() > MAX_MQTT_PAYLOAD || payload[3] != KIND_WHOLE {
            return Err(ProtocolError::Garbage("not a whole-message frame"));
        }
        Frame::from_content(payload.slice(PREFIX_LEN..))
    }

    fn push_chunk(&mut self, payload: Bytes, now: Instant) -> Result<Option<Frame>, ProtocolError> {
        if payload.len() < CHUNK_HEADER_LEN {
            return Err(ProtocolError::Garbage("truncated chunk header"));
        }
        let h = &payload[PREFIX_LEN..CHUNK_HEADER_LEN];
        let id = u64::from_be_bytes(h[0..8].try_into().expect("8 bytes"));
        let index = u16::from_be_bytes([h[8], h[9]]);
        let count = u16::from_be_bytes([h[10], h[11]]);
        let total = u32::from_be_bytes(h[12..16].try_into().expect("4 bytes")) as usize;
        let data = payload.slice(CHUNK_HEADER_LEN..);
        if count == 0 || index >= count {
            return Err(ProtocolError::ChunkOutOfRange { id, index, count });
        }
        if total > self.limits.max_message {
            return Err(ProtocolError::TooLarge {
                size: total,
                limit: self.limits.max_message,
            });
        }
        if total.div_ceil(CHUNK_DATA) != count as usize {
            return Err(ProtocolError::ChunkMismatch { id });
        }
        if !self.partial.contains_key(&id) {
            if self.held + total > self.limits.budget {
                return Err(ProtocolError::BudgetExceeded {
                    held: self.held,
                    wanted: total,
                    limit: self.limits.budget,
                });
            }
            self.held += total;
            self.partial.insert(
                id,
                Partial {
                    count,
                    total,
                    chunks: vec![None; count as usize],
                    got: 0,
                    started: now,
                },
            );
        }
        let partial = self.partial.get_mut(&id).expect("inserted above");
        if partial.count != count || partial.total != total {
            return Err(ProtocolError::ChunkMismatch { id });
        }
        let slot = &mut partial.chunks[index as usize];
        if slot.is_some() {
            return Err(ProtocolError::DuplicateChunk { id, index });
        }
        *slot = Some(data);
        partial.got += 1;
        if partial.got < partial.count {
            return Ok(None);
        }
        let partial = self.partial.remove(&id).expect("present");
        self.held -= partial.total;
        let got: usize = partial.chunks.iter().flatten().map(Bytes::len).sum();
        if got != partial.total {
            return Err(ProtocolError::SizeMismatch {
                id,
                got,
                expected: partial.total,
            });
        }
        let mut content = BytesMut::with_capacity(partial.total);
        for chunk in partial.chunks.iter().flatten() {
            content.put_slice(chunk);
        }
        Frame::from_content(content.freeze()).map(Some)
    }

    /// Drop partial messages older than the timeout at `now`, one error for each.
    pub fn expire(&mut self, now: Instant) -> Vec<ProtocolError> {
        let timeout = self.limits.timeout;
        let expired: Vec<u64> = self
            .partial
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.started) >= timeout)
            .map(|(id, _)| *id)
            .collect();
        expired
            .into_iter()
            .map(|id| {
                let p = self.partial.remove(&id).expect("listed above");
                self.held -= p.total;
                ProtocolError::ChunkTimeout {
                    id,
                    got: p.got,
                    count: p.count,
                    waited: now.saturating_duration_since(p.started),
                }
            })
            .collect()
    }
}

fn check_magic(payload: &[u8]) -> Result<(), ProtocolError> {
    if payload.len() < PREFIX_LEN || &payload[..2] != MAGIC {
        return Err(ProtocolError::Garbage("missing the LV magic"));
    }
    Ok(())
}
