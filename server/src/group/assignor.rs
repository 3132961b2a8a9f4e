//! Partition assignors: who in a group reads which partitions. Pure functions.

use std::collections::BTreeMap;

/// A member's subscription: its id and the topics it wants.
pub type Subscription<'a> = (&'a str, &'a [String]);

/// Assignment per member: topic → partitions.
pub type Assignment = BTreeMap<String, BTreeMap<String, Vec<u32>>>;

/// Which assignor a group uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Assignor {
    /// Per topic, contiguous ranges of partitions to members in id order (Kafka's default).
    #[default]
    Range,
    /// All partitions of all topics dealt to members in turn.
    RoundRobin,
}

impl Assignor {
    /// The assignor named `name` (`range` or `roundrobin`).
    pub fn from_name(name: &str) -> Option<Assignor> {
        match name {
            "range" | "" => Some(Assignor::Range),
            "roundrobin" | "round-robin" => Some(Assignor::RoundRobin),
            _ => None,
        }
    }

    /// Name as clients spell it.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
        }
    }

    /// Assigns the partitions of subscribed topics (`partitions_of(topic)` = count) to
    /// members; every member appears in the result, possibly with nothing.
    pub fn assign(
        self,
        members: &[Subscription<'_>],
        partitions_of: impl Fn(&str) -> u32,
    ) -> Assignment {
        let mut result: Assignment = members
            .iter()
            .map(|(id, _)| (id.to_string(), BTreeMap::new()))
            .collect();
        let mut topics: Vec<&String> = members
            .iter()
            .flat_map(|(_, topics)| topics.iter())
            .collect();
        topics.sort();
        topics.dedup();
        match self {
            Assignor::Range => {
                for topic in topics {
                    let mut subscribers: Vec<&str> = members
                        .iter()
                        .filter(|(_, t)| t.contains(topic))
                        .map(|(id, _)| *id)
                        .collect();
                    subscribers.sort_unstable();
                    let count = partitions_of(topic);
                    if subscribers.is_empty() || count == 0 {
                        continue;
                    }
                    let per = count / subscribers.len() as u32;
                    let extra = count % subscribers.len() as u32;
                    let mut next = 0;
                    for (index, member) in subscribers.iter().enumerate() {
                        let take = per + u32::from((index as u32) < extra);
                        if take > 0 {
                            let owned = result
                                .get_mut(*member)
                                .expect("member listed")
                                .entry(topic.clone())
                                .or_default();
                            owned.extend(next..next + take);
                        }
                        next += take;
                    }
                }
            }
            Assignor::RoundRobin => {
                let mut ids: Vec<&str> = members.iter().map(|(id, _)| *id).collect();
                ids.sort_unstable();
                let mut turn = 0usize;
                for topic in topics {
                    for partition in 0..partitions_of(topic) {
                        // Next member (in turn) subscribed to this topic.
                        for _ in 0..ids.len() {
                            let member = ids[turn % ids.len()];
                            turn += 1;
                            let subscribed = members
                                .iter()
                                .any(|(id, t)| *id == member && t.contains(topic));
                            if subscribed {
                                result
                                    .get_mut(member)
                                    .expect("member listed")
                                    .entry(topic.clone())
                                    .or_default()
                                    .push(partition);
                                break;
                            }
                        }
                    }
                }
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covered(assignment: &Assignment, topic: &str) -> Vec<u32> {
        let mut all: Vec<u32> = assignment
            .values()
            .filter_map(|m| m.get(topic))
            .flatten()
            .copied()
            .collect();
        all.sort_unstable();
        all
    }

    #[test]
    fn table() {
        let orders = vec!["orders".to_string()];
        let cases: &[(&str, Assignor, usize, u32, Vec<usize>)] = &[
            // why: 6 partitions over 3 members: 2 each, disjoint, complete
            ("range 6/3", Assignor::Range, 3, 6, vec![2, 2, 2]),
            // why: 7 over 3: the first member takes the extra one
            ("range 7/3", Assignor::Range, 3, 7, vec![3, 2, 2]),
            // why: more members than partitions: the last one is idle
            (
                "range 6/7",
                Assignor::Range,
                7,
                6,
                vec![1, 1, 1, 1, 1, 1, 0],
            ),
            (
                "roundrobin 6/4",
                Assignor::RoundRobin,
                4,
                6,
                vec![2, 2, 1, 1],
            ),
        ];
        for (name, assignor, members, partitions, sizes) in cases {
            let ids: Vec<String> = (0..*members).map(|i| format!("m{i}")).collect();
            let subscriptions: Vec<Subscription<'_>> = ids
                .iter()
                .map(|id| (id.as_str(), orders.as_slice()))
                .collect();
            let assignment = assignor.assign(&subscriptions, |_| *partitions);
            let got: Vec<usize> = ids
                .iter()
                .map(|id| assignment[id].get("orders").map_or(0, Vec::len))
                .collect();
            assert_eq!(&got, sizes, "{name}");
            assert_eq!(
                covered(&assignment, "orders"),
                (0..*partitions).collect::<Vec<_>>(),
                "{name}: complete and disjoint"
            );
        }
    }

    #[test]
    fn only_subscribers_get_a_topic() {
        // Goal: a member never gets a topic it did not subscribe to.
        let a = vec!["a".to_string()];
        let ab = vec!["a".to_string(), "b".to_string()];
        for assignor in [Assignor::Range, Assignor::RoundRobin] {
            let assignment = assignor.assign(&[("x", &a), ("y", &ab)], |_| 4);
            assert!(!assignment["x"].contains_key("b"));
            assert_eq!(covered(&assignment, "b"), vec![0, 1, 2, 3]);
            assert_eq!(covered(&assignment, "a"), vec![0, 1, 2, 3]);
        }
    }
}
