//! The bridge's own tests, in one binary: protocol, broker conformance with `rumqttc`, and the
//! transport.

mod broker;
mod broker_outbox;
mod broker_quotas;
mod mqtt;
mod protocol;
mod runtime_api;
mod transport;
