//! End-to-end tests in one binary, driving the real `live` binary and real clients.

mod broker_cli;
mod chain;
mod layout;
mod outages;
mod parts;
mod reload;
mod team;
mod watch;
