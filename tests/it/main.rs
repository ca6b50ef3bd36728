//! End-to-end tests in one binary, driving the real `live` binary and real clients.

mod attach;
mod broker_cli;
mod chain;
mod credentials;
mod debug;
mod deploy;
mod drain;
mod events;
mod ide;
mod iot;
mod layout;
mod outages;
mod output;
mod parts;
mod reload;
mod sigv4;
mod stub;
mod team;
mod watch;
