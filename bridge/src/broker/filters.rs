//! The broker's index of subscriptions by filter: exact filters looked up by topic, wildcard
//! ones matched, so that a publish finds its subscribers with one lookup and one match per
//! distinct wildcard filter, however many sessions are connected (the stubs of a stage all
//! share one presence filter).

use crate::topics::matches;
use rumqttc::QoS;
use std::collections::HashMap;

/// Subscribers by filter: exact filters by name, wildcard ones to be matched. Each entry
/// lists the client ids subscribed to it with the QoS granted.
#[derive(Default)]
pub(crate) struct Filters {
    exact: HashMap<String, Vec<(String, QoS)>>,
    wildcard: HashMap<String, Vec<(String, QoS)>>,
}

impl Filters {
    fn of(&mut self, filter: &str) -> &mut HashMap<String, Vec<(String, QoS)>> {
        if filter.contains(['+', '#']) {
            &mut self.wildcard
        } else {
            &mut self.exact
        }
    }

    /// Subscribe `client_id` to `filter` at `qos`, replacing an earlier grant of the same filter.
    pub fn add(&mut self, client_id: &str, filter: &str, qos: QoS) {
        self.remove(client_id, filter);
        self.of(filter)
            .entry(filter.to_string())
            .or_default()
            .push((client_id.to_string(), qos));
    }

    /// Remove `client_id`'s subscription to `filter`, if it has one.
    pub fn remove(&mut self, client_id: &str, filter: &str) {
        let map = self.of(filter);
        if let Some(subscribers) = map.get_mut(filter) {
            subscribers.retain(|(id, _)| id != client_id);
            if subscribers.is_empty() {
                map.remove(filter);
            }
        }
    }

    /// Every subscriber whose filters match `topic`, once each, with the highest QoS granted.
    pub fn subscribers(&self, topic: &str) -> Vec<(&str, QoS)> {
        let wildcard = self
            .wildcard
            .iter()
            .filter(|(filter, _)| matches(topic, filter))
            .map(|(_, subscribers)| subscribers);
        let lists: Vec<&Vec<(String, QoS)>> =
            self.exact.get(topic).into_iter().chain(wildcard).collect();
        let each = lists
            .iter()
            .flat_map(|list| list.iter())
            .map(|(id, qos)| (id.as_str(), *qos));
        if lists.len() <= 1 {
            // A client appears once per filter.
            return each.collect();
        }
        let mut found: HashMap<&str, QoS> = HashMap::new();
        for (client_id, qos) in each {
            let granted = found.entry(client_id).or_insert(qos);
            *granted = std::cmp::max_by_key(*granted, qos, |q| *q as u8);
        }
        found.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(filters: &Filters, topic: &str) -> Vec<(String, QoS)> {
        let mut found: Vec<(String, QoS)> = filters
            .subscribers(topic)
            .into_iter()
            .map(|(id, qos)| (id.to_string(), qos))
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    }

    #[test]
    fn the_index_finds_each_subscriber_once_with_its_highest_qos() {
        let mut filters = Filters::default();
        filters.add("a", "live/x/env/e1/res", QoS::AtMostOnce);
        filters.add("a", "live/x/presence/+", QoS::AtLeastOnce);
        filters.add("b", "live/x/presence/+", QoS::AtMostOnce);
        filters.add("b", "live/#", QoS::AtMostOnce);
        filters.add("c", "live/x/env/e1/res", QoS::AtLeastOnce);
        filters.add("c", "live/x/env/+/res", QoS::AtMostOnce);
        assert_eq!(
            found(&filters, "live/x/env/e1/res"),
            vec![
                ("a".into(), QoS::AtMostOnce),
                ("b".into(), QoS::AtMostOnce),
                ("c".into(), QoS::AtLeastOnce),
            ]
        );
        assert_eq!(
            found(&filters, "live/x/presence/s1"),
            vec![
                ("a".into(), QoS::AtLeastOnce),
                ("b".into(), QoS::AtMostOnce)
            ]
        );
        assert_eq!(found(&filters, "other/topic"), vec![]);
        // Subscribing again replaces the grant; removing a filter removes only it.
        filters.add("a", "live/x/presence/+", QoS::AtMostOnce);
        filters.remove("b", "live/#");
        assert_eq!(
            found(&filters, "live/x/presence/s1"),
            vec![("a".into(), QoS::AtMostOnce), ("b".into(), QoS::AtMostOnce)]
        );
        assert_eq!(
            found(&filters, "live/x/env/e1/res"),
            vec![
                ("a".into(), QoS::AtMostOnce),
                ("c".into(), QoS::AtLeastOnce)
            ]
        );
        for (id, filter) in [
            ("a", "live/x/env/e1/res"),
            ("a", "live/x/presence/+"),
            ("b", "live/x/presence/+"),
            ("c", "live/x/env/e1/res"),
            ("c", "live/x/env/+/res"),
        ] {
            filters.remove(id, filter);
        }
        assert!(filters.exact.is_empty() && filters.wildcard.is_empty());
    }
}
